"""A grant's life through the HTTP API on the real stack, where only the real stack shows
it: concurrent redeems, who may touch a grant, a live stream closed under a hold, and an
allocator restarted under one. The rest of a grant's life is the behaviour suite's
(tests/behaviour/scenarios.py), run here by tests/integration/test_behaviour.py."""

import asyncio
from collections import Counter
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from schemas.readmodel import dt_to_ms
from tests.support.client import (
    claim,
    create_coupon,
    get,
    poll_ticket,
    read_event,
    read_until,
    step,
)
from tests.support.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.shares_stack]


def ms(rfc3339: str) -> int:
    return dt_to_ms(datetime.fromisoformat(rfc3339))


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
