"""Everything a benchmark run measures, started side by side on this machine: our stack
(broker, PostgreSQL, allocator, notifier, gateway), the baseline and the ceiling."""

import asyncio
import json
import secrets
import urllib.request
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from deploy.embedded import free_port
from deploy.stack import (
    Infra,
    Part,
    Stack,
    build_stack,
    free_ports_env,
    stack_env,
    start_infra,
    start_part,
    wait_listening,
)
from runtime.auth import mint_token
from runtime.db import create_database
from runtime.settings import COMMAND_PARTITIONS


@dataclass
class Systems:
    root: Path
    secret: str
    infra: Infra
    env: dict[str, str]
    ours_db: str
    baseline_db: str
    stack: Stack | None = None  # ours
    parts: dict[str, Part] = field(default_factory=dict)  # the baseline's and the ceiling's

    def part(self, name: str) -> Part:
        """One of ours (allocator, notifier, gateway) or of the compared (baseline, …)."""
        assert self.stack is not None
        ours = {"allocator": self.stack.allocators[0], "notifier": self.stack.notifier,
                "gateway": self.stack.gateway}  # fmt: skip
        found = ours.get(name) or self.parts[name]
        assert found is not None
        return found

    def port(self, name: str) -> int:
        return int(self.part(name).url.rsplit(":", 1)[1])

    def stop(self) -> None:
        for part in reversed(list(self.parts.values())):
            part.process.stop()
        if self.stack is not None:
            self.stack.stop()
        self.infra.stop()

    def create_coupon(self, count: int, daily_limit: bool = True) -> str:
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
            f"{self.part('gateway').url}/v1/coupons",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {mint_token(self.secret, 'bench', admin=True)}"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            coupon_id: str = json.loads(response.read())["id"]
        return coupon_id


def start(
    root: Path, log: Callable[[str], None], workers: int = 1, compared: bool = True,
    extra_env: dict[str, str] | None = None, broker: str = "tansu",
) -> Systems:  # fmt: skip
    """Our stack on `broker` (deploy/stack.py's BROKERS), and unless `compared` is False the
    baseline and the ceiling; each HTTP front with `workers` processes sharing its port."""
    secret = secrets.token_urlsafe(32)
    log(f"starting the broker ({broker}) and PostgreSQL")
    infra = start_infra(root, broker)
    suffix = uuid.uuid4().hex[:8]
    ours_db = asyncio.run(create_database(infra.postgres.url, f"ours_{suffix}"))
    baseline_db = asyncio.run(create_database(infra.postgres.url, f"baseline_{suffix}"))
    env = stack_env(infra.broker.bootstrap_servers, ours_db, secret, "codes-" + secret, 0,
                    f"b{suffix}.", broker)  # fmt: skip
    env = free_ports_env(env)
    env.update(
        {
            "COUPONS_COMMAND_PARTITIONS": str(COMMAND_PARTITIONS),
            # The whole load comes from one address; the per-person limit stays on (each
            # person claims once), and in-flight and queue bounds are the defaults.
            "RATE_LIMIT_ADDRESS_PER_S": "0",
            **(extra_env or {}),
        }
    )
    systems = Systems(root, secret, infra, env, ours_db, baseline_db)
    try:
        log("starting the allocator, notifier and gateway")
        systems.stack = build_stack(env, root / "logs", gateway_workers=workers)
        if compared:
            log("starting the baseline and the ceiling")
        for name in ("baseline", "ceiling") if compared else ():
            port = free_port()
            extra = {"PORT": str(port), "DATABASE_URL": baseline_db}
            for worker in range(workers):  # one at a time: the baseline creates its schema
                label = name if worker == 0 else f"{name}-{worker}"
                systems.parts[label] = start_part(
                    name, {**env, **extra}, port, root / "logs", label=label,
                    module=f"bench.{name}",
                )  # fmt: skip
                wait_listening(port, worker + 1)
    except BaseException:
        systems.stop()
        raise
    return systems


class Fresh(Protocol):
    """Starts everything anew for one scenario (and stops it after): bench/run.py."""

    def __call__(self, compared: bool = True) -> AbstractContextManager[Systems]: ...
