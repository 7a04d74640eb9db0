"""Which partitions this allocator decides, and what taking and letting go of one means.

Either given (ALLOCATOR_PARTITIONS: one StatefulSet pod per partition, replaced by a person
or an orchestrator) or shared out by a Kafka consumer group (ALLOCATOR_GROUP), which moves
a dead member's partitions to the live ones after its session times out and gives a new
member its share.

Taking a partition: a new epoch in its PostgreSQL row (the fence: whoever had it can never
commit to it again), its outbox published again, a seek to its stored position, its log
checked (allocator/shell/which_log.py). Letting go (the group takes it back): the batch in hand
is finished first, since the group waits for `on_partitions_revoked`; then nothing more is
decided or published for it. A member that overruns the group's patience is dropped from
the group with its batch still in hand; the fence then decides: a commit that comes after
the new owner's epoch is refused and abandoned, one that comes before is what the new owner
loads. A partition given back straight after a rebalance is kept, core and all, when its
row still holds our epoch.
"""

import asyncio
import logging
import time
from dataclasses import dataclass, field

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from prometheus_client import Counter

from allocator.core.decide import PartitionCore
from allocator.core.state import CoreConfig
from allocator.shell import outbox, readiness
from allocator.shell.outbox import Publisher
from allocator.shell.partitions import HeldPartition, Partitions
from allocator.shell.readiness import Unready
from allocator.shell.store import PartitionRow, PartitionStore
from allocator.shell.which_log import LogWatch
from runtime import errors
from runtime.settings import Settings

log = logging.getLogger(__name__)

REBALANCES = Counter(
    "coupons_allocator_rebalances_total", "Partitions given or taken back by the group", ["change"]
)
TAKE_AGAIN_S = 1.0  # a partition the database would not let us take is tried again this often


class Membership(ConsumerRebalanceListener):  # type: ignore[misc]
    """The group's word on what this allocator decides, passed to it."""

    def __init__(self, handover: "Handover") -> None:
        self.handover = handover

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.handover.let_go(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.handover.given(assigned)


@dataclass
class Handover:
    """The allocator's partitions: taken, kept, let go. Its moves are the table's
    (allocator/shell/partitions.py); what it awaits between them is here."""

    settings: Settings
    config: CoreConfig
    table: Partitions
    consumer: AIOKafkaConsumer
    pool: asyncpg.Pool
    logs: LogWatch
    publish: Publisher
    unready: Unready
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # the loop's rounds hold it too
    broken: BaseException | None = None  # what a group callback could not handle

    async def own(self, topic: str) -> None:
        """Take the partitions given, or join the group and take what it gives."""
        partitions = self.settings.allocator_partitions
        if partitions is None:
            self.consumer.subscribe([topic], listener=Membership(self))
            group = self.settings.allocator_group
            self.unready.clear(readiness.STARTING)
            self.unready.say(readiness.GROUP, f"joining the allocators' group {group}")
            return
        tps = [TopicPartition(topic, p) for p in partitions]
        self.consumer.assign(tps)
        for tp in tps:
            await self._take(tp)
        self.unready.clear(readiness.STARTING)

    async def let_go(self, revoked: set[TopicPartition]) -> None:
        """The group takes these back: once the batch in hand is done, decide no more."""
        async with self.lock:
            for tp in revoked:
                held = self.table.holding(tp)
                if held is not None:
                    async with held.lock:  # its lane's batch in hand is finished first
                        pass
                self.table.leave(tp)  # that batch may have found it fenced out: then waiting
            if revoked:
                REBALANCES.labels("revoked").inc(len(revoked))
                log.info("the group takes back %s", sorted(tp.partition for tp in revoked))

    async def given(self, assigned: set[TopicPartition]) -> None:
        """The group gives these: keep those still ours, take the others."""
        async with self.lock:
            try:
                for tp in sorted(assigned):
                    await self._keep_or_take(tp)
            except Exception as error:  # noqa: BLE001 - raised again by the deciding loop
                self.broken = error
            finally:
                self.table.forget_leaving()  # not given back: its next owner has it
            REBALANCES.labels("assigned").inc(len(assigned))
            self.unready.clear(readiness.STARTING, readiness.GROUP)
            log.info(
                "the group gives %s; deciding %s",
                sorted(tp.partition for tp in assigned),
                [held.tp.partition for held in self.table.held()],
            )

    async def take_waiting(self) -> None:
        """Between batches: try again to take what the group gave us but we could not take."""
        for tp in self.table.due(time.monotonic()):
            await self._keep_or_take(tp)

    async def _keep_or_take(self, tp: TopicPartition) -> None:
        kept = self.table.leaving(tp)
        try:
            if kept is not None and await kept.store.holds(kept.epoch):
                self.table.keep(tp)
                # A new assignment forgets positions: set it again.
                self.table.seek(kept, kept.next_offset - kept.base)
                return
            await self._take(tp)
        except Exception as error:
            if not errors.known(error):
                raise
            self.table.wait(tp, TAKE_AGAIN_S, f"not taken: {error}")

    async def _take(self, tp: TopicPartition) -> None:
        """Hold a partition: fence out the last holder, republish its outbox, seek."""
        self.table.taking(tp)
        store = PartitionStore(self.pool, tp.topic, tp.partition, self.settings.allocator_id)
        row = await store.acquire()
        held = HeldPartition(
            tp, store, PartitionCore(self.config), row.epoch, row.next_offset,
            base=row.log_base, log_id=row.log_id, log_mark=row.log_mark,
        )  # fmt: skip
        self.table.taken(held)  # UNSURE: not one record is decided before its log is known
        log.info(
            "took %s[%d] at epoch %d offset %d", tp.topic, tp.partition, row.epoch, row.next_offset
        )
        await self.resume(held, row)
        await self.logs.check(held)

    async def resume(self, held: HeldPartition, row: PartitionRow) -> None:
        """Carry on from the partition row as stored: publish its outbox (consumers take
        repeats), forget what the core held, read on from the row's offset."""
        if row.outbox:
            await self.publish(outbox.unpack(row.outbox))
        self.table.reset(held, PartitionCore(self.config))
        held.next_offset = row.next_offset
        self.table.seek(held, row.next_offset - held.base)
