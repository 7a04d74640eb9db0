"""The in-memory cluster of allocator/tools/simulation.py, as pure tests use it (a fixed secret,
a simple partitioner), and the commands they build."""

import zlib
from dataclasses import dataclass, field
from datetime import UTC

from allocator.core.state import CoreConfig
from allocator.tools import simulation
from allocator.tools.simulation import key_of
from schemas.messages import Claim, Command, CouponSpec, CreateCoupon

SECRET = b"test-secret"


@dataclass
class Cluster(simulation.Cluster):
    config: CoreConfig = field(default_factory=lambda: CoreConfig(SECRET, UTC))

    def partition_of(self, command: Command) -> int:
        return zlib.crc32(key_of(command)) % self.partitions


DAY_MS = 86_400_000


NOON = 1_795_262_400_000  # 2026-11-21T12:00:00Z


def coupon_id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def request_id(n: int) -> str:
    return f"00000000-0000-4000-9000-{n:012d}"


def create(
    n: int, count: int, daily: bool = True, start: int = NOON, days: int = 7
) -> CreateCoupon:
    spec = CouponSpec(f"C{n}", "m", "d", start, start + days * DAY_MS, count, 1, daily)
    return CreateCoupon(request_id(10**9 + n), coupon_id(n), "admin", spec, start - 1, "r")


def claim(n: int, coupon: int, user: str, at: int = NOON + 1) -> Claim:
    return Claim(request_id(n), coupon_id(coupon), user, at, "r")


def run(commands: list[Command], partitions: int = 2, batch_max: int = 7) -> Cluster:
    cluster = Cluster(partitions)
    for command in commands:
        cluster.append(command)
    cluster.drain(batch_max)
    return cluster


def outcomes(cluster: Cluster) -> dict[str, tuple[str, str | None]]:
    return {d.request_id: (d.outcome, d.reason) for d in cluster.decisions}
