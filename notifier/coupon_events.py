"""GET /v1/events?coupon=…: a coupon's live stream (server-sent events), for anyone.

Events: `availability` (the coupon as GET /v1/coupons/{id} shows it: state, issued,
remaining, held), `sold_out` (once, when no unit can come back), `line` (claims waiting
for a unit that may come back) and `watchers` (streams open on this coupon here). A stream
opens with the current `availability`, `line` and `watchers`.

A hot coupon's status changes with every allocator batch; its watchers get at most one
`availability` per `FLUSH_S` (the latest), so ten thousand watchers of a coupon cost ten
thousand writes per flush, not per batch. The line is counted in PostgreSQL once per
`LINE_POLL_S` for the coupons someone watches.
"""

import asyncio
import logging
import time
import uuid
from collections import defaultdict
from typing import Any

import asyncpg
from aiohttp import web
from prometheus_client import Gauge

from notifier import sse
from runtime import errors
from runtime.http import Problem
from runtime.statuses import Statuses
from schemas import readmodel
from schemas.messages import CouponStatus
from schemas.views import coupon_view, state_at

log = logging.getLogger(__name__)

FLUSH_S = 0.25
LINE_POLL_S = 1.0
WATCHERS_MAX = 50_000  # streams open on coupons in one notifier
WATCHING = Gauge("coupons_notifier_coupon_streams_open", "Coupon streams open")

LINE_LENGTHS = """
SELECT coupon_id, count(*) AS line FROM claim_line
WHERE coupon_id = ANY($1::uuid[]) GROUP BY coupon_id
"""


class CouponWatch:
    def __init__(self, pool: asyncpg.Pool, statuses: Statuses) -> None:
        self.pool = pool
        self.statuses = statuses
        self.watchers: defaultdict[str, set[sse.Events]] = defaultdict(set)
        self.latest: dict[str, CouponStatus] = {}  # watched coupons, in log order
        self.sent: dict[str, dict[str, Any]] = {}  # coupon → last event data of each kind
        self.dirty: set[str] = set()
        statuses.on_status = self.learn

    def learn(self, status: CouponStatus) -> None:
        if status.coupon_id in self.watchers:
            self.latest[status.coupon_id] = status
            self.dirty.add(status.coupon_id)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        coupon_id = _coupon_param(request)
        row = await self.pool.fetchrow(readmodel.COUPON_BY_ID, coupon_id)
        if row is None:
            raise Problem("unknown-coupon", f"no coupon {coupon_id}")
        if sum(len(q) for q in self.watchers.values()) >= WATCHERS_MAX:
            raise Problem(
                "overloaded",
                "too many coupon streams open here; try later",
                headers={"Retry-After": "5"},
            )
        queue = sse.new_queue()
        first = coupon_id not in self.watchers
        if first:
            self.latest[coupon_id] = self.statuses.get(coupon_id) or readmodel.status_from_row(row)
            self.sent[coupon_id] = {}
        self.watchers[coupon_id].add(queue)
        WATCHING.inc()
        try:
            if first:
                await self._count_lines([coupon_id])  # queued for this stream: the only one
            elif "line" in self.sent[coupon_id]:
                sse.offer(queue, sse.event("line", self.sent[coupon_id]["line"]))
            self._refresh(coupon_id, int(time.time() * 1000), newcomer=queue)
            response = await sse.open_stream(request)
            await sse.pump(request, response, queue)
        finally:
            self._leave(coupon_id, queue)
        return response

    def _leave(self, coupon_id: str, queue: sse.Events) -> None:
        WATCHING.dec()
        self.watchers[coupon_id].discard(queue)
        if self.watchers[coupon_id]:
            self.dirty.add(coupon_id)  # the others see one watcher fewer
            return
        del self.watchers[coupon_id]
        self.latest.pop(coupon_id, None)
        self.sent.pop(coupon_id, None)
        self.dirty.discard(coupon_id)

    async def run(self, stop: asyncio.Event) -> None:
        next_count = 0.0
        while not stop.is_set():
            await asyncio.sleep(FLUSH_S)
            if time.monotonic() >= next_count and self.watchers:
                next_count = time.monotonic() + LINE_POLL_S
                try:
                    await self._count_lines(list(self.watchers))
                except Exception as error:
                    if not errors.known(error):
                        raise
                    log.warning("could not count the lines: %s", error)
            self.flush(int(time.time() * 1000))

    def flush(self, now_ms: int) -> None:
        """Send what changed to every watcher: the clock alone can change a state."""
        for coupon_id, sent in self.sent.items():
            shown = sent.get("availability")
            status = self.latest[coupon_id]
            if coupon_id in self.dirty or not shown or shown["state"] != state_at(status, now_ms):
                self._refresh(coupon_id, now_ms)
        self.dirty.clear()

    def _refresh(self, coupon_id: str, now_ms: int, newcomer: sse.Events | None = None) -> None:
        """Tell every watcher what changed; a newcomer also gets what did not."""
        sent = self.sent[coupon_id]
        current = {
            "availability": coupon_view(self.latest[coupon_id], now_ms),
            "watchers": {"coupon_id": coupon_id, "count": len(self.watchers[coupon_id])},
        }
        if current["availability"]["state"] == "sold_out" or "sold_out" in sent:
            current["sold_out"] = {"coupon_id": coupon_id}  # told once: it is final
        for name, data in current.items():
            if sent.get(name) != data:
                self._tell(coupon_id, name, data)
            elif newcomer is not None:
                sse.offer(newcomer, sse.event(name, data))

    def _tell(self, coupon_id: str, name: str, data: dict[str, Any]) -> None:
        self.sent[coupon_id][name] = data
        framed = sse.event(name, data)
        for queue in list(self.watchers.get(coupon_id, ())):
            sse.offer(queue, framed)

    async def _count_lines(self, coupon_ids: list[str]) -> None:
        rows = await self.pool.fetch(LINE_LENGTHS, coupon_ids)
        lengths = {str(r["coupon_id"]): r["line"] for r in rows}
        for coupon_id in coupon_ids:
            if coupon_id not in self.sent:
                continue  # the last watcher left meanwhile
            data = {"coupon_id": coupon_id, "length": lengths.get(coupon_id, 0)}
            if self.sent[coupon_id].get("line") != data:
                self._tell(coupon_id, "line", data)


def _coupon_param(request: web.Request) -> str:
    raw = request.query.get("coupon", "")
    try:
        return str(uuid.UUID(raw))
    except ValueError as error:
        raise Problem("invalid-request", "coupon must be a coupon id (a UUID)") from error


WATCH = web.AppKey("coupon_watch", CouponWatch)


async def coupon_events(request: web.Request) -> web.StreamResponse:
    return await request.app[WATCH].stream(request)
