"""How a write request reaches the allocator and how its answer comes back."""

import asyncio
import time
from dataclasses import dataclass

import asyncpg
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from deploy.http import Problem, json_response, problem
from deploy.settings import Settings
from gateway.replies import Replies
from gateway.statuses import Statuses
from schemas import readmodel
from schemas.messages import Claim, CouponStatus, CreateCoupon, Decision, encode
from schemas.tickets import mint
from schemas.topics import Topics, coupon_key, partition_of


@dataclass
class Gateway:
    settings: Settings
    topics: Topics
    reply_topic: str
    pool: asyncpg.Pool
    producer: AIOKafkaProducer
    replies: Replies
    statuses: Statuses

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    def ticket(self, coupon_id: str, request_id: str) -> str:
        return mint(self.settings.ticket_secret, coupon_id, request_id)

    def ticket_url(self, ticket: str) -> str:
        return f"{self.settings.notifier_public_url}/v1/tickets/{ticket}"

    async def coupon(self, coupon_id: str) -> CouponStatus | None:
        known = self.statuses.get(coupon_id)
        if known is not None:
            return known
        row = await self.pool.fetchrow(readmodel.COUPON_BY_ID, coupon_id)
        if row is None:
            return None
        status = readmodel.status_from_row(row)
        self.statuses.learn(status)
        return status

    async def submit(self, command: Claim | CreateCoupon, wait_s: float) -> Decision | int:
        """Produce a command; its decision if it comes within `wait_s`, else its offset."""
        future = self.replies.expect(command.request_id)
        try:
            metadata = await asyncio.wait_for(
                self.producer.send_and_wait(
                    self.topics.commands, encode(command), key=coupon_key(command.coupon_id)
                ),
                timeout=self.settings.produce_timeout_s,
            )
        except (KafkaError, TimeoutError) as error:
            self.replies.forget(command.request_id)
            raise Problem(
                503,
                "unavailable",
                "Service unavailable",
                f"the request was not accepted ({type(error).__name__}); retry shortly",
                headers={"Retry-After": "1"},
            ) from error
        try:
            return await asyncio.wait_for(asyncio.shield(future), wait_s)
        except TimeoutError:
            self.replies.forget(command.request_id)
            return int(metadata.offset)

    async def position(self, request_id: str, coupon_id: str, offset: int) -> int | None:
        """How many are ahead of a pending request (itself included), if we can tell."""
        try:
            in_line = await self.pool.fetchval(readmodel.LINE_POSITION, request_id)
            if in_line is not None:
                return int(in_line)
            partition = _partition(self.producer, self.topics.commands, coupon_id)
            done = await self.pool.fetchval(
                readmodel.PARTITION_NEXT_OFFSET, self.topics.commands, partition
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return None
        return max(offset - (done or 0) + 1, 1)

    async def pending(self, command: Claim | CreateCoupon, offset: int) -> web.Response:
        ticket = self.ticket(command.coupon_id, command.request_id)
        position = await self.position(command.request_id, command.coupon_id, offset)
        return json_response(
            {"ticket": ticket, "status": "pending", "position": position},
            status=202,
            headers={"Location": self.ticket_url(ticket), "Retry-After": "1"},
        )


def _partition(producer: AIOKafkaProducer, topic: str, coupon_id: str) -> int:
    partitions = producer.client.cluster.partitions_for_topic(topic) or {0}
    return partition_of(coupon_id, len(partitions))


def rejection(decision: Decision, ticket: str) -> web.Response:
    reason = decision.reason or "rejected"
    return problem(
        409,
        reason.replace("_", "-"),
        "Claim rejected",
        REJECTION_DETAILS.get(reason, reason),
        reason=reason,
        ticket=ticket,
    )


REJECTION_DETAILS = {
    "sold_out": "every unit of this coupon has been given out",
    "not_started": "this coupon is not live yet",
    "expired": "this coupon has expired",
    "closed": "this coupon is closed",
    "already_claimed": "you already hold this coupon",
    "daily_limit": "you already received a coupon today",
    "unknown_coupon": "no such coupon",
    "conflict": "a coupon with this id exists already",
}


GATEWAY = web.AppKey("gateway", Gateway)
