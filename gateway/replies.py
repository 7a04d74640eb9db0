"""This gateway's own reply topic: decisions come back here, to the request waiting for them."""

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition

from runtime import hops, kafka
from schemas.messages import Decision, decode_decision

log = logging.getLogger(__name__)

WAITERS_MAX = 100_000


class Replies:
    def __init__(self, consumer: AIOKafkaConsumer, topic: str) -> None:
        self.consumer = consumer
        self.topic = topic
        self.waiting: dict[str, asyncio.Future[Decision]] = {}
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
        future = self.waiting.get(request_id)
        if future is None:
            assert len(self.waiting) < WAITERS_MAX, "callers bound in-flight requests first"
            future = asyncio.get_running_loop().create_future()
            self.waiting[request_id] = future
        return future

    def forget(self, request_id: str) -> None:
        future = self.waiting.pop(request_id, None)
        if future is not None and not future.done():
            future.cancel()

    async def _read(self) -> None:
        async for message in kafka.follow(self.consumer, timeout_ms=100):
            hops.trip("log_reply", (message,))
            future = self.waiting.pop((message.key or b"").decode(), None)
            if future is not None and not future.done():
                future.set_result(decode_decision(message.value or b"{}"))
