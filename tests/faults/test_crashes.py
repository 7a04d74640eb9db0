"""Parts SIGKILLed under a claim load: nothing lost, nothing doubled, everyone answered."""

import asyncio
import time

import pytest

from deploy.stack import start_part
from tests.support.client import (
    create_coupon,
    grants_of,
    pending_answers_reach,
    wait_for_grants,
)
from tests.support.client import session as client_session
from tests.support.load import (
    check,
    claim_until_answered,
    report,
    stored_grants,
    sustained_load,
)
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

USERS, COUNT = 900, 300


async def test_the_allocator_killed_again_and_again_mid_load(stack: Stack) -> None:
    started = time.monotonic()
    users, count = 1500, 1200  # a sustained load of 300 claims a second, for five seconds
    async with client_session(128, 30) as session:
        coupon = (await create_coupon(session, stack, count))["id"]
        load = sustained_load(session, stack, coupon, "u", users, per_s=300)
        kills = [0]
        for round_ in range(1, 4):
            # Each restarted allocator decides some claims before it is killed too.
            await wait_for_grants(stack, coupon, kills[-1] + count // 6, timeout_s=60)
            stack.allocators[-1].process.kill()  # SIGKILL, wherever its batch is
            kills.append((await grants_of(stack, coupon))[0])
            stack.start_allocator(label=f"allocator-restart{round_}")
        outcomes = await load
    figures = check(outcomes, await stored_grants(stack, coupon), count)
    assert kills[-1] < count, "the last kill came after the coupon sold out: nothing tested"
    report("allocator SIGKILL x3", f"killed at {kills[1:]} grants", figures, started)


async def test_a_gateway_killed_with_requests_in_flight(stack: Stack) -> None:
    started = time.monotonic()
    other = stack.start_another_gateway("gateway-2")
    urls = [stack.gateway_url, other.url]
    async with client_session(128, 30) as session:
        coupon = (await create_coupon(session, stack, COUNT))["id"]
        load = asyncio.gather(*(
            # Half start on each gateway; a broken connection retries on the other.
            claim_until_answered(session, stack, urls[i % 2:] + urls[:i % 2], coupon, f"g{i}")
            for i in range(USERS)
        ))  # fmt: skip
        await wait_for_grants(stack, coupon, COUNT // 5, timeout_s=60)
        assert stack.gateway
        stack.gateway.process.kill()
        killed_at = (await grants_of(stack, coupon))[0]
        outcomes = await load
    figures = check(outcomes, await stored_grants(stack, coupon), COUNT)
    assert figures["retried after a broken connection"] > 0, "no request was in flight"
    report("gateway SIGKILL", f"killed one of two at {killed_at} grants", figures, started)


async def test_the_notifier_killed_and_restarted(stack: Stack) -> None:
    started = time.monotonic()
    assert stack.notifier
    port = int(stack.notifier.url.rsplit(":", 1)[1])
    async with client_session(128, 30) as session:
        coupon = (await create_coupon(session, stack, COUNT))["id"]
        load = asyncio.gather(*(
            claim_until_answered(session, stack, [stack.gateway_url], coupon, f"n{i}", 1)
            for i in range(USERS)
        ))  # fmt: skip
        await wait_for_grants(stack, coupon, COUNT // 5, timeout_s=60)
        stack.notifier.process.kill()  # replies stop: waiting clients fall back to tickets
        killed_at = (await grants_of(stack, coupon))[0]
        # Down until waiting clients have given up on a reply and hold a ticket instead.
        assert await pending_answers_reach(session, stack, 50)
        stack.notifier = start_part("notifier", stack.env, port, stack.log_dir, "notifier-2")
        outcomes = await load
    figures = check(outcomes, await stored_grants(stack, coupon), COUNT)
    assert figures["answered by ticket"] > 0, "nobody had to fall back to a ticket"
    report("notifier SIGKILL", f"killed at {killed_at} grants, restarted", figures, started)
