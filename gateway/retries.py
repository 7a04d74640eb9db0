"""What the allocator decided about coupons that are over: the answers to retries.

A claim on a coupon its committed status says is over gets the edge's answer and goes no
further. Sent again with the same Idempotency-Key it must still get its first decision
(invariant 5), which may have been made before the coupon was over, through any gateway.
So a gateway keeps, for each coupon it answers at the edge, the decisions the allocator
made about it, and reads from PostgreSQL only those it does not hold yet.

Why what it holds is complete. The allocator numbers a coupon's decisions 1, 2, … as it
makes them (decisions.coupon_seq), and every status it commits counts them
(CouponStatus.decided). The edge answers from a status; holding decisions 1 to that count,
a gateway holds every decision made before the status was committed. And once a status
says a coupon is sold out (no unit can come back) or closed, no grant follows it, nor
does one before the start: what the allocator decides later is a refusal, made after the
status the edge answers from, as the edge's own answer is. A coupon past its expiry is
not proven over by its status (a claim sent before the expiry may still be granted), so
a retry on it still asks PostgreSQL for its own decision.

The cost: one query each time a coupon's count moves, none while it does not. Until what
a gateway holds is complete as of a sold-out or closed status, claims wait for that query
(one for all of them); after, it runs beside them, and a refusal made since comes back
as the edge's refusal until it is read. Each held decision is a grant or a reason, for
the coupons last answered at the edge, up to `COUPONS_HELD_MAX` of them.
"""

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from prometheus_client import Counter, Gauge

from schemas import readmodel
from schemas.messages import CouponStatus, Grant
from schemas.views import State

log = logging.getLogger(__name__)

COUPONS_HELD_MAX = 64
PROVEN_OVER: frozenset[State] = frozenset({"sold_out", "closed", "scheduled"})
FINAL: frozenset[State] = frozenset({"sold_out", "closed"})  # no grant ever follows

READS = Counter(
    "coupons_gateway_retry_reads_total",
    "Reads of decisions on coupons that are over (each serves every retry meanwhile)",
)
HELD = Gauge(
    "coupons_gateway_retry_decisions_held",
    "Decisions held to answer retries at the edge",
    multiprocess_mode="livesum",
)

# A held decision: the grant it made, or the reason it refused.
Earlier = Grant | str


@dataclass(slots=True)
class _Coupon:
    through: int = 0  # holds decisions 1..through
    answers: dict[str, Earlier] = field(default_factory=dict)  # by request id
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    final: bool = False  # complete as of a status that said sold out or closed
    catching_up: asyncio.Task[None] | None = None


class Retries:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.coupons: OrderedDict[str, _Coupon] = OrderedDict()

    async def earlier(self, status: CouponStatus, state: State, request_id: str) -> Earlier | None:
        """The decision `request_id` already has, as of `status`, whose `state` is one of
        `PROVEN_OVER`; None if it has none.

        Once what it holds is complete as of a status that said sold out or closed, the
        decisions made since can only be refusals made after the coupon was over; they
        are read beside the answers, not before them: while the allocator still works
        through a sold-out burst, its count moves with every batch, and claims waiting
        for each read held the edge to the database's pace."""
        held = self._held(status.coupon_id)
        if held.through >= status.decided:
            return held.answers.get(request_id)
        if held.final:
            if held.catching_up is None or held.catching_up.done():
                held.catching_up = asyncio.create_task(self._catch_up(status, held))
            return held.answers.get(request_id)
        async with held.lock:  # one read for every claim that waits on it
            if held.through < status.decided:
                await self._read(status.coupon_id, held)
        held.final = held.final or state in FINAL
        return held.answers.get(request_id)

    async def _catch_up(self, status: CouponStatus, held: _Coupon) -> None:
        try:
            async with held.lock:
                if held.through < status.decided:
                    await self._read(status.coupon_id, held)
        except Exception as error:  # noqa: BLE001 - the next status tries again
            log.warning("reading decisions of %s failed: %s", status.coupon_id, error)

    def _held(self, coupon_id: str) -> _Coupon:
        held = self.coupons.get(coupon_id)
        if held is None:
            held = self.coupons[coupon_id] = _Coupon()
            if len(self.coupons) > COUPONS_HELD_MAX:
                _, dropped = self.coupons.popitem(last=False)
                HELD.dec(len(dropped.answers))
        self.coupons.move_to_end(coupon_id)
        return held

    async def _read(self, coupon_id: str, held: _Coupon) -> None:
        READS.inc()
        rows = await self.pool.fetch(readmodel.DECISIONS_AFTER, coupon_id, held.through)
        before = len(held.answers)
        for row in rows:
            held.answers[str(row["request_id"])] = earlier_from_row(row)
            held.through = max(held.through, row["coupon_seq"])
        HELD.inc(len(held.answers) - before)


def earlier_from_row(row: Mapping[str, Any]) -> Earlier:
    """A decision as read with its grant's columns (`g_`-prefixed)."""
    if row["g_id"] is not None:
        return readmodel.grant_from_row(row, "g_")
    return str(row["reason"] or "rejected")
