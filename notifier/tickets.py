"""GET /v1/tickets/{ticket}: the decision of one request, read from PostgreSQL."""

import asyncpg
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition

from deploy.http import Problem, json_response
from schemas import readmodel
from schemas.coupons import grant_view
from schemas.tickets import open_ticket
from schemas.topics import Topics, partition_of

POOL = web.AppKey("pool", asyncpg.Pool)
TICKET_SECRET = web.AppKey("ticket_secret", bytes)
TOPICS = web.AppKey("topics", Topics)
OFFSETS = web.AppKey("offsets", AIOKafkaConsumer)


async def ticket(request: web.Request) -> web.Response:
    opened = open_ticket(request.app[TICKET_SECRET], request.match_info["ticket"])
    if opened is None:
        raise Problem(404, "unknown-ticket", "Unknown ticket", "no such ticket was issued")
    coupon_id, request_id = opened
    pool = request.app[POOL]
    body: dict[str, object] = {"ticket": request.match_info["ticket"]}
    async with pool.acquire() as conn:
        row = await conn.fetchrow(readmodel.DECISION_BY_REQUEST, request_id)
        if row is not None:
            body["status"] = row["outcome"]
            if row["reason"]:
                body["reason"] = row["reason"]
            if row["g_id"] is not None:
                body["grant"] = grant_view(readmodel.grant_from_row(row, "g_"))
            return json_response(body)
        body["status"] = "pending"
        position = await conn.fetchval(readmodel.LINE_POSITION, request_id)
        if position is None:
            position = await _commands_ahead(request.app, conn, coupon_id)
    body["position"] = position
    return json_response(body, headers={"Retry-After": "1"})


async def _commands_ahead(app: web.Application, conn: asyncpg.Connection, coupon_id: str) -> int:
    """Not read by the allocator yet: at most this many commands are ahead of it."""
    consumer = app[OFFSETS]
    topic = app[TOPICS].commands
    partitions = consumer.partitions_for_topic(topic) or {0}
    tp = TopicPartition(topic, partition_of(coupon_id, len(partitions)))
    end = (await consumer.end_offsets([tp]))[tp]
    done = await conn.fetchval(readmodel.PARTITION_NEXT_OFFSET, topic, tp.partition) or 0
    return max(int(end) - int(done), 1)
