"""`coupons dev`: broker, PostgreSQL, allocator, notifier and gateway on this machine.

Two brokers (`--broker`): Tansu (the default: nothing but pip) keeps its log in memory, so
each run uses topics of its own (a run-scoped prefix) while PostgreSQL keeps coupons and
grants across runs; Apache Kafka (needs Java) keeps its log on disk in the data folder, and
its topic prefix is made once and kept beside it, so a stack started again reads and
replays the same log.

Stopping takes a bounded time: the parts, then the broker and PostgreSQL, each get a grace
after their stop signal and are killed after it. Nothing started outlives `coupons dev`,
even when it is killed itself (deploy/embedded.py), and what a former run on the same data
folder left running is stopped before this one starts.
"""

import asyncio
import contextlib
import fcntl
import json
import os
import secrets
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

from deploy import local
from deploy.embedded import (
    Process,
    start_postgres,
    stop_left_behind_broker,
    stop_left_behind_postgres,
    stop_together,
)
from deploy.kafka_broker import KafkaUnavailable, missing
from deploy.stack import BROKERS, Stack, build_stack, stack_env, start_broker_of
from runtime.auth import mint_token
from runtime.db import migrate
from runtime.errors import CouponsError

STOP_GRACE_S = 3.0  # the parts' time to stop after SIGTERM, then the broker's and PostgreSQL's
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
LOCK_FILE_NAME = "dev.lock"
BROKER_DEFAULT = BROKERS[0]  # Tansu: runs wherever pip does; Apache Kafka needs Java
BROKER_FOLDERS = {"tansu": "broker", "kafka": "kafka"}  # in the data folder
PREFIX_FILE_NAME = "topic-prefix"  # beside a log that is kept: its topics' prefix
BROKER_SAID = {
    "tansu": "Tansu at {at}, its log in memory (`make run BROKER=kafka` keeps it)",
    "kafka": "Apache Kafka at {at}, its log kept in {folder}",
}


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


class DidNotStart(CouponsError):
    """Why `coupons dev` started no stack, in one line (the command line says it)."""


def run_dev(
    port: int,
    data_dir: str,
    demo: bool,
    stop_grace_s: float = STOP_GRACE_S,
    broker: str = BROKER_DEFAULT,
) -> int:
    assert broker in BROKERS, broker
    why = _cannot_start(broker)
    if why is not None:
        raise DidNotStart(f"--broker {broker}: {why}")
    root = Path(data_dir).resolve()
    with _only_run_on(root) as alone:
        if not alone:
            raise DidNotStart(f"`coupons dev` already runs on {root}: stop it first, or give"
                              " another --data-dir")  # fmt: skip
        _clear_former_run(root)  # a LeftBehindError says what to do
        return _run_stack(root, port, demo, stop_grace_s, broker)


def _cannot_start(broker: str) -> str | None:
    """Why the broker asked for cannot run here (Java missing, say), or None; a broker
    given by KAFKA_BOOTSTRAP_SERVERS is not started, so it needs nothing."""
    if broker != "kafka" or os.environ.get("KAFKA_BOOTSTRAP_SERVERS") is not None:
        return None
    return missing()


def topic_prefix(kept_in: Path | None) -> str:
    """COUPONS_TOPIC_PREFIX, else: for a log kept in the folder `kept_in` (Apache Kafka's),
    one made the first time and kept there, so a run started again reads the same topics
    (and a new log, should the folder go, gets new ones); otherwise a fresh one each run:
    Tansu's log, in memory, went with the last run, and PostgreSQL still holds the positions
    the allocators reached in that run's topics."""
    given = os.environ.get("COUPONS_TOPIC_PREFIX")
    if given is not None:
        return given
    fresh = f"dev{int(time.time())}."
    if kept_in is None:
        return fresh
    kept = kept_in / PREFIX_FILE_NAME
    if not kept.exists():
        kept_in.mkdir(parents=True, exist_ok=True)
        kept.write_text(fresh + "\n")
    return kept.read_text().strip()


@contextlib.contextmanager
def _only_run_on(root: Path) -> Iterator[bool]:
    """Whether this is the one `coupons dev` on the folder, for as long as it runs: a lock
    the kernel lets go of when the process ends, however it ends."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / LOCK_FILE_NAME).open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def _clear_former_run(root: Path) -> None:
    """What a former run on this folder left behind (it was killed, say): its settings file
    names a stack that is gone; its broker and PostgreSQL are stopped."""
    local.remove(root / local.FILE_NAME)
    said = []
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") is None:
        said.append(stop_left_behind_broker(root / "broker"))
    if os.environ.get("DATABASE_URL") is None:
        said.append(stop_left_behind_postgres(root / "postgres"))
    for line in said:
        if line is not None:
            print(line, flush=True)


def _run_stack(root: Path, port: int, demo: bool, stop_grace_s: float, kind: str) -> int:
    keys = dev_secrets(root)
    external_kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    external_db = os.environ.get("DATABASE_URL")
    broker_dir = root / BROKER_FOLDERS[kind]
    broker_said = f"{external_kafka} (KAFKA_BOOTSTRAP_SERVERS)"
    keeps_log = external_kafka is None and kind == "kafka"  # ours, and on disk
    runs_on = kind if external_kafka is None else "kafka"  # a broker given is taken for Kafka
    prefix = topic_prefix(broker_dir if keeps_log else None)
    stack: Stack | None = None
    infra = []
    settings_file: Path | None = None
    try:
        if external_kafka is None:
            broker = start_broker_of(kind, broker_dir)
            infra.append(broker.process)
            external_kafka = broker.bootstrap_servers
            broker_said = BROKER_SAID[kind].format(at=external_kafka, folder=broker_dir)
        if external_db is None:
            postgres = start_postgres(root / "postgres")
            infra.append(postgres.process)
            external_db = postgres.url
        asyncio.run(migrate(external_db))
        env = stack_env(
            external_kafka, external_db, keys["jwt"], keys["codes"], port, prefix, runs_on
        )
        if kind == "kafka":  # started again under its name, the allocator is the member it was
            env["ALLOCATOR_STATIC_MEMBER"] = "1"  # (Tansu waits out the session all the same)
        logs = root / "logs"
        stack = build_stack(env, logs)
        gateway = f"http://127.0.0.1:{port}"
        allocator = f"http://127.0.0.1:{env['ALLOCATOR_PORT']}"
        settings_file = local.write(
            root,
            {**os.environ, **env, "COUPONS_URL": gateway, local.ALLOCATOR_URL: allocator},
        )
        print(f"web app:   {gateway}/  (sign in with any name)", flush=True)
        print(f"gateway:   {gateway}  (/docs, /metrics)", flush=True)
        print(f"notifier:  {env['NOTIFIER_PUBLIC_URL']}  (/docs, /metrics)", flush=True)
        print(f"allocator: {allocator}  (/partitions, /metrics)", flush=True)
        print(f"broker:    {broker_said}; topics {prefix}*", flush=True)
        print(f"settings:  {settings_file} (read by every `coupons` command run here)")
        print(f"elsewhere: export $(grep -v '^#' {settings_file} | xargs)", flush=True)
        if demo:
            _print_demo(port, keys["jwt"])
        print(f"logs in {logs}; Ctrl-C stops everything", flush=True)
        return _supervise(stack, infra)
    except KafkaUnavailable as error:  # Maven could not fetch the jars, say
        raise DidNotStart(f"--broker kafka: {error}") from error
    except (RuntimeError, TimeoutError, OSError) as error:  # a server or part would not start
        first = (str(error).splitlines() or [type(error).__name__])[0].rstrip(":")
        raise DidNotStart(f"the stack did not start: {first} (logs in {root / 'logs'})") from error
    finally:
        if settings_file is not None:
            local.remove(settings_file)
        _stop(stack, infra, stop_grace_s)


def _stop(stack: Stack | None, infra: list[Process], grace_s: float) -> None:
    """The parts first (they may still write to the broker and PostgreSQL), then the broker
    and PostgreSQL: each wave is asked to stop, and what still runs `grace_s` later is killed,
    so the stop takes at most 2 × (grace_s + KILLED_WAIT_S). The terminal names the killed."""
    for sig in STOP_SIGNALS:  # asking again must not cut the bounded stop short
        signal.signal(sig, signal.SIG_IGN)
    killed = stack.stop(grace_s) if stack is not None else []
    killed += stop_together(infra, grace_s)
    for process in killed:
        print(f"{process.name} did not stop within {grace_s:g} s of its stop signal: killed",
              flush=True)  # fmt: skip


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
    exiting ends the stack (Tansu's log was in its memory; Apache Kafka's is kept for the
    next run): exit status 1."""
    stop = threading.Event()
    restarting = threading.Event()  # starting a part again waits up to READY_TIMEOUT_S

    def asked(signum: int, frame: FrameType | None) -> None:
        stop.set()
        if restarting.is_set():  # cut that wait short (start_part stops what it started)
            restarting.clear()
            raise KeyboardInterrupt

    for sig in STOP_SIGNALS:
        signal.signal(sig, asked)
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
            restarting.set()
            try:
                stack.replace(part, part.again())
            except KeyboardInterrupt:  # asked to stop meanwhile
                return 0
            except (RuntimeError, TimeoutError) as error:  # exited again, or never ready
                print(f"{part.name} did not start: {str(error).splitlines()[0]}", flush=True)
                continue
            finally:
                restarting.clear()
            print(f"{part.name} is back", flush=True)
    return 0
