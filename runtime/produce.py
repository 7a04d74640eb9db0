"""Producing in batches per partition, never one `send()` per message.

aiokafka's per-message `send()` costs more than the work around it when thousands of tasks
call it at once (each builds its own futures and wakes the sender). Every producer here
gathers messages into one batch per partition instead: the allocator's outbox and the
notifier's replies a whole list at a time, the gateway whatever its requests hand over in
one turn of the event loop (`Batcher`).
"""

import asyncio
from collections.abc import Coroutine, Iterable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata
from prometheus_client import Gauge

from runtime import errors
from runtime.http import Bound
from schemas.topics import partition_for

Message = tuple[str, bytes, bytes]  # topic, key, value
Sent = tuple["asyncio.Future[RecordMetadata]", int]  # a batch's delivery, its first index


async def partition_count(producer: AIOKafkaProducer, topic: str) -> int:
    return len(await producer.partitions_for(topic))


async def send_partition(
    producer: AIOKafkaProducer, topic: str, partition: int, items: Iterable[tuple[bytes, bytes]]
) -> list[Sent]:
    """Append `items` in order to as few batches as they fit; each batch's delivery future
    with the index of its first item (an item's offset is the batch's plus its place)."""
    sent: list[Sent] = []
    batch, first, index = producer.create_batch(), 0, 0
    for index, (key, value) in enumerate(items):
        if batch.append(key=key, value=value, timestamp=None) is None:
            batch.close()
            sent.append((await producer.send_batch(batch, topic, partition=partition), first))
            batch, first = producer.create_batch(), index
            appended = batch.append(key=key, value=value, timestamp=None)
            assert appended is not None, "a message larger than a whole batch"
    batch.close()
    if batch.record_count():
        sent.append((await producer.send_batch(batch, topic, partition=partition), first))
    return sent


async def send_all(producer: AIOKafkaProducer, messages: list[Message]) -> None:
    """Hand every message to the broker, in order per partition, and wait until it has all."""
    groups: dict[tuple[str, int], list[tuple[bytes, bytes]]] = {}
    counts: dict[str, int] = {}
    for topic, key, value in messages:
        if topic not in counts:
            counts[topic] = await partition_count(producer, topic)
        groups.setdefault((topic, partition_for(key, counts[topic])), []).append((key, value))
    sent: list[Sent] = []
    for (topic, partition), items in groups.items():
        sent += await send_partition(producer, topic, partition, items)
    await asyncio.gather(*(future for future, _ in sent))


class Saturated(errors.Unavailable):
    """The produce queue is full: shed the request rather than queue without bound."""


# Summed over gateway workers (multiprocess mode), so that the ratio stays the share in use.
PRODUCE_QUEUE = Gauge(
    "coupons_gateway_produce_queue",
    "Commands waiting for the broker",
    multiprocess_mode="livesum",
)
PRODUCE_QUEUE_MAX = Bound(
    "coupons_gateway_produce_queue_max", "Commands waiting past which the gateway sheds"
)


class Batcher:
    """Many concurrent senders, few batches.

    `send()` queues a message and returns its offset once the broker has it. The first
    message queued for an idle partition schedules that partition's flush for the loop's
    next turn, so every request handled in the same turn rides in the same batch, at no
    added wait. While a batch waits for the producer to take it (the producer holds one
    undelivered batch per partition), what arrives queues up for the next. A failed batch
    fails each of its senders with the broker's error."""

    def __init__(self, producer: AIOKafkaProducer, queued_max: int = 20_000) -> None:
        self.producer = producer
        self.queued_max = queued_max
        self.pending = 0  # handed to send() and not answered yet
        self.counts: dict[str, int] = {}
        self.queued: dict[tuple[str, int], list[Queued]] = {}
        self.flushing: set[tuple[str, int]] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        PRODUCE_QUEUE_MAX.set(queued_max)

    async def send(self, topic: str, key: bytes, value: bytes) -> int:
        """The message's offset once the broker has it; `Saturated` at once when
        `queued_max` messages are waiting already."""
        if self.pending >= self.queued_max:
            raise Saturated(f"{self.pending} messages are waiting for the broker")
        self.pending += 1
        PRODUCE_QUEUE.inc()
        try:
            return await self._send(topic, key, value)
        finally:
            self.pending -= 1
            PRODUCE_QUEUE.dec()

    async def _send(self, topic: str, key: bytes, value: bytes) -> int:
        count = self.counts.get(topic)
        if count is None:
            count = self.counts[topic] = await partition_count(self.producer, topic)
        where = (topic, partition_for(key, count))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        self.queued.setdefault(where, []).append((key, value, future))
        if where not in self.flushing:
            self.flushing.add(where)
            loop.call_soon(self._track, self._flush(where))
        return await future

    def _track(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _flush(self, where: tuple[str, int]) -> None:
        try:
            while queue := self.queued.pop(where, None):
                waiting, items = [f for _, _, f in queue], [(k, v) for k, v, _ in queue]
                try:
                    sent = await send_partition(self.producer, *where, items)
                except Exception as error:  # noqa: BLE001 - e.g. the producer is stopping
                    _fail(waiting, error)
                    continue
                self._track(_settle(sent, waiting))
        finally:
            self.flushing.discard(where)

    async def stop(self) -> None:
        """Let the batches already handed over finish."""
        while self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)


Queued = tuple[bytes, bytes, "asyncio.Future[int]"]


async def _settle(sent: list[Sent], waiting: list[asyncio.Future[int]]) -> None:
    """Tell each sender its offset (its batch's first plus its place), or the error."""
    ends = [first for _, first in sent[1:]] + [len(waiting)]
    for (delivery, first), end in zip(sent, ends, strict=True):
        try:
            base = (await delivery).offset
        except Exception as error:  # noqa: BLE001 - each sender learns the broker's error
            _fail(waiting[first:end], error)
            continue
        for index, future in enumerate(waiting[first:end]):
            if not future.done():
                future.set_result(base + index)


def _fail(futures: list[asyncio.Future[int]], error: Exception) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(error)
