"""Several partitions' logs in memory driving real cores, as the broker and the allocators
would: the commands the cores emit are appended to the partition of their key. Only the
log is simulated; the cores are the production ones. For pure tests, and for what-if
replays of a real log (allocator/tools/whatif.py).
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from allocator.core.decide import PartitionCore
from allocator.core.effects import Effects, Loaded, Record
from allocator.core.state import CoreConfig
from schemas.messages import Command, Decision, Grant, ReleaseDay, ReserveDay, Tick
from schemas.topics import coupon_key, partition_for, user_key


def key_of(command: Command) -> bytes:
    if isinstance(command, ReserveDay | ReleaseDay):
        return user_key(command.user_id)
    return coupon_key(command.coupon_id)


@dataclass
class Cluster:
    partitions: int
    config: CoreConfig
    logs: list[list[Command]] = field(default_factory=list)
    cores: list[PartitionCore] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    # Each request's first decision, which the shell loads from PostgreSQL for a retry.
    first: dict[str, Decision] = field(default_factory=dict)
    offsets: dict[str, int] = field(default_factory=dict)
    effects: list[Effects] = field(default_factory=list)
    emitted: list[Command] = field(default_factory=list)
    replaying: bool = False
    # What the shell would find PostgreSQL refuses (allocator/shell/isolation.py): why, or None.
    refuses: Callable[[Command], str | None] = lambda command: None

    def __post_init__(self) -> None:
        self.logs = [[] for _ in range(self.partitions)]
        self.cores = [PartitionCore(self.config) for _ in range(self.partitions)]
        self.positions = [0] * self.partitions

    def partition_of(self, command: Command) -> int:
        """The partition the producer's partitioner gives the command's key."""
        return partition_for(key_of(command), self.partitions)

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
        needs = core.needs(records)
        core.load(Loaded())
        decided = {r: self.first[r] for r in needs.request_ids if r in self.first}
        batch = core.decide(records, decided)
        self.positions[partition] = batch.next_offset
        self.effects.append(batch)
        for row in batch.decisions:
            self.decisions.append(row.decision)
            self.first.setdefault(row.decision.request_id, row.decision)
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
