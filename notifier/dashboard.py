"""GET /dashboard: a live page for the people who run the service, and the once-a-second
`snapshot` event stream it draws from (GET /dashboard/events).

A snapshot: the most recent coupons with their remaining counts, claims decided per second
(every decision passes through this notifier's forwarder), decision latency (gateway
receipt to the decision leaving the notifier, p50 and p95 over the last `WINDOW_S`), and
and per partition of the command log: the allocator that owns it, at which epoch, when it
last wrote, and its lag (records in the command log not decided yet).
One snapshot is computed per second for all viewers, so viewers cost a write each, not a
query each. Like /metrics, it is open: serve it on the operators' network only.
"""

import asyncio
import importlib.resources
import logging
import time
from collections import deque
from typing import Any

import asyncpg
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from notifier import sse
from runtime import errors
from runtime.figures import ms
from runtime.http import Problem
from schemas import readmodel
from schemas.topics import Topics
from schemas.views import coupon_view

log = logging.getLogger(__name__)

SNAPSHOT_EVERY_S = 1.0
WINDOW_S = 10.0  # rates and latencies are over this much of the recent past
SAMPLES_MAX = 50_000  # latencies kept for the window, at most
COUPONS_SHOWN = 12
VIEWERS_MAX = 100

POSITIONS = """
SELECT partition, next_offset - log_base AS position, owner, epoch, updated_at
FROM allocator_partitions WHERE topic = $1 ORDER BY partition
"""


class Dashboard:
    def __init__(self, pool: asyncpg.Pool, offsets: AIOKafkaConsumer, topics: Topics) -> None:
        self.pool = pool
        self.offsets = offsets
        self.topics = topics
        self.decided: deque[tuple[float, float]] = deque(maxlen=SAMPLES_MAX)  # (when, latency)
        self.viewers: set[sse.Events] = set()
        self.latest: dict[str, Any] | None = None

    def observe(self, decision: dict[str, Any], _payload: bytes) -> None:
        """Every decision the forwarder passes on (requests only: they have a reply topic)."""
        if decision.get("reply_to"):
            now = time.time()
            self.decided.append((now, max(0.0, now - decision.get("at_ms", 0) / 1000)))

    def rates(self, now: float) -> dict[str, Any]:
        while self.decided and self.decided[0][0] < now - WINDOW_S:
            self.decided.popleft()
        latencies = sorted(latency for _, latency in self.decided)
        return {
            "decisions_per_s": round(len(latencies) / WINDOW_S, 1),
            "latency_p50_ms": ms(latencies, 0.50),
            "latency_p95_ms": ms(latencies, 0.95),
        }

    async def snapshot(self) -> dict[str, Any]:
        now_ms = int(time.time() * 1000)
        rows = await self.pool.fetch(readmodel.RECENT_COUPONS, COUPONS_SHOWN)
        coupons = [coupon_view(readmodel.status_from_row(r), now_ms) for r in rows]
        return {
            "at": now_ms,
            "coupons": coupons,
            **self.rates(now_ms / 1000),
            "lag": await self._lag(),
        }

    async def _lag(self) -> list[dict[str, Any]]:
        """Per partition: its owner and epoch, when it last wrote, and the records in the
        command log past its position."""
        rows = await self.pool.fetch(POSITIONS, self.topics.commands)
        tps = [TopicPartition(self.topics.commands, r["partition"]) for r in rows]
        try:
            ends = await self.offsets.end_offsets(tps) if tps else {}
        except KafkaError as error:
            log.warning("dashboard: no end offsets (%s)", error)
            ends = {}
        return [
            {
                "partition": tp.partition,
                "records": max(0, ends[tp] - r["position"]) if tp in ends else None,
                "owner": r["owner"],
                "epoch": r["epoch"],
                "written_at": readmodel.dt_to_ms(r["updated_at"]),
            }
            for tp, r in zip(tps, rows, strict=True)
        ]

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(SNAPSHOT_EVERY_S)
            if not self.viewers:
                continue
            try:
                self.latest = await self.snapshot()
            except Exception as error:
                if not errors.known(error):
                    raise
                log.warning("dashboard: %s", error)
                continue
            framed = sse.event("snapshot", self.latest)
            for queue in list(self.viewers):
                sse.offer(queue, framed)

    async def events(self, request: web.Request) -> web.StreamResponse:
        if len(self.viewers) >= VIEWERS_MAX:
            raise Problem(
                "overloaded",
                f"at most {VIEWERS_MAX} dashboards at once",
                headers={"Retry-After": "10"},
            )
        queue = sse.new_queue()
        self.viewers.add(queue)
        try:
            response = await sse.open_stream(request)
            first = self.latest or await self.snapshot()
            await response.write(sse.event("snapshot", first))
            await sse.pump(request, response, queue)
        finally:
            self.viewers.discard(queue)
        return response


PAGE = importlib.resources.files("notifier").joinpath("dashboard.html").read_bytes()
DASHBOARD = web.AppKey("dashboard", Dashboard)


async def page(_: web.Request) -> web.Response:
    return web.Response(body=PAGE, content_type="text/html", charset="utf-8")


async def events(request: web.Request) -> web.StreamResponse:
    return await request.app[DASHBOARD].events(request)
