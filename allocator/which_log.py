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
import time
import uuid

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from runtime import kafka
from runtime.settings import Settings
from schemas import logmarks

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
            except (TimeoutError, KafkaError, OSError):
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
