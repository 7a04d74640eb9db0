"""The allocator holds its working set, not its history: idle coupons and people are
dropped from memory and read back from PostgreSQL when a command names them again, and
decisions come out as if they had never left."""

import asyncio
import time
import urllib.request

import aiohttp
import pytest

from tests.support.client import POLL_INTERVAL_S, claim, create_coupon, step
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


def forgotten(stack: Stack) -> float:
    url = f"{stack.allocators[-1].url}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("coupons_allocator_forgotten_total "):
                return float(line.split()[1])
    return 0.0


async def forgotten_beyond(stack: Stack, before: float, more: int, timeout_s: float = 15) -> float:
    """Wait until the allocator has dropped `more` coupons and people from memory."""
    deadline = time.monotonic() + timeout_s
    while (now := await asyncio.to_thread(forgotten, stack)) < before + more:
        assert time.monotonic() < deadline, "the allocator forgot nothing"
        await asyncio.sleep(POLL_INTERVAL_S)
    return now


@pytest.mark.stack_env(ALLOCATOR_FORGET_IDLE_S="0")  # forget whatever is settled, always
async def test_decisions_read_back_after_forgetting_are_the_same(stack: Stack) -> None:
    async with aiohttp.ClientSession() as http:
        first = (await create_coupon(http, stack, 3))["id"]
        second = (await create_coupon(http, stack, 3))["id"]
        mark = await forgotten_beyond(stack, 0, 2)  # both coupons
        won = await claim(http, stack, first, "ann")
        assert won.status == 201, won.body
        mark = await forgotten_beyond(stack, mark, 2)  # her coupon and her day are gone
        again = await claim(http, stack, first, "ann")  # the coupon read back: hers counted
        other = await claim(http, stack, second, "ann")  # her day read back: taken
        mark = await forgotten_beyond(stack, mark, 3)  # both coupons and her day again
        grant_id = won.body["grant"]["id"]
        redeemed = await step(http, stack, grant_id, "redeem", "ann")
        mark = await forgotten_beyond(stack, mark, 1)
        twice = await step(http, stack, grant_id, "redeem", "ann")  # the grant read back
        bob = await claim(http, stack, first, "bob")
    assert (again.status, again.body.get("reason")) == (409, "already_claimed")
    assert (other.status, other.body.get("reason")) == (409, "daily_limit")
    assert redeemed.status == 200, redeemed.body
    assert (twice.status, twice.body.get("reason")) == (409, "already_redeemed")
    assert bob.status == 201 and bob.body["grant"]["code"] != won.body["grant"]["code"]
    print(f"\nforgetting after every batch: {mark:.0f} coupons and people dropped and read back")
