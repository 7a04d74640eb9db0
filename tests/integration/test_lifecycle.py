"""A grant's life through the HTTP API on the real stack: holds and the waiting line,
redemption as a state machine, and who may touch a grant."""

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from schemas.readmodel import dt_to_ms
from tests.support.client import (
    POLL_INTERVAL_S,
    claim,
    create_coupon,
    get,
    holders,
    poll_ticket,
    read_event,
    read_until,
    step,
)
from tests.support.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.shares_stack]


def ms(rfc3339: str) -> int:
    return dt_to_ms(datetime.fromisoformat(rfc3339))


@pytest.mark.alone  # each hold passed on within a second of its deadline
async def test_holds_lapse_and_pass_to_the_line_in_arrival_order(stack: Stack) -> None:
    # Count 2, hold 2 s, five people; the first two hold and never confirm.
    async with aiohttp.ClientSession() as session:
        coupon = await create_coupon(session, stack, 2, daily_limit=False, hold_seconds=2)
        first = [await claim(session, stack, coupon["id"], f"p{i}") for i in range(2)]
        waiting = [
            await claim(session, stack, coupon["id"], f"p{i}", wait_s=0.3) for i in (2, 3, 4)
        ]
        assert [a.status for a in first] == [201, 201], [a.body for a in first]
        assert {a.body["grant"]["state"] for a in first} == {"held"}
        assert [a.status for a in waiting] == [202, 202, 202]
        assert [a.body["position"] for a in waiting] == [1, 2, 3]
        third = await poll_ticket(session, waiting[0].headers["Location"], timeout_s=15)
        fourth = await poll_ticket(session, waiting[1].headers["Location"], timeout_s=15)
        fifth = await get(session, waiting[2].headers["Location"])
        late = await step(session, stack, first[0].body["grant"]["id"], "confirm", "p0")
    assert (third["status"], third["grant"]["user_id"], third["grant"]["state"]) == (
        "granted",
        "p2",
        "held",
    )
    assert (fourth["status"], fourth["grant"]["user_id"]) == ("granted", "p3")
    assert (fifth.body["status"], fifth.body["position"]) == ("pending", 1)
    assert (late.status, late.body["reason"]) == (409, "hold_expired")
    deadlines = [ms(a.body["grant"]["expires_at"]) for a in first]
    lateness = [
        ms(t["grant"]["granted_at"]) - d for t, d in zip((third, fourth), deadlines, strict=True)
    ]
    print(f"\nholds: passed on {lateness[0]} ms and {lateness[1]} ms after their deadlines")
    assert all(0 <= late_ms <= 1_000 for late_ms in lateness)
    assert await holders(stack, coupon["id"]) == [
        ("p0", "released"),
        ("p1", "released"),
        ("p2", "held"),
        ("p3", "held"),
    ]


async def test_cancelling_a_hold_passes_it_on_at_once(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        coupon = await create_coupon(session, stack, 1, hold_seconds=600)
        other = await create_coupon(session, stack, 1)
        alice = await claim(session, stack, coupon["id"], "alice")
        bob = await claim(session, stack, coupon["id"], "bob", wait_s=0.3)
        assert (alice.status, bob.status) == (201, 202)
        cancelled = await step(session, stack, alice.body["grant"]["id"], "cancel", "alice")
        started = time.perf_counter()
        passed = await poll_ticket(session, bob.headers["Location"], timeout_s=10)
        waited = time.perf_counter() - started
        again = await claim(session, stack, other["id"], "alice")
    assert (cancelled.status, cancelled.body["state"]) == (200, "released")
    assert (passed["status"], passed["grant"]["user_id"]) == ("granted", "bob")
    print(f"\ncancel: the next person had the unit {waited * 1000:.0f} ms later")
    assert again.status == 201, again.body  # her day came back with the hold


async def test_fifty_concurrent_redeems_of_one_grant_one_wins(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        coupon = await create_coupon(session, stack, 1, daily_limit=False)
        granted = await claim(session, stack, coupon["id"], "alice")
        grant_id = granted.body["grant"]["id"]
        answers = await asyncio.gather(
            *(step(session, stack, grant_id, "redeem", "alice") for _ in range(50))
        )
    statuses = Counter(a.status for a in answers)
    reasons = Counter(a.body.get("reason") for a in answers if a.status == 409)
    print(f"\n50 concurrent redeems: {dict(statuses)}, refusals {dict(reasons)}")
    assert statuses == {200: 1, 409: 49}
    assert reasons == {"already_redeemed": 49}
    async with stack.connection() as conn:
        row = await conn.fetchrow("SELECT state, redemptions FROM grants WHERE id = $1", grant_id)
        redeems = await conn.fetchval(
            "SELECT count(*) FROM grant_events WHERE grant_id = $1 AND cause = 'redeem'", grant_id
        )
    assert (row["state"], row["redemptions"], redeems) == ("redeemed", 1, 1)


async def test_lock_unlock_redeem_and_a_lock_that_lapses(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        coupon = await create_coupon(session, stack, 5, daily_limit=False, lock_seconds=1)
        grant_id = (await claim(session, stack, coupon["id"], "alice")).body["grant"]["id"]
        lock = await step(session, stack, grant_id, "lock", "alice")
        lock_id = lock.body["lock_id"]
        refused = [
            await step(session, stack, grant_id, "lock", "alice"),
            await step(session, stack, grant_id, "redeem", "alice"),
            await step(session, stack, grant_id, "unlock", "alice", {"lock_id": "not-the-key"}),
        ]
        unlocked = await step(session, stack, grant_id, "unlock", "alice", {"lock_id": lock_id})
        relock = await step(session, stack, grant_id, "lock", "alice")
        lapsed = await _wait_for_state(session, stack, grant_id, "alice", "assigned")
        redeemed = await step(session, stack, grant_id, "redeem", "alice")
        after = await step(session, stack, grant_id, "lock", "alice")
    assert (lock.status, lock.body["state"]) == (200, "locked")
    assert [(a.status, a.body["reason"]) for a in refused] == [(409, "locked")] * 3
    assert (unlocked.status, unlocked.body["state"]) == (200, "assigned")
    assert relock.status == 200 and lapsed["state"] == "assigned"
    assert (redeemed.status, redeemed.body["state"]) == (200, "redeemed")
    assert (after.status, after.body["reason"]) == (409, "already_redeemed")


async def _wait_for_state(
    session: aiohttp.ClientSession, stack: Stack, grant_id: str, user: str, state: str
) -> dict[str, object]:
    deadline = time.monotonic() + 10
    while True:
        answer = await get(session, f"{stack.gateway_url}/v1/grants/{grant_id}", stack.token(user))
        if answer.body["state"] == state or time.monotonic() > deadline:
            return answer.body
        await asyncio.sleep(POLL_INTERVAL_S)


async def test_no_redemption_after_the_coupon_expires(stack: Stack) -> None:
    # nora, not alice: the coupon has the daily rule, and the module's tests share a stack
    now = datetime.now(UTC)
    async with aiohttp.ClientSession() as session:
        coupon = await create_coupon(
            session, stack, 5, start=now - timedelta(seconds=1), expiry=now + timedelta(seconds=2)
        )
        grant_id = (await claim(session, stack, coupon["id"], "nora")).body["grant"]["id"]
        await asyncio.sleep(
            max(0.0, (now + timedelta(seconds=2.1) - datetime.now(UTC)).total_seconds())
        )
        late = await step(session, stack, grant_id, "redeem", "nora")
    assert (late.status, late.body["reason"]) == (409, "expired")


async def test_a_grant_is_seen_and_moved_only_by_its_owner_or_an_admin(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        coupon = await create_coupon(session, stack, 5, daily_limit=False)
        grant_id = (await claim(session, stack, coupon["id"], "alice")).body["grant"]["id"]
        url = f"{stack.gateway_url}/v1/grants/{grant_id}"
        mine = await get(session, url, stack.token("alice"))
        theirs = await get(session, url, stack.token("mallory"))
        steal = await step(session, stack, grant_id, "redeem", "mallory")
        admin = await get(session, url, stack.token("ops", admin=True))
        bogus = await step(session, stack, grant_id, "explode", "alice")
        events = await get(session, f"{url}/events", stack.token("alice"))
    assert (mine.status, theirs.status, steal.status, admin.status) == (200, 404, 404, 200)
    assert theirs.headers["Content-Type"] == "application/problem+json"
    assert bogus.status == 404
    assert [(e["from"], e["to"], e["cause"]) for e in events.body["items"]] == [
        (None, "assigned", "claim")
    ]


async def test_a_closed_live_stream_releases_holds_where_the_coupon_asks(stack: Stack) -> None:
    notifier = stack.env["NOTIFIER_PUBLIC_URL"]
    async with aiohttp.ClientSession() as session:
        asks = await create_coupon(
            session, stack, 1, daily_limit=False, hold_seconds=600, release_on_disconnect=True
        )
        keeps = await create_coupon(session, stack, 1, daily_limit=False, hold_seconds=600)
        stream = await session.get(
            f"{notifier}/v1/users/me/events",
            headers={"Authorization": f"Bearer {stack.token('lena')}"},
        )
        assert stream.status == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        snapshot = await read_event(stream)
        held = await claim(session, stack, asks["id"], "lena")
        kept = await claim(session, stack, keeps["id"], "lena")
        bob = await claim(session, stack, asks["id"], "bob", wait_s=0.3)
        live: list[tuple[str, dict[str, Any]]] = []
        await read_until(stream, "decision", live, held.body["grant"]["id"])
        stream.close()  # the person goes away
        passed = await poll_ticket(session, bob.headers["Location"], timeout_s=10)
        url = f"{stack.gateway_url}/v1/grants"
        gone = await get(session, f"{url}/{held.body['grant']['id']}/events", stack.token("lena"))
        still = await get(session, f"{url}/{kept.body['grant']['id']}", stack.token("lena"))
    assert snapshot == ("grants", {"items": []})
    assert {name for name, _ in live} <= {"decision", "granted"}, live  # nothing else first
    assert (bob.status, passed["status"], passed["grant"]["user_id"]) == (202, "granted", "bob")
    assert gone.body["items"][-1]["cause"] == "disconnect"
    assert still.body["state"] == "held"  # this coupon did not ask for release on disconnect


async def test_redemption_limits_per_grant_and_per_person(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        coupon = await create_coupon(
            session,
            stack,
            5,
            daily_limit=False,
            per_user_limit=2,
            redemptions_per_grant=2,
            redemptions_per_user=3,
        )
        claims = [await claim(session, stack, coupon["id"], "alice") for _ in range(3)]
        grants = [a.body["grant"] for a in claims[:2]]
        first = [await step(session, stack, grants[0]["id"], "redeem", "alice") for _ in range(3)]
        second = [await step(session, stack, grants[1]["id"], "redeem", "alice") for _ in range(2)]
    assert [a.status for a in claims] == [201, 201, 409]
    assert claims[2].body["reason"] == "already_claimed"  # a third is over per_user_limit
    assert [(a.status, a.body.get("state"), a.body.get("reason")) for a in first] == [
        (200, "assigned", None),
        (200, "redeemed", None),
        (409, None, "already_redeemed"),
    ]
    assert [(a.status, a.body.get("reason")) for a in second] == [
        (200, None),
        (409, "redemption_limit"),
    ]


async def test_the_line_is_refused_once_the_last_hold_is_confirmed(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        coupon = await create_coupon(session, stack, 1, daily_limit=False, hold_seconds=600)
        alice = await claim(session, stack, coupon["id"], "alice")
        bob = await claim(session, stack, coupon["id"], "bob", wait_s=0.3)
        stats = await get(
            session,
            f"{stack.gateway_url}/v1/coupons/{coupon['id']}/stats",
            stack.token("ops", admin=True),
        )
        await step(session, stack, alice.body["grant"]["id"], "confirm", "alice")
        refused = await poll_ticket(session, bob.headers["Location"], timeout_s=10)
        carol = await claim(session, stack, coupon["id"], "carol")
    assert (stats.body["held"], stats.body["line"], stats.body["remaining"]) == (1, 1, 0)
    assert (refused["status"], refused["reason"]) == ("rejected", "sold_out")
    assert (carol.status, carol.body["reason"]) == (409, "sold_out")


@pytest.mark.own_stack  # it SIGKILLs the allocator
async def test_a_restarted_allocator_still_lapses_holds_nobody_writes_about(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        coupon = await create_coupon(session, stack, 1, daily_limit=False, hold_seconds=3)
        alice = await claim(session, stack, coupon["id"], "alice")
        bob = await claim(session, stack, coupon["id"], "bob", wait_s=0.3)
        (victim,) = stack.allocators
        victim.process.kill()  # SIGKILL while alice holds and bob waits
        stack.start_allocator(label="allocator-restarted")
        # No command about this coupon arrives now: only the new allocator's timer can
        # lapse alice's hold, and only if it reloaded the coupon on start.
        passed = await poll_ticket(session, bob.headers["Location"], timeout_s=20)
    assert alice.body["grant"]["state"] == "held" and bob.status == 202
    assert (passed["status"], passed["grant"]["user_id"]) == ("granted", "bob")
    late_ms = ms(passed["grant"]["granted_at"]) - ms(alice.body["grant"]["expires_at"])
    print(f"\nrestart: the hold passed on {late_ms} ms after its deadline")
