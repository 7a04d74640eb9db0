"""The gateway's answers to retries on a coupon that is over (gateway/retries.py), with a
stand-in for the database: when a read holds answers up, and when it runs beside them."""

import asyncio
from typing import Any

from gateway.retries import Retries
from schemas.messages import CouponSpec, CouponStatus

COUPON = "c0ffee00-0000-4000-8000-000000000001"
SPEC = CouponSpec("T", "", "", 0, 10**13, 2)


class Decisions:
    """The decisions table for one coupon: refusals numbered 1..n; each read may be held."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.reads = 0
        self.gate = asyncio.Event()
        self.gate.set()

    def refuse(self, request_id: str, reason: str) -> int:
        seq = len(self.rows) + 1
        self.rows.append({"coupon_seq": seq, "request_id": request_id, "reason": reason,
                          "g_id": None})  # fmt: skip
        return seq

    async def fetch(self, _sql: str, coupon_id: str, after: int) -> list[dict[str, Any]]:
        assert coupon_id == COUPON
        self.reads += 1
        await self.gate.wait()
        return [row for row in self.rows if row["coupon_seq"] > after]


def sold_out(decided: int) -> CouponStatus:
    return CouponStatus(COUPON, SPEC, issued=2, decided=decided)


def scheduled(decided: int) -> CouponStatus:
    return CouponStatus(COUPON, SPEC, issued=0, decided=decided)


async def test_once_sold_out_a_newer_count_is_read_beside_the_answers_not_before() -> None:
    table = Decisions()
    retries = Retries(table)
    table.refuse("r1", "already_claimed")
    assert await retries.earlier(sold_out(1), "sold_out", "r1") == "already_claimed"
    assert table.reads == 1
    table.refuse("r2", "sold_out")  # decided after the coupon was over
    table.gate.clear()  # the database is slow now
    answer = await asyncio.wait_for(retries.earlier(sold_out(2), "sold_out", "r2"), 1)
    assert answer is None, "answered at once, as of the status it held complete"
    assert table.reads == 2, "and the newer decisions are being read beside"
    table.gate.set()
    catching_up = retries.coupons[COUPON].catching_up
    assert catching_up is not None
    await asyncio.wait_for(catching_up, 1)
    assert await retries.earlier(sold_out(2), "sold_out", "r2") == "sold_out"
    assert table.reads == 2


async def test_before_the_start_every_newer_count_is_read_before_answering() -> None:
    table = Decisions()
    retries = Retries(table)
    assert await retries.earlier(scheduled(0), "scheduled", "r1") is None
    table.refuse("r1", "not_started")
    # Not started proves no grant until the start only: the read is waited for.
    assert await retries.earlier(scheduled(1), "scheduled", "r1") == "not_started"
    assert table.reads == 1
