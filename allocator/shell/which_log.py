"""Which log a partition's stored position belongs to.

The allocator stores how far it has decided a partition. That position means something
only in the log it was read from: a broker that restarts empty (the embedded broker keeps
its log in memory) starts every partition again at offset 0, and the stored position then
points past the end of a new log. Reading on from it would stall until the new log grew
that long, and would then skip the new log's first commands.

So each log gets a mark: a record the allocator writes into the partition, whose offset
and id it stores with its position. The log is the same while the record at that offset is
that mark. When it is not, the allocator goes on from the new log's first record, with a
new base added to its offsets so that positions keep growing across logs (the order of
the waiting line and of decisions stays the order of arrival).
"""

import asyncio
import enum
import logging
import time
import uuid
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import Counter

from allocator.core.decide import PartitionCore
from allocator.core.state import CoreConfig, day_of
from allocator.shell.outbox import Publisher
from allocator.shell.partitions import LOG, HeldPartition, Partitions, Phase
from allocator.shell.store import Fenced
from runtime import errors, kafka
from runtime.produce import Message
from runtime.settings import Settings
from schemas import logmarks
from schemas.messages import ReserveDay, encode
from schemas.topics import Topics, user_key

log = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 5.0


class Verdict(enum.Enum):
    SAME = "same"  # the mark is where it was written
    NEW = "new"  # the broker answered, and the mark is not there
    UNKNOWN = "unknown"  # the broker did not answer in time: decide nothing yet


def new_mark() -> tuple[str, bytes]:
    """A fresh log id and the record that marks a log with it."""
    log_id = str(uuid.uuid4())
    return log_id, logmarks.mark(log_id, int(time.time() * 1000))


class Checker:
    """Looks at marks, through one consumer of its own kept for the purpose."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.consumer: AIOKafkaConsumer | None = None
        self.lock = asyncio.Lock()

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None

    async def check(self, tp: TopicPartition, offset: int, log_id: str) -> Verdict:
        """Whether the record at `offset` of the partition is the mark `log_id`."""
        async with self.lock:
            try:
                return await asyncio.wait_for(self._check(tp, offset, log_id), CHECK_TIMEOUT_S)
            except Exception as error:
                if not errors.unavailable(error):
                    raise
                await self.stop()  # a fresh connection next time
                return Verdict.UNKNOWN
            finally:
                if self.consumer is not None:
                    self.consumer.unsubscribe()  # no fetching in the background between looks

    async def _check(self, tp: TopicPartition, offset: int, log_id: str) -> Verdict:
        if self.consumer is None:
            # One small batch is all a look needs (the broker sends at least one whole
            # batch, however small the limit).
            self.consumer = kafka.consumer(self.settings, max_records=1, partition_fetch_bytes=4096)
            await self.consumer.start()
        consumer = self.consumer
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        if end <= offset:
            # The embedded broker may report an end below the true one (its last batch's
            # first offset + 1), never above: a mark written alone in its batch at `offset`
            # would make the end at least offset + 1.
            return Verdict.NEW
        start = (await consumer.beginning_offsets([tp]))[tp]
        if start > offset:
            # Retention removed the mark (a real cluster); the log reaches our position, so
            # it is taken to be the same one.
            return Verdict.SAME
        consumer.seek(tp, offset)
        while True:  # bounded by the caller's timeout
            fetched = (await consumer.getmany(tp, timeout_ms=500)).get(tp, [])
            if fetched:
                first = fetched[0]
                same = first.offset == offset and logmarks.mark_id(first.value) == log_id
                return Verdict.SAME if same else Verdict.NEW


NEW_LOGS = Counter(
    "coupons_allocator_new_logs_total",
    "Partitions found in a log other than the one their stored position belongs to",
)
LOG_CHECK_EVERY_S = 1.0  # while a partition is paused for a log that may be new
# Every partition's mark is looked at this often anyway: a new log that grew past the stored
# position before it was read shows no end below the position. Re-reading it from its start
# then decides nothing twice: requests already decided get their first decision back.
LOG_VERIFY_EVERY_S = 5.0


@dataclass
class LogWatch:
    """The allocator's side of it: each partition's log marked, checked beside the
    deciding and whenever its end falls below the position, and a new log taken up."""

    table: Partitions
    consumer: AIOKafkaConsumer
    producer: AIOKafkaProducer
    publish: Publisher
    config: CoreConfig
    topics: Topics
    checker: Checker

    async def watch(self) -> None:
        """A log end below the position means the broker may have started a new log."""
        for held in self.table.held():
            highwater = self.consumer.highwater(held.tp)
            if highwater is not None and highwater + held.base < held.next_offset:
                self.table.suspect(held)
            due = time.monotonic() - held.checked_at >= LOG_CHECK_EVERY_S
            if self._unsure(held) and due and not held.lock.locked():
                async with held.lock:
                    if self._unsure(held):  # still: it may be over while we waited
                        await self.check(held)

    def _unsure(self, held: HeldPartition) -> bool:
        return self.table.phase(held) is Phase.UNSURE

    async def verify_marks(self) -> None:
        """Beside the deciding: look at every partition's mark now and then, and hand a
        partition whose mark is gone to the deciding loop, paused."""
        while True:
            await asyncio.sleep(LOG_VERIFY_EVERY_S)
            for held in self.table.held():
                if not self.table.deciding(held) or held.log_id is None or held.log_mark is None:
                    continue
                verdict = await self.checker.check(held.tp, held.log_mark, held.log_id)
                if verdict is Verdict.NEW and self.table.deciding(held):
                    self.table.suspect(held)  # the loop looks again, with the mark it has now

    async def check(self, held: HeldPartition) -> None:
        """Whether the partition's log is the one its position belongs to: decide on if
        so (a new log taken up first), stay UNSURE with its problem said if it cannot tell."""
        held.checked_at = time.monotonic()
        try:
            known = await self._known(held)
        except Exception as error:
            self._unchecked(held, error)
            return
        if known:
            self.table.known(held)
        else:
            self.table.trouble(held, LOG, "broker: cannot tell which log it holds")

    async def _known(self, held: HeldPartition) -> bool:
        if held.log_id is None or held.log_mark is None:
            await self._mark(held, held.base)  # a partition seen for the first time
            return True
        verdict = await self.checker.check(held.tp, held.log_mark, held.log_id)
        if verdict is Verdict.NEW:
            await self._new_log(held)
        return verdict is not Verdict.UNKNOWN

    def _unchecked(self, held: HeldPartition, error: Exception) -> None:
        """Fenced out while marking the log, or an outage said; anything else is a bug."""
        if isinstance(error, Fenced):
            self.table.fenced(held, error)
        elif errors.known(error):
            self.table.trouble(held, LOG, f"checking the log: {errors.said(error)}")
        else:
            raise error

    async def _new_log(self, held: HeldPartition) -> None:
        """The broker holds a new log: go on from its first record. What the old log held
        beyond the position is gone; positions go on growing from where they were."""
        tp = held.tp
        start = (await self.consumer.beginning_offsets([tp]))[tp]
        log.warning(
            "%s[%d]: the log is not the one position %d belongs to; going on from its offset %d",
            *tp, held.next_offset, start,
        )  # fmt: skip
        NEW_LOGS.inc()
        await self._mark(held, held.next_offset - start)
        self.table.reset(held, PartitionCore(self.config))
        self.table.seek(held, start)
        await self._ask_days_again(held)

    async def _mark(self, held: HeldPartition, base: int) -> None:
        log_id, payload = new_mark()
        tp = held.tp
        sent = await self.producer.send_and_wait(tp.topic, payload, partition=tp.partition)
        await held.store.mark_log(held.epoch, log_id, sent.offset, base)
        held.log_id, held.log_mark, held.base = log_id, sent.offset, base

    async def _ask_days_again(self, held: HeldPartition) -> None:
        """Claims waiting for a person's day asked for it in a log that is gone: ask again.
        The person's partition answers the same request the same way, so asking twice is
        safe."""
        waiting = await held.store.reserving(self.table.owns(held.tp))
        again: list[Message] = []
        for w in waiting:
            claim = w.claim
            day = day_of(claim.at_ms, self.config.day_zone)
            ask = ReserveDay(claim.request_id, claim.coupon_id, claim.user_id, day, claim.at_ms)
            again.append((self.topics.commands, user_key(claim.user_id), encode(ask)))
        if again:
            log.warning("%s[%d]: asking again for %d days", *held.tp, len(again))
            await self.publish(again)
