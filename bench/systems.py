"""Everything a benchmark run measures, started side by side on this machine: our stack
(broker, PostgreSQL, allocator, notifier, gateway), the baseline and the ceiling."""

import asyncio
import json
import secrets
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from deploy.dev import stack_env
from deploy.embedded import Broker, Postgres, free_port, start_broker, start_postgres
from deploy.stack import Part, start_part, wait_listening
from runtime.auth import mint_token
from runtime.db import create_database

COMMAND_PARTITIONS = 4


@dataclass
class Systems:
    root: Path
    secret: str
    broker: Broker
    postgres: Postgres
    env: dict[str, str]
    ours_db: str
    baseline_db: str
    parts: dict[str, Part] = field(default_factory=dict)

    def port(self, name: str) -> int:
        return int(self.parts[name].url.rsplit(":", 1)[1])

    def stop(self) -> None:
        for part in reversed(list(self.parts.values())):
            part.process.stop()
        self.postgres.process.stop()
        self.broker.process.stop()

    def create_coupon(self, count: int, daily_limit: bool = False) -> str:
        """A live coupon on our stack, through its API; returns its id."""
        now = datetime.now(UTC)
        body = {
            "code": "BENCH",
            "start_time": (now - timedelta(seconds=1)).isoformat(),
            "expiry": (now + timedelta(days=1)).isoformat(),
            "count": count,
            "daily_limit": daily_limit,
        }
        request = urllib.request.Request(
            f"{self.parts['gateway'].url}/v1/coupons",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {mint_token(self.secret, 'bench', admin=True)}"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            coupon_id: str = json.loads(response.read())["id"]
        return coupon_id


def start(
    root: Path, log: Callable[[str], None], workers: int = 1, compared: bool = True,
    extra_env: dict[str, str] | None = None,
) -> Systems:  # fmt: skip
    """Our stack, and unless `compared` is False the baseline and the ceiling; each HTTP
    front with `workers` processes sharing its port."""
    secret = secrets.token_urlsafe(32)
    log("starting the broker and PostgreSQL")
    broker = start_broker(root / "broker")
    try:
        postgres = start_postgres(root / "postgres")
    except BaseException:
        broker.process.stop()
        raise
    suffix = uuid.uuid4().hex[:8]
    ours_db = asyncio.run(create_database(postgres.url, f"ours_{suffix}"))
    baseline_db = asyncio.run(create_database(postgres.url, f"baseline_{suffix}"))
    gateway_port, notifier_port = free_port(), free_port()
    env = stack_env(
        broker.bootstrap_servers, ours_db, secret, "codes-" + secret, gateway_port, f"b{suffix}."
    )
    env.update(
        {
            "NOTIFIER_PORT": str(notifier_port),
            "NOTIFIER_PUBLIC_URL": f"http://127.0.0.1:{notifier_port}",
            "COUPONS_COMMAND_PARTITIONS": str(COMMAND_PARTITIONS),
            # The whole load comes from one address; the per-person limit stays on (each
            # person claims once), and in-flight and queue bounds are the defaults.
            "RATE_LIMIT_ADDRESS_PER_S": "0",
            **(extra_env or {}),
        }
    )
    systems = Systems(root, secret, broker, postgres, env, ours_db, baseline_db)
    logs = root / "logs"
    try:
        log("starting the allocator, notifier and gateway")
        allocator_port = free_port()
        systems.parts["allocator"] = start_part(
            "allocator", {**env, "ALLOCATOR_PORT": str(allocator_port)}, allocator_port, logs
        )
        systems.parts["notifier"] = start_part("notifier", env, notifier_port, logs)
        workers_env = {**env, "GATEWAY_WORKERS": str(workers)}
        systems.parts["gateway"] = start_part("gateway", workers_env, gateway_port, logs)
        wait_listening(gateway_port, workers)
        if compared:
            log("starting the baseline and the ceiling")
        for name in ("baseline", "ceiling") if compared else ():
            port = free_port()
            extra = {"PORT": str(port), "DATABASE_URL": baseline_db}
            for worker in range(workers):  # one at a time: the baseline creates its schema
                label = name if worker == 0 else f"{name}-{worker}"
                systems.parts[label] = start_part(
                    name, {**env, **extra}, port, logs, label=label, module=f"bench.{name}"
                )
                wait_listening(port, worker + 1)
    except BaseException:
        systems.stop()
        raise
    return systems
