"""Every coupon's latest committed status, read from coupon.status: the gateway's edge
answers and the notifier's live coupon events both come from it."""

import asyncio
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from runtime import kafka
from schemas.messages import CouponStatus, decode_status

log = logging.getLogger(__name__)


class Statuses:
    def __init__(self, consumer: AIOKafkaConsumer, topic: str) -> None:
        self.consumer = consumer
        self.topic = topic
        self.coupons: dict[str, CouponStatus] = {}
        self.task: asyncio.Task[None] | None = None
        self.on_status: Callable[[CouponStatus], None] | None = None  # each, in log order

    async def start(self) -> None:
        tp = TopicPartition(self.topic, 0)
        self.consumer.assign([tp])
        await self.consumer.seek_to_beginning(tp)
        self.task = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    def get(self, coupon_id: str) -> CouponStatus | None:
        return self.coupons.get(coupon_id)

    def learn(self, status: CouponStatus) -> None:
        """Keep the newest. Each decision about a coupon counts in `decided`, so more of them
        is newer; between two with as many, the issued count only grows and closing is final."""
        known = self.coupons.get(status.coupon_id)
        if known is None or _version(status) >= _version(known):
            self.coupons[status.coupon_id] = status

    async def _read(self) -> None:
        async for message in kafka.follow(self.consumer, timeout_ms=200):
            try:
                status = decode_status(message.value or b"{}")
            except (ValueError, TypeError, KeyError) as error:
                log.error("unreadable status at %d: %s", message.offset, error)
                continue
            self.learn(status)
            if self.on_status is not None:
                self.on_status(status)


def _version(status: CouponStatus) -> tuple[int, int, bool]:
    return (status.decided, status.issued, status.closed)
