"""GET /v1/tickets/{ticket}: the decision of one request, read from PostgreSQL."""

import asyncio
import time

import asyncpg
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition

from deploy import kafka
from deploy.http import Problem, json_response
from schemas import readmodel
from schemas.coupons import grant_view
from schemas.messages import decode_command
from schemas.tickets import open_ticket
from schemas.topics import Topics, partition_of

POOL = web.AppKey("pool", asyncpg.Pool)
TICKET_SECRET = web.AppKey("ticket_secret", bytes)
TOPICS = web.AppKey("topics", Topics)
OFFSETS = web.AppKey("offsets", AIOKafkaConsumer)
TAIL_RECORDS_MAX = 20_000  # a longer tail: the request is reported pending, not searched
TAIL_READ_S = 2.0


LOST = (
    "this request was accepted, but the log that held it was lost before it was decided;"
    " send it again with the same Idempotency-Key"
)


async def ticket(request: web.Request) -> web.Response:
    opened = open_ticket(request.app[TICKET_SECRET], request.match_info["ticket"])
    if opened is None:
        raise Problem(404, "unknown-ticket", "Unknown ticket", "no such ticket was issued")
    coupon_id, request_id = opened
    app = request.app
    body: dict[str, object] = {"ticket": request.match_info["ticket"]}
    tp = _partition(app, coupon_id)
    async with app[POOL].acquire() as conn:
        # How far the allocator has decided, read first: a request it has passed is decided
        # or waiting in line by the time the next two reads look (one transaction commits
        # all three).
        done = await conn.fetchval(readmodel.PARTITION_NEXT_OFFSET, tp.topic, tp.partition)
        row = await conn.fetchrow(readmodel.DECISION_BY_REQUEST, request_id)
        if row is not None:
            body["status"] = row["outcome"]
            if row["reason"]:
                body["reason"] = row["reason"]
            if row["g_id"] is not None:
                body["grant"] = grant_view(readmodel.grant_from_row(row, "g_"))
            return json_response(body)
        position = await conn.fetchval(readmodel.LINE_POSITION, request_id)
    if position is None:
        done = int(done or 0)
        ahead = await app[TAILS].find(tp, done, request_id)
        if ahead == 0:  # in no log the allocator has still to read: the command is gone
            return json_response({**body, "status": "rejected", "reason": "lost", "detail": LOST})
        position = ahead if ahead is not None else await _commands_ahead(app, tp, done)
    body["status"] = "pending"
    body["position"] = position
    return json_response(body, headers={"Retry-After": "1"})


def _partition(app: web.Application, coupon_id: str) -> TopicPartition:
    topic = app[TOPICS].commands
    partitions = app[OFFSETS].partitions_for_topic(topic) or {0}
    return TopicPartition(topic, partition_of(coupon_id, len(partitions)))


async def _commands_ahead(app: web.Application, tp: TopicPartition, done: int) -> int:
    """Not read by the allocator yet: at most this many commands are ahead of it."""
    end = (await app[OFFSETS].end_offsets([tp]))[tp]
    return max(int(end) - done, 1)


class Tails:
    """Reads what the allocator has still to decide of a partition (its tail), to tell a
    request that is on its way from one whose log is gone. One read at a time, bounded."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer
        self.lock = asyncio.Lock()

    async def find(self, tp: TopicPartition, start: int, request_id: str) -> int | None:
        """How many commands are ahead of the request in the tail from `start`, itself
        included; 0 when the tail holds no such request; None when that cannot be told
        now (the tail is too long, the broker is slow, or the log is being replaced)."""
        async with self.lock:
            try:
                return await asyncio.wait_for(self._find(tp, start, request_id), TAIL_READ_S)
            except (TimeoutError, *kafka.ERRORS):
                return None

    async def _find(self, tp: TopicPartition, start: int, request_id: str) -> int | None:
        consumer = self.consumer
        if tp not in consumer.assignment():
            consumer.assign([*consumer.assignment(), tp])
        consumer.seek(tp, start)
        sought_ms = time.time() * 1000
        read = 0
        while True:
            fetched = (await consumer.getmany(tp, timeout_ms=100)).get(tp, [])
            for message in fetched:
                read += 1
                if _request_id(message.value) == request_id:
                    return read
            # The log's end, as the broker told it after the seek: an older answer may
            # predate the request.
            fresh = (consumer.last_poll_timestamp(tp) or 0) > sought_ms
            end = consumer.highwater(tp) if fresh else None
            if end is not None and end < start:
                return None  # the allocator has not yet seen that the broker's log is new
            if not fetched and end is not None and await consumer.position(tp) >= end:
                return 0
            if read > TAIL_RECORDS_MAX:
                return None


TAILS = web.AppKey("tails", Tails)


def _request_id(value: bytes | None) -> str | None:
    try:
        return getattr(decode_command(value or b""), "request_id", None)
    except (ValueError, TypeError, KeyError):
        return None  # a log mark, or a command the allocator skips as unreadable
