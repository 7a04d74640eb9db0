"""`coupons replay` re-decides this stack's command log with the pure core and proves the
database from it; one corrupted decision is caught and named."""

import aiohttp
import pytest

from tests.support.client import claim, create_coupon, replay, step
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


async def test_replay_proves_the_database_and_catches_a_corrupted_decision(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        first = await create_coupon(session, stack, 3)  # the daily rule on: days cross partitions
        second = await create_coupon(session, stack, 2)
        people = [f"p{i}" for i in range(8)]
        answers = [await claim(session, stack, first["id"], p, key=f"k-{p}") for p in people]
        again = await claim(session, stack, first["id"], "p0", key="k-p0")  # a retry: no effect
        later = [await claim(session, stack, second["id"], p) for p in people]
        granted = [a.body["grant"] for a in answers if a.status == 201]
        await step(session, stack, granted[0]["id"], "redeem", granted[0]["user_id"])
    assert [a.status for a in answers].count(201) == 3 and again.status == answers[0].status
    assert {a.body["reason"] for a in later if a.status == 409} == {"daily_limit", "sold_out"}

    clean, proved = replay(stack)
    stored = await stack.fetchval("SELECT count(*) FROM decisions")
    victim = await stack.fetchval(
        "SELECT request_id::text FROM decisions WHERE outcome = 'granted' ORDER BY log_offset"
        " LIMIT 1"
    )
    await stack.fetch(
        "UPDATE decisions SET outcome = 'rejected', reason = 'sold_out', grant_id = NULL"
        " WHERE request_id = $1",
        victim,
    )
    caught, report = replay(stack)
    later_only, narrowed = replay(stack, "--since", "2999-01-01T00:00:00Z")
    print(f"\n{proved.strip()}\n--- after corrupting {victim}:\n{report.strip()}")
    assert clean == 0 and ", 0 mismatch" in proved
    compared = int(proved.split("compared ")[1].split(" ")[0].replace(",", ""))
    assert compared == stored >= 2 + 8 + 1  # every stored decision (some claims end at the edge)
    assert caught == 1 and f"MISMATCH request {victim}" in report
    assert "the database has rejected sold_out" in report and ", 1 mismatch" in report
    assert later_only == 0 and "compared 0 decisions" in narrowed
