"""This gateway's own reply topic: decisions come back here, to the request waiting for them."""

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition

from runtime import hops, kafka
from schemas.messages import Decision, decode_decision

log = logging.getLogger(__name__)

WAITERS_MAX = 100_000


class Replies:
    """Any number of requests may wait on one request id (a retry beside its first try):
    each has a future of its own, so one that stops waiting never ends another's wait."""

    def __init__(self, consumer: AIOKafkaConsumer, topic: str) -> None:
        self.consumer = consumer
        self.topic = topic
        self.waiting: dict[str, list[asyncio.Future[Decision]]] = {}
        self.waiters = 0
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        tp = TopicPartition(self.topic, 0)
        self.consumer.assign([tp])
        await self.consumer.seek_to_end(tp)
        await self.consumer.position(tp)  # resolve now: nothing before this start matters
        self.task = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    @property
    def healthy(self) -> bool:
        return self.task is not None and not self.task.done()

    def expect(self, request_id: str) -> asyncio.Future[Decision]:
        """A future of the caller's own for the decision on `request_id`; the caller
        `forget`s it when it stops waiting, whether it was answered or not."""
        assert self.waiters < WAITERS_MAX, "callers bound in-flight requests first"
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self.waiting.setdefault(request_id, []).append(future)
        self.waiters += 1
        return future

    def forget(self, request_id: str, future: asyncio.Future[Decision]) -> None:
        """Stop waiting with `future`; every other waiter on `request_id` goes on."""
        futures = self.waiting.get(request_id)
        if futures is None or future not in futures:
            return  # answered: the reader took it already
        futures.remove(future)
        self.waiters -= 1
        if not futures:
            del self.waiting[request_id]
        if not future.done():
            future.cancel()

    async def _read(self) -> None:
        async for message in kafka.follow(self.consumer, timeout_ms=100):
            hops.trip("log_reply", (message,))
            futures = self.waiting.pop((message.key or b"").decode(), [])
            self.waiters -= len(futures)
            decision = decode_decision(message.value or b"{}") if futures else None
            for future in futures:
                if decision is not None and not future.done():
                    future.set_result(decision)
