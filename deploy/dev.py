"""`coupons dev`: broker, PostgreSQL, allocator, notifier and gateway on this machine.

The embedded broker keeps its log in memory, so each run uses topics of its own (a
run-scoped prefix) while PostgreSQL keeps coupons and grants across runs.
"""

import asyncio
import json
import os
import secrets
import signal
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from deploy import local
from deploy.embedded import Process, start_broker, start_postgres
from deploy.stack import Stack, build_stack, stack_env
from runtime.auth import mint_token
from runtime.db import migrate


def dev_secrets(data_dir: str | Path) -> dict[str, str]:
    """The local stack's secrets: from the environment, else made up once and kept."""
    path = Path(data_dir) / "secrets.json"
    known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    if not known:
        path.parent.mkdir(parents=True, exist_ok=True)
        known = {"jwt": secrets.token_urlsafe(32), "codes": secrets.token_urlsafe(32)}
        path.write_text(json.dumps(known))
        path.chmod(0o600)
    return {
        "jwt": os.environ.get("COUPONS_JWT_SECRET") or known["jwt"],
        "codes": os.environ.get("COUPONS_CODE_SECRET") or known["codes"],
    }


def create_demo_coupon(gateway_url: str, jwt_secret: str) -> dict[str, object]:
    now = datetime.now(UTC)
    body = {
        "code": "FREE-IPHONE",
        "message": "Get an iPhone, free!",
        "description": "The demo coupon of the local stack.",
        "start_time": now.isoformat(),
        "expiry": (now + timedelta(days=7)).isoformat(),
        "count": 25,
    }
    request = urllib.request.Request(
        f"{gateway_url}/v1/coupons",
        data=json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {mint_token(jwt_secret, 'demo-admin', admin=True)}",
            "Content-Type": "application/json",
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=15) as response:
        created: dict[str, object] = json.loads(response.read())
        return created


def run_dev(port: int, data_dir: str, demo: bool) -> int:
    root = Path(data_dir).resolve()
    keys = dev_secrets(root)
    external_kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    external_db = os.environ.get("DATABASE_URL")
    stack: Stack | None = None
    infra = []
    settings_file: Path | None = None
    try:
        if external_kafka is None:
            broker = start_broker(root / "broker")
            infra.append(broker.process)
            external_kafka = broker.bootstrap_servers
        if external_db is None:
            postgres = start_postgres(root / "postgres")
            infra.append(postgres.process)
            external_db = postgres.url
        asyncio.run(migrate(external_db))
        prefix = os.environ.get("COUPONS_TOPIC_PREFIX", f"dev{int(time.time())}.")
        env = stack_env(external_kafka, external_db, keys["jwt"], keys["codes"], port, prefix)
        logs = root / "logs"
        stack = build_stack(env, logs)
        gateway = f"http://127.0.0.1:{port}"
        settings_file = local.write(root, {**os.environ, **env, "COUPONS_URL": gateway})
        print(f"web app:  {gateway}/  (sign in with any name)", flush=True)
        print(f"gateway:  {gateway}", flush=True)
        print(f"notifier: http://127.0.0.1:{port + 1}", flush=True)
        print(f"settings: {settings_file} (read by every `coupons` command run here)")
        print(f"elsewhere: export $(grep -v '^#' {settings_file} | xargs)", flush=True)
        if demo:
            _print_demo(port, keys["jwt"])
        print(f"logs in {logs}; Ctrl-C stops everything", flush=True)
        return _supervise(stack, infra)
    finally:
        if settings_file is not None:
            local.remove(settings_file)
        if stack is not None:
            stack.stop()
        for process in reversed(infra):
            process.stop()


def _print_demo(port: int, jwt_secret: str) -> None:
    coupon = create_demo_coupon(f"http://127.0.0.1:{port}", jwt_secret)
    token = mint_token(jwt_secret, "alice")
    print(f"\ndemo coupon {coupon['code']} is live: {coupon['count']} units, id {coupon['id']}")
    print("claim one as alice:")
    print(
        f"  curl -s -X POST http://127.0.0.1:{port}/v1/coupons/{coupon['id']}/claims \\\n"
        f"       -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' -d '{{}}'"
    )
    print("other users: .venv/bin/coupons token --sub bob\n", flush=True)


BACKOFF_S_FIRST = 1.0
BACKOFF_S_MAX = 30.0
STEADY_S = 60.0  # a part up this long has recovered: its next restart waits the least again


def _supervise(stack: Stack, infra: list[Process]) -> int:
    """Until Ctrl-C (or SIGTERM): a part that exits is started again after a backoff that
    doubles while it keeps failing, and the terminal says so. The broker or PostgreSQL
    exiting ends the stack (the broker's log was in its memory): exit status 1."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    waits: dict[str, float] = {}
    started: dict[str, float] = {part.name: time.monotonic() for part in stack.parts}
    while not stop.wait(0.5):
        for process in infra:
            if process.popen.poll() is not None:
                print(f"{process.name} exited; stopping the stack (see {process.log_path})")
                return 1
        for part in stack.parts:
            code = part.process.popen.poll()
            if code is None:
                continue
            steady = time.monotonic() - started.get(part.name, 0) >= STEADY_S
            wait = BACKOFF_S_FIRST if steady else waits.get(part.name, BACKOFF_S_FIRST)
            waits[part.name] = min(2 * wait, BACKOFF_S_MAX)
            print(
                f"{part.name} exited with status {code}; starting it again in {wait:.0f} s"
                f" (see {part.process.log_path})",
                flush=True,
            )
            if stop.wait(wait):
                return 0
            started[part.name] = time.monotonic()
            assert part.again is not None, "every part of the stack can start again"
            try:
                stack.replace(part, part.again())
            except (RuntimeError, TimeoutError) as error:  # exited again, or never ready
                print(f"{part.name} did not start: {str(error).splitlines()[0]}", flush=True)
                continue
            print(f"{part.name} is back", flush=True)
    return 0
