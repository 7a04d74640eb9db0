"""An in-memory log of several partitions driving real cores: a harness for pure tests.

Only the log is simulated; the cores are the production ones. Commands the cores emit
are appended to the partition of their key, as the IO shell would produce them.
"""

import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC

from allocator.core import PartitionCore
from allocator.effects import Effects, Loaded, Record
from allocator.state import CoreConfig
from schemas.messages import (
    Claim,
    Command,
    CouponSpec,
    CreateCoupon,
    Decision,
    Grant,
    ReleaseDay,
    ReserveDay,
    Tick,
)
from schemas.topics import coupon_key, user_key

SECRET = b"test-secret"


def key_of(command: Command) -> bytes:
    if isinstance(command, ReserveDay | ReleaseDay):
        return user_key(command.user_id)
    return coupon_key(command.coupon_id)


@dataclass
class Cluster:
    partitions: int
    logs: list[list[Command]] = field(default_factory=list)
    cores: list[PartitionCore] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    offsets: dict[str, int] = field(default_factory=dict)
    effects: list[Effects] = field(default_factory=list)
    emitted: list[Command] = field(default_factory=list)
    replaying: bool = False
    # What the shell would find PostgreSQL refuses (allocator/isolation.py): why, or None.
    refuses: Callable[[Command], str | None] = lambda command: None

    def __post_init__(self) -> None:
        self.logs = [[] for _ in range(self.partitions)]
        self.cores = [PartitionCore(CoreConfig(SECRET, UTC)) for _ in range(self.partitions)]
        self.positions = [0] * self.partitions

    def partition_of(self, command: Command) -> int:
        return zlib.crc32(key_of(command)) % self.partitions

    def append(self, command: Command) -> None:
        self.logs[self.partition_of(command)].append(command)

    def step(self, partition: int, batch_max: int) -> bool:
        """Decide up to `batch_max` records of one partition; False when it had none."""
        start = self.positions[partition]
        log = self.logs[partition]
        if start >= len(log):
            return False
        records = [
            Record(o, log[o], self.refuses(log[o]))
            for o in range(start, min(len(log), start + batch_max))
        ]
        core = self.cores[partition]
        core.needs(records)
        core.load(Loaded())
        batch = core.decide(records, {})
        self.positions[partition] = batch.next_offset
        self.effects.append(batch)
        for row in batch.decisions:
            self.decisions.append(row.decision)
            self.offsets[row.decision.request_id] = row.offset
        for command in batch.commands:
            self.emitted.append(command)
            if not self.replaying:  # a replay reads them from the log it was given
                self.append(command)
        return True

    def drain(self, batch_max: int = 7) -> None:
        while any(self.step(p, batch_max) for p in range(self.partitions)):
            pass

    def tick(self, now_ms: int) -> None:
        """What the allocator's timer does: a Tick for every coupon with a deadline due."""
        for core in self.cores:
            for coupon_id in core.due(now_ms):
                name = f"tick/{coupon_id}/{now_ms}"
                self.append(Tick(str(uuid.uuid5(uuid.NAMESPACE_OID, name)), coupon_id, now_ms))
        self.drain()

    def grants(self) -> dict[str, Grant]:
        """Every grant as it stands now."""
        latest: dict[str, Grant] = {}
        for batch in self.effects:
            latest.update(batch.new_grants)
            latest.update(batch.grant_changes)
        return latest


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
