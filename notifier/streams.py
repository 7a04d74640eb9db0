"""GET /v1/users/me/events: a person's live stream (server-sent events).

It opens with the person's grants (`grants`), then carries every decision about them as it
leaves the allocator (`decision`) and every change to their grants as the read model
records it (notifier/grant_events.py). When a person's last stream here closes, their
held grants on coupons that ask for it (`release_on_disconnect`) are released, through
the log like any other step, so the unit passes to the next person in line at once.
"""

import logging
import time
import uuid
from collections import defaultdict
from typing import Any

import asyncpg
from aiohttp import web
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter, Gauge

from notifier import sse
from notifier.grant_events import GrantFeed
from runtime import errors
from runtime.auth import Verifier, caller
from runtime.http import Problem
from runtime.produce import send_all
from schemas import readmodel
from schemas.messages import GrantAction, encode
from schemas.topics import Topics, coupon_key
from schemas.views import grant_view

log = logging.getLogger(__name__)

STREAMS_PER_PERSON_MAX = 8
SNAPSHOT_GRANTS_MAX = 100
OPEN = Gauge("coupons_notifier_streams_open", "Live streams open")
RELEASED = Counter(
    "coupons_notifier_disconnect_releases_total", "Holds released because streams closed"
)

HELD_ON_DISCONNECT = """
SELECT g.id, g.coupon_id FROM grants g JOIN coupons c ON c.id = g.coupon_id
WHERE g.user_id = $1 AND g.state = 'held' AND c.release_on_disconnect
"""


class Streams:
    def __init__(
        self, pool: asyncpg.Pool, producer: AIOKafkaProducer, topics: Topics, verifier: Verifier
    ) -> None:
        self.pool = pool
        self.producer = producer
        self.topics = topics
        self.verifier = verifier
        self.open: defaultdict[str, set[sse.Events]] = defaultdict(set)
        self.closing = False  # when this notifier stops, its people did not leave
        self.feed = GrantFeed(pool, self.send, self.watching, lambda: bool(self.open))

    def watching(self, user_id: str) -> bool:
        return user_id in self.open

    def send(self, user_id: str, framed: bytes) -> None:
        for queue in list(self.open.get(user_id, ())):
            sse.offer(queue, framed)

    def publish(self, decision: dict[str, Any], payload: bytes) -> None:
        """Hand a decision to the streams of the person it is about."""
        self.send(decision.get("user_id", ""), sse.event("decision", payload))

    async def stream(self, request: web.Request) -> web.StreamResponse:
        who = caller(request, self.verifier)
        if len(self.open[who.user_id]) >= STREAMS_PER_PERSON_MAX:
            raise Problem(
                "too-many-streams",
                f"at most {STREAMS_PER_PERSON_MAX} streams per person; close one first",
                headers={"Retry-After": "5"},
            )
        queue = sse.new_queue()
        self.open[who.user_id].add(queue)
        OPEN.inc()
        try:
            response = await sse.open_stream(request)
            rows = await self.pool.fetch(readmodel.GRANTS_OF_USER, who.user_id, SNAPSHOT_GRANTS_MAX)
            grants = [readmodel.grant_from_row(r) for r in rows]
            self.feed.watch(grants)
            await response.write(sse.event("grants", {"items": [grant_view(g) for g in grants]}))
            await sse.pump(request, response, queue)
        finally:
            self.open[who.user_id].discard(queue)
            OPEN.dec()
            if not self.open[who.user_id]:
                del self.open[who.user_id]
                if not self.closing:
                    await self._release(who.user_id)
        return response

    async def _release(self, user_id: str) -> None:
        """The person is gone: release their holds on coupons that ask for it."""
        try:
            rows = await self.pool.fetch(HELD_ON_DISCONNECT, user_id)
            now_ms = int(time.time() * 1000)
            for row in rows:
                coupon_id, grant_id = str(row["coupon_id"]), str(row["id"])
                command = GrantAction(
                    str(uuid.uuid4()), coupon_id, user_id, grant_id, "disconnect", now_ms, ""
                )
                await send_all(
                    self.producer, [(self.topics.commands, coupon_key(coupon_id), encode(command))]
                )
                RELEASED.inc()
        except Exception as error:
            if not errors.known(error):
                raise
            # The hold then lapses at its deadline as usual: nothing is lost, only later.
            log.warning("could not release the holds of a closed stream: %s", error)


STREAMS = web.AppKey("streams", Streams)


async def my_events(request: web.Request) -> web.StreamResponse:
    return await request.app[STREAMS].stream(request)
