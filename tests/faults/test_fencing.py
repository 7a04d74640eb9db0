"""Two allocators on one partition (a stale one after a takeover): the fencing holds."""

import asyncio

import aiohttp
import pytest

from runtime.settings import COMMAND_PARTITIONS
from schemas.topics import partition_of
from tests.support.client import claim, claims_under_way, grants_of, metric, session, settle
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


@pytest.mark.allocators("all")  # static, as a StatefulSet pod: a person moved the partition
async def test_two_allocators_forced_onto_one_partition_never_double_grant(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    # The first wave cannot sell the coupon out, so the second reaches the log and the
    # stale allocator, still reading it, tries to commit.
    users, count = 1200, 700
    async with session() as http:
        coupon_id, first = await claims_under_way(http, stack, count, "early", users // 2, 10)
        (stale,) = stack.allocators
        usurper = stack.start_allocator("all", label="allocator-usurper")  # same partitions
        second = await asyncio.gather(
            *(claim(http, stack, coupon_id, f"late{i}", wait_s=0) for i in range(users // 2))
        )
        outcomes = await settle(http, stack, [*(await first), *second])
        held_by_stale = await epochs(http, stale.url)
        held_by_usurper = await epochs(http, usurper.url)
    fenced = await metric(stale.url, "coupons_allocator_fenced_total")
    # Reading ownership as an SRE would: the usurper holds every partition at a newer
    # epoch; the stale one has let go of the coupon's, where it was fenced.
    coupon_partition = partition_of(coupon_id, COMMAND_PARTITIONS)
    assert sorted(held_by_usurper) == list(range(COMMAND_PARTITIONS))
    assert coupon_partition not in held_by_stale
    assert all(held_by_usurper[p] > epoch for p, epoch in held_by_stale.items())
    assert fenced >= 1, "the stale allocator never tried to commit: the test proved nothing"
    assert outcomes == {"granted": count, "sold_out": users - count}
    assert await grants_of(stack, coupon_id) == (count, count, count)
    with capsys.disabled():
        print(
            f"\nfencing: stale allocator refused {fenced:.0f} batches; {count} granted, 0 doubled"
        )


async def epochs(http: aiohttp.ClientSession, allocator_url: str) -> dict[int, int]:
    """The partitions an allocator says it holds, with the epoch it holds each at."""
    async with http.get(f"{allocator_url}/partitions") as response:
        body = await response.json()
    return {p["partition"]: p["epoch"] for p in body["partitions"] if p["epoch"] is not None}
