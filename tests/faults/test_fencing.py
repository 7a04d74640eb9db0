"""Two allocators on one partition (a stale one after a takeover): the fencing holds."""

import asyncio

import pytest

from tests.support.client import claim, claims_under_way, grants_of, metric, session, settle
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


async def test_two_allocators_forced_onto_one_partition_never_double_grant(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    # The first wave cannot sell the coupon out, so the second reaches the log and the
    # stale allocator, still reading it, tries to commit.
    users, count = 1200, 700
    async with session() as http:
        coupon_id, first = await claims_under_way(http, stack, count, "early", users // 2, 10)
        (stale,) = stack.allocators
        stack.start_allocator(label="allocator-usurper")  # same partitions: a newer epoch
        second = await asyncio.gather(
            *(claim(http, stack, coupon_id, f"late{i}", wait_s=0) for i in range(users // 2))
        )
        outcomes = await settle(http, stack, [*(await first), *second])
    fenced = await metric(stale.url, "coupons_allocator_fenced_total")
    assert fenced >= 1, "the stale allocator never tried to commit: the test proved nothing"
    assert outcomes == {"granted": count, "sold_out": users - count}
    assert await grants_of(stack, coupon_id) == (count, count, count)
    with capsys.disabled():
        print(
            f"\nfencing: stale allocator refused {fenced:.0f} batches; {count} granted, 0 doubled"
        )
