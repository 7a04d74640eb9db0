"""Bounds on the real stack: rate limits per person and per address, requests in flight,
body size. Past each bound: an immediate, clear answer, and nothing changed."""

import asyncio
import time

import aiohttp
import pytest

from tests.support.client import POLL_INTERVAL_S, claim, create_coupon, get, post, session
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


@pytest.mark.stack_env(RATE_LIMIT_USER_PER_S="1", RATE_LIMIT_USER_BURST="3")
async def test_a_person_past_their_rate_gets_429_and_others_do_not(stack: Stack) -> None:
    url = f"{stack.gateway_url}/v1/users/me/grants"
    async with aiohttp.ClientSession() as session:
        alice = [await get(session, url, stack.token("alice")) for _ in range(5)]
        bob = await get(session, url, stack.token("bob"))
    assert [a.status for a in alice] == [200, 200, 200, 429, 429]
    limited = alice[3]
    assert limited.headers["Content-Type"] == "application/problem+json"
    assert int(limited.headers["Retry-After"]) >= 1
    assert bob.status == 200


async def test_with_the_defaults_a_burst_from_one_address_is_not_throttled(stack: Stack) -> None:
    # Behind a load balancer every person can arrive from one address: the per-address
    # limit is off unless configured, and the gateway says what is in force as it starts.
    people = 2_000
    async with session(connections_max=256) as http:
        coupon = await create_coupon(http, stack, 25)
        answers = await asyncio.gather(
            *(claim(http, stack, coupon["id"], f"one-address-{i}", wait_s=0) for i in range(people))
        )
    assert not [a for a in answers if a.status == 429]
    said = (stack.log_dir / "gateway.log").read_text()
    assert "per client address off (RATE_LIMIT_ADDRESS_PER_S)" in said
    assert "throttles them all together" not in said


@pytest.mark.stack_env(RATE_LIMIT_ADDRESS_PER_S="50")
async def test_a_per_address_limit_without_trusted_proxies_is_warned_of(stack: Stack) -> None:
    said = (stack.log_dir / "gateway.log").read_text()
    assert "per client address 50/s, bursts of 1000" in said
    assert "COUPONS_TRUSTED_PROXIES is empty" in said


@pytest.mark.stack_env(
    RATE_LIMIT_ADDRESS_PER_S="1",
    RATE_LIMIT_ADDRESS_BURST="2",
    COUPONS_TRUSTED_PROXIES="127.0.0.1/32",
)
async def test_behind_a_trusted_proxy_each_client_address_has_its_own_rate(stack: Stack) -> None:
    url = f"{stack.gateway_url}/v1/users/me/grants"

    async def from_address(session: aiohttp.ClientSession, address: str) -> int:
        headers = {"Authorization": f"Bearer {stack.token('carol')}", "X-Forwarded-For": address}
        async with session.get(url, headers=headers) as response:
            return response.status

    async with aiohttp.ClientSession() as session:
        first = [await from_address(session, "203.0.113.5") for _ in range(3)]
        other = await from_address(session, "203.0.113.6")
    assert (first, other) == ([200, 200, 429], 200)


@pytest.mark.stack_env(COUPONS_IN_FLIGHT_MAX="2")
@pytest.mark.alone  # "at once": within a second
async def test_past_the_in_flight_bound_the_gateway_sheds_at_once(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        coupon = await create_coupon(session, stack, 5)
        for allocator in stack.allocators:
            allocator.process.stop()  # nobody decides now: each claim waits its whole wait
        waiting = [
            asyncio.create_task(claim(session, stack, coupon["id"], f"w{i}", wait_s=5))
            for i in range(2)
        ]
        assert await in_flight_reaches(session, stack, 2)
        shed = await claim(session, stack, coupon["id"], "third", wait_s=5)
        answers = await asyncio.gather(*waiting)
    assert shed.status == 503 and shed.headers["Retry-After"] == "1", shed.body
    assert shed.body["type"].endswith("/overloaded") and shed.seconds < 1
    assert [a.status for a in answers] == [202, 202]  # the two in flight still got answers


async def in_flight_reaches(session: aiohttp.ClientSession, stack: Stack, count: int) -> bool:
    deadline = time.monotonic() + 10
    while True:
        if await in_flight(session, stack) >= count:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(POLL_INTERVAL_S)


async def in_flight(session: aiohttp.ClientSession, stack: Stack) -> float:
    async with session.get(f"{stack.gateway_url}/metrics") as response:
        text = await response.text()
    lines = [x for x in text.splitlines() if x.startswith("coupons_http_in_flight ")]
    return float(lines[0].split()[1]) if lines else 0.0


async def test_a_body_past_the_size_bound_is_refused_and_changes_nothing(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        coupon = await create_coupon(session, stack, 3)
        big = {"user_id": "x" * (100 * 1024)}
        answer = await post(
            session,
            f"{stack.gateway_url}/v1/coupons/{coupon['id']}/claims",
            stack.token("admin", True),
            big,
        )
    assert answer.status == 413, answer.body
    assert answer.headers["Content-Type"] == "application/problem+json"
    async with stack.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM grants") == 0
