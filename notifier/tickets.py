"""GET /v1/tickets/{ticket}: the decision of one request, read from PostgreSQL."""

import asyncio
import time
from dataclasses import dataclass

import asyncpg
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition

from runtime import errors, kafka
from runtime.http import Problem, json_response
from runtime.statuses import Statuses
from schemas import readmodel, reasons
from schemas.messages import decode_command
from schemas.tickets import open_ticket
from schemas.topics import Topics, partition_of
from schemas.views import EDGE_REASONS, grant_view, state_at

POOL = web.AppKey("pool", asyncpg.Pool)
TICKET_SECRET = web.AppKey("ticket_secret", bytes)
TOPICS = web.AppKey("topics", Topics)
OFFSETS = web.AppKey("offsets", AIOKafkaConsumer)
STATUSES = web.AppKey("statuses", Statuses)
TAIL_RECORDS_MAX = 20_000  # a longer tail: the request is reported pending, not searched
TAIL_READ_S = 2.0
SCAN_EVERY_S = 1.0


async def ticket(request: web.Request) -> web.Response:
    opened = open_ticket(request.app[TICKET_SECRET], request.match_info["ticket"])
    if opened is None:
        raise Problem("unknown-ticket", "no such ticket was issued")
    coupon_id, request_id = opened
    asked = time.monotonic()
    app = request.app
    body: dict[str, object] = {"ticket": request.match_info["ticket"]}
    tp = await _partition(app, coupon_id)
    pool = app[POOL]
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        # The three reads see one snapshot, as the allocator commits them in one
        # transaction: a request below the position is then decided or in line, never
        # neither (read apart, a commit between the last two reads made it look 'lost').
        done = await conn.fetchval(readmodel.PARTITION_NEXT_OFFSET, tp.topic, tp.partition)
        row = await conn.fetchrow(readmodel.DECISION_BY_REQUEST, request_id)
        if row is not None:
            body["status"] = row["outcome"]
            if row["reason"]:  # in the words of its problem, as the gateway gives it
                body["reason"] = row["reason"]
                body["detail"] = reasons.detail(row["reason"])
            if row["g_id"] is not None:
                body["grant"] = grant_view(readmodel.grant_from_row(row, "g_"))
            return json_response(body)
        position = await conn.fetchval(readmodel.LINE_POSITION, request_id)
    if position is None:
        done = int(done or 0)
        ahead = await app[TAILS].find(tp, done, request_id, asked)
        if ahead == 0:  # in no log the allocator has still to read
            return json_response({**body, **await _never_decided(app, coupon_id)})
        position = ahead if ahead is not None else await _commands_ahead(app, tp, done)
    body["status"] = "pending"
    body["position"] = position
    return json_response(body, headers={"Retry-After": "1"})


async def _never_decided(app: web.Application, coupon_id: str) -> dict[str, str]:
    """A request in no log and not decided: the gateway's edge answered it (the coupon was
    over, as it still is: its answer is this one), or its command was lost."""
    status = app[STATUSES].get(coupon_id)
    if status is None:  # not read from the status topic yet
        row = await app[POOL].fetchrow(readmodel.COUPON_BY_ID, coupon_id)
        status = None if row is None else readmodel.status_from_row(row)
    edge = None if status is None else EDGE_REASONS.get(state_at(status, int(time.time() * 1000)))
    reason = edge or "lost"
    return {"status": "rejected", "reason": reason, "detail": reasons.detail(reason)}


async def _partition(app: web.Application, coupon_id: str) -> TopicPartition:
    """The partition of the coupon's commands. A reader that never read the topic may not
    know its partitions yet (Apache Kafka sends metadata of the topics asked about): it
    asks the broker then, never guessing one partition, which would make the tail of the
    wrong partition answer 'lost' for a request on its way (Tansu had hidden this)."""
    topic = app[TOPICS].commands
    partitions = await kafka.partitions_for(app[OFFSETS], topic)
    if not partitions:
        raise errors.BrokerUnavailable(f"the broker does not say the partitions of {topic}")
    return TopicPartition(topic, partition_of(coupon_id, len(partitions)))


async def _commands_ahead(app: web.Application, tp: TopicPartition, done: int) -> int:
    """Not read by the allocator yet: at most this many commands are ahead of it."""
    end = (await app[OFFSETS].end_offsets([tp]))[tp]
    return max(int(end) - done, 1)


@dataclass
class Scan:
    """One read of a partition's tail: from `start` to the end the broker told."""

    began: float  # time.monotonic() when it began
    start: int
    ahead: dict[str, int]  # request id: commands up to it from `start`, itself included
    complete: bool  # it reached the end (not cut short by TAIL_RECORDS_MAX)


class Tails:
    """Reads what the allocator has still to decide of a partition (its tail), to tell a
    request that is on its way from one whose log is gone. At most one read a second per
    partition, one at a time; polls that come while a read is under way wait for it."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer
        self.lock = asyncio.Lock()
        self.scans: dict[TopicPartition, Scan] = {}  # the last complete read
        self.reading: dict[TopicPartition, tuple[float, asyncio.Task[Scan | None]]] = {}

    async def find(
        self, tp: TopicPartition, start: int, request_id: str, asked: float
    ) -> int | None:
        """How many commands are ahead of the request in the tail from `start`, itself
        included; 0 when a read that began after `asked` (when the poll came, so after the
        request was in the log) found no such request; None when that cannot be told yet."""
        scan = self.scans.get(tp)
        if scan is None or scan.began < asked:
            reading = self.reading.get(tp)
            now = time.monotonic()
            if reading is None and (scan is None or now - scan.began >= SCAN_EVERY_S):
                reading = (now, asyncio.create_task(self._read(tp, start)))
                self.reading[tp] = reading
                reading[1].add_done_callback(lambda _: self.reading.pop(tp, None))
            if reading is not None and reading[0] >= asked:
                scan = await asyncio.shield(reading[1]) or scan
        if scan is None or scan.start > start:
            return None
        if request_id in scan.ahead:
            return max(scan.ahead[request_id] - (start - scan.start), 1)
        return 0 if scan.complete and scan.began >= asked else None

    async def _read(self, tp: TopicPartition, start: int) -> Scan | None:
        async with self.lock:
            try:
                scan = await asyncio.wait_for(self._scan(tp, start), TAIL_READ_S)
            except Exception as error:
                if not errors.known(error):
                    raise
                return None
            finally:
                self.consumer.unsubscribe()  # no fetching in the background between reads
        if scan is not None:
            self.scans[tp] = scan
        return scan

    async def _scan(self, tp: TopicPartition, start: int) -> Scan | None:
        consumer = self.consumer
        consumer.assign([tp])
        scan = Scan(time.monotonic(), start, {}, False)
        consumer.seek(tp, start)
        sought_ms = time.time() * 1000
        read = 0
        while read <= TAIL_RECORDS_MAX:
            fetched = (await consumer.getmany(tp, timeout_ms=100)).get(tp, [])
            for message in fetched:
                read += 1
                request_id = _request_id(message.value)
                if request_id is not None:
                    scan.ahead.setdefault(request_id, read)
            # The log's end, as the broker told it after the seek: an older answer may
            # predate the request.
            fresh = (consumer.last_poll_timestamp(tp) or 0) > sought_ms
            end = consumer.highwater(tp) if fresh else None
            if end is not None and end < start:
                return None  # the allocator has not yet seen that the broker's log is new
            if not fetched and end is not None and await consumer.position(tp) >= end:
                scan.complete = True
                break
        return scan


TAILS = web.AppKey("tails", Tails)


def _request_id(value: bytes | None) -> str | None:
    try:
        return getattr(decode_command(value or b""), "request_id", None)
    except (ValueError, TypeError, KeyError):
        return None  # a log mark, or a command the allocator skips as unreadable
