"""One coupon per person per day, across coupons on partitions owned by two allocators."""

import asyncio
from collections import Counter

import aiohttp
import pytest

from schemas.topics import partition_of
from tests.support.client import PARTITIONS, claim, create_coupon
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


@pytest.mark.allocators("0,1", "2,3")
async def test_one_grant_per_person_per_day_across_allocators(stack: Stack) -> None:
    people = 40
    async with aiohttp.ClientSession() as http:
        coupons = [await create_coupon(http, stack, 100) for _ in range(8)]
        free = await create_coupon(http, stack, 100, daily_limit=False)
        owners = {partition_of(c["id"], PARTITIONS) // 2 for c in coupons}
        assert owners == {0, 1}, "the coupons must be decided by both allocators"
        answers = await asyncio.gather(
            *(
                claim(http, stack, c["id"], f"person{p}")
                for p in range(people)
                for c in [*coupons, free]
            )
        )
    granted = Counter(a.body["grant"]["user_id"] for a in answers if a.status == 201)
    refused = Counter(a.body.get("reason") for a in answers if a.status == 409)
    # Each person: one daily coupon and the coupon without the daily rule.
    assert granted == {f"person{p}": 2 for p in range(people)}
    assert refused == {"daily_limit": people * (len(coupons) - 1)}
    async with stack.connection() as conn:
        per_day = await conn.fetchval(
            "SELECT max(n) FROM (SELECT count(*) AS n FROM grants g JOIN coupons c"
            " ON c.id = g.coupon_id WHERE c.daily_rule GROUP BY g.user_id, g.granted_at::date) s"
        )
    assert per_day == 1
