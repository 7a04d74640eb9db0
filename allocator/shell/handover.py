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

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from prometheus_client import Counter, Gauge

from allocator.core.decide import PartitionCore
from allocator.shell import outbox, readiness, which_log
from allocator.shell.held_partition import HeldPartition
from allocator.shell.readiness import Unready
from allocator.shell.store import FENCED, Fenced, PartitionRow, PartitionStore
from runtime import errors
from runtime.produce import Message
from schemas.topics import Topics

log = logging.getLogger(__name__)

OWNED = Gauge("coupons_allocator_partition_owned", "1 for each partition it decides", ["partition"])
LAG = Gauge("coupons_allocator_lag_records", "Records not decided yet", ["partition"])
REBALANCES = Counter(
    "coupons_allocator_rebalances_total", "Partitions given or taken back by the group", ["change"]
)
TAKE_AGAIN_S = 1.0  # a partition the database would not let us take is tried again this often


class Membership(ConsumerRebalanceListener):  # type: ignore[misc]
    """The group's word on what this allocator decides, passed to it."""

    def __init__(self, owning: "Handover") -> None:
        self.owning = owning

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.owning.let_go(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.owning.given(assigned)


class Handover(which_log.LogWatch):
    """The allocator's partitions: taken, kept, let go. Mixed into the allocator."""

    pool: asyncpg.Pool | None
    topics: Topics
    deciding_lock: asyncio.Lock  # held while a batch is in hand
    waiting: dict[TopicPartition, float]  # assigned, not taken yet: when to try again
    leaving: dict[TopicPartition, HeldPartition]  # revoked; kept if given straight back
    broken: BaseException | None  # what a group callback met that it could not handle
    unready: Unready  # why it is not ready, by source

    @property
    def grouped(self) -> bool:
        return self.settings.allocator_partitions is None

    async def own(self, consumer: AIOKafkaConsumer) -> None:
        """Take the partitions given, or join the group and take what it gives."""
        partitions = self.settings.allocator_partitions
        if partitions is None:
            consumer.subscribe([self.topics.commands], listener=Membership(self))
            group = self.settings.allocator_group
            self.unready.clear(readiness.STARTING)
            self.unready.say(readiness.GROUP, f"joining the allocators' group {group}")
            return
        tps = [TopicPartition(self.topics.commands, p) for p in partitions]
        consumer.assign(tps)
        for tp in tps:
            await self._take(tp)
        self.unready.clear(readiness.STARTING)

    async def let_go(self, revoked: set[TopicPartition]) -> None:
        """The group takes these back: once the batch in hand is done, decide no more."""
        async with self.deciding_lock:
            for tp in revoked:
                self.waiting.pop(tp, None)
                self.unready.clear(readiness.taking(tp.partition))
                owned = self.owned.get(tp)
                if owned is None:
                    continue
                async with owned.lock:  # its lane's batch in hand is finished first
                    still = self.owned.pop(tp, None)
                self.waiting.pop(tp, None)  # that batch may have found it fenced out
                if still is None:
                    continue  # and let it go already
                self.leaving[tp] = owned
                _unmeasure(tp)
            if revoked:
                REBALANCES.labels("revoked").inc(len(revoked))
                log.info("the group takes back %s", sorted(tp.partition for tp in revoked))

    async def given(self, assigned: set[TopicPartition]) -> None:
        """The group gives these: keep those still ours, take the others."""
        async with self.deciding_lock:
            try:
                for tp in sorted(assigned):
                    await self._keep_or_take(tp)
            except Exception as error:  # noqa: BLE001 - raised again by the deciding loop
                self.broken = error
            finally:
                self.leaving.clear()  # not given back: its next owner has it
            REBALANCES.labels("assigned").inc(len(assigned))
            self.unready.clear(readiness.STARTING, readiness.GROUP)
            log.info(
                "the group gives %s; deciding %s",
                sorted(tp.partition for tp in assigned),
                sorted(tp.partition for tp in self.owned),
            )

    async def _keep_or_take(self, tp: TopicPartition) -> None:
        assert self.consumer
        kept = self.leaving.pop(tp, None)
        try:
            if kept is not None and await kept.store.holds(kept.epoch):
                self.owned[tp] = kept
                self.unready.clear(readiness.taking(tp.partition))
                OWNED.labels(str(tp.partition)).set(1)
                # A new assignment forgets positions and pauses: set both again.
                self._seek(kept, kept.next_offset - kept.base)
                if not kept.deciding:
                    self.consumer.pause(tp)
                return
            await self._take(tp)
        except Exception as error:
            if not errors.known(error):
                raise
            self._wait_to_take(tp, TAKE_AGAIN_S, f"taking partition {tp.partition}: {error}")

    def _wait_to_take(self, tp: TopicPartition, after_s: float, why: str) -> None:
        assert self.consumer
        self.owned.pop(tp, None)
        self.waiting[tp] = time.monotonic() + after_s
        self.consumer.pause(tp)
        self.unready.say(readiness.taking(tp.partition), why)

    async def take_waiting(self) -> None:
        """Between batches: try again to take what the group gave us but we could not take."""
        now = time.monotonic()
        for tp, at in list(self.waiting.items()):
            if now >= at:
                del self.waiting[tp]
                await self._keep_or_take(tp)

    async def _take(self, tp: TopicPartition) -> None:
        """Own a partition: fence out the last owner, republish its outbox, seek."""
        assert self.pool and self.consumer
        store = PartitionStore(self.pool, tp.topic, tp.partition, self.settings.allocator_id)
        ownership = await store.acquire()
        owned = HeldPartition(
            tp, store, PartitionCore(self.config), ownership.epoch, ownership.next_offset,
            base=ownership.log_base, log_id=ownership.log_id, log_mark=ownership.log_mark,
        )  # fmt: skip
        self.owned[tp] = owned
        self.unready.clear(readiness.taking(tp.partition))
        OWNED.labels(str(tp.partition)).set(1)
        await self._resume(owned, ownership)
        self._suspect(owned)  # not one record is decided before its log is known
        await self._check_log(owned)
        log.info(
            "took %s[%d] at epoch %d offset %d", tp.topic, tp.partition, ownership.epoch,
            ownership.next_offset,
        )  # fmt: skip

    async def _resume(self, owned: HeldPartition, ownership: PartitionRow) -> None:
        """Carry on from the partition row as stored: publish its outbox (consumers take
        repeats), forget what the core held, read on from the row's offset."""
        assert self.consumer
        if ownership.outbox:
            await self._publish(outbox.unpack(ownership.outbox))
        owned.reset(PartitionCore(self.config))
        owned.next_offset = ownership.next_offset
        self._seek(owned, ownership.next_offset - owned.base)

    def _fenced_out(self, owned: HeldPartition, fenced: Fenced) -> None:
        """Another allocator took the partition: never write to it again at this epoch. In
        a group, it is taken again after a session's time if the group still says it is
        ours (the other was a member the group had dropped, and now knows it)."""
        FENCED.inc()
        log.warning("%s: stopping work on this partition", fenced)
        assert self.consumer
        del self.owned[owned.tp]
        _unmeasure(owned.tp)
        if self.grouped:
            after_s = self.settings.allocator_session_timeout_ms / 1000
            self._wait_to_take(owned.tp, after_s, f"fenced out of partition {owned.tp.partition}")
            return
        self.consumer.pause(owned.tp)
        if not self.owned:
            self.unready.say(readiness.FENCED, "fenced out of every partition it was given")

    async def _publish(self, messages: list[Message]) -> None:
        raise NotImplementedError


def _unmeasure(tp: TopicPartition) -> None:
    OWNED.remove(str(tp.partition))
    LAG.remove(str(tp.partition))
