"""`coupons replay` re-decides this stack's command log with the pure core and proves the
database from it; one corrupted decision is caught and named. When the log begins after the
database's history (the local stack started again on Tansu), it says so and proves what the
log holds."""

import uuid

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


async def test_replay_says_the_log_begins_after_the_database_and_proves_what_it_holds(
    stack: Stack,
) -> None:
    async with aiohttp.ClientSession() as session:
        model = await create_coupon(session, stack, 2)
        earlier = await made_in_an_earlier_log(stack, model["id"])
        on_earlier = await claim(session, stack, earlier, "ann")  # decided from PostgreSQL
        on_this = await claim(session, stack, model["id"], "bo")
    status, said = replay(stack)
    print(f"\n{said.strip()}")
    assert on_earlier.status == 201 and on_this.status == 201
    assert status == 0 and "compared 2 decisions: 2 match, 0 mismatch" in said, said
    assert said.startswith(
        "the log begins after the database's history: 1 decision in PostgreSQL came from an"
        " earlier log, and 1 in this log about coupons created in that one; only what this log"
        " alone decides is compared\n"
    ), said


async def made_in_an_earlier_log(stack: Stack, model: str) -> str:
    """What PostgreSQL keeps from a log that is gone, as `coupons dev` on Tansu leaves it when
    started again: a coupon like `model`, created in that log a day ago, at the position of
    `model`'s creation in this one (each log's positions start again at 0). Its id."""
    coupon, day_ago = str(uuid.uuid4()), "clock_timestamp() - interval '1 day'"
    async with stack.connection() as conn:
        async with conn.transaction():
            await conn.execute("CREATE TEMP TABLE earlier AS SELECT * FROM coupons WHERE id = $1",
                               model)  # fmt: skip
            await conn.execute("UPDATE earlier SET id = $1, created_at = now() - interval '1 day'",
                               coupon)  # fmt: skip
            await conn.execute("INSERT INTO coupons SELECT * FROM earlier")
            await conn.execute(
                "INSERT INTO decisions (request_id, coupon_id, user_id, outcome, decided_at,"
                " log_partition, log_offset, coupon_seq, committed_at)"
                f" SELECT gen_random_uuid(), $1, 'admin', 'created', {day_ago}, log_partition,"
                f" log_offset, coupon_seq, {day_ago} FROM decisions WHERE coupon_id = $2",
                coupon,
                model,
            )
    return coupon
