"""The noon burst, and the allocator dying in the middle of one. (A stale allocator is
in tests/faults.)"""

import asyncio
import time
from collections import Counter

import pytest

from runtime.figures import ms
from tests.support.client import (
    claim,
    claims_under_way,
    create_coupon,
    decisions_of,
    grants_of,
    session,
    settle,
)
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


async def test_a_burst_of_2000_people_gets_exactly_25_grants(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    users = 2000
    async with session() as http:
        coupon = await create_coupon(http, stack, 25)
        started = time.perf_counter()
        answers = await asyncio.gather(
            *(claim(http, stack, coupon["id"], f"user{i}") for i in range(users))
        )
        seconds = time.perf_counter() - started
    granted = [a for a in answers if a.status == 201]
    reasons = Counter(a.body.get("reason") for a in answers if a.status == 409)
    assert len(granted) == 25
    assert len({a.body["grant"]["user_id"] for a in granted}) == 25
    assert len({a.body["grant"]["code"] for a in granted}) == 25
    assert reasons == {"sold_out": users - 25}
    assert await grants_of(stack, coupon["id"]) == (25, 25, 25)
    latencies = sorted(a.seconds for a in answers)
    with capsys.disabled():
        print(
            f"\nburst: {users} requests, {len(granted)} grants, {reasons['sold_out']} sold_out,"
            f" {seconds:.2f} s ({users / seconds:.0f}/s),"
            f" p50 {ms(latencies, 0.5)} ms, p99 {ms(latencies, 0.99)} ms,"
            f" max {latencies[-1] * 1e3:.1f} ms, granted p50"
            f" {ms(sorted(a.seconds for a in granted), 0.5)} ms"
        )


async def test_an_allocator_killed_mid_burst_loses_and_duplicates_nothing(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    users, count = 2000, 600
    async with session() as http:
        coupon_id, burst = await claims_under_way(http, stack, count, "user", users, 20)
        (victim,) = stack.allocators
        victim.process.kill()  # SIGKILL: no chance to finish a batch or say goodbye
        killed_at = (await grants_of(stack, coupon_id))[0]
        decided_at_kill = await decisions_of(stack, coupon_id)
        stack.start_allocator(label="allocator-restarted")
        answers = await burst
        outcomes = await settle(http, stack, answers)
    assert outcomes == {"granted": count, "sold_out": users - count}
    assert await grants_of(stack, coupon_id) == (count, count, count)
    decided = await decisions_of(stack, coupon_id)
    assert decided_at_kill < decided, "the kill landed after the last decision: nothing tested"
    assert await stack.fetchval("SELECT count(*) FROM claim_line") == 0
    edge = users - decided  # answered sold_out by the gateway without the log
    with capsys.disabled():
        print(
            f"\nkill: {users} requests, killed at {killed_at} grants and {decided_at_kill}"
            f" decisions, {count} granted,"
            f" {decided} decided by the allocator, {edge} answered at the edge, lost 0, doubled 0"
        )
