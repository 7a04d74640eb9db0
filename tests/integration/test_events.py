"""Live streams from the notifier: a person's grants as they change, and a coupon's
availability, line, watchers and sell-out, as anyone sees them."""

import uuid
from typing import Any

import aiohttp
import pytest

from tests.support.client import claim, create_coupon, poll_ticket, read_event, read_until, step
from tests.support.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.shares_stack]


async def test_a_person_hears_granted_expiring_released_and_redeemed(stack: Stack) -> None:
    notifier = stack.env["NOTIFIER_PUBLIC_URL"]
    seen: list[tuple[str, dict[str, Any]]] = []
    async with aiohttp.ClientSession() as session:
        held = await create_coupon(session, stack, 1, daily_limit=False, hold_seconds=2)
        outright = await create_coupon(session, stack, 1, daily_limit=False)
        headers = {"Authorization": f"Bearer {stack.token('erin')}"}
        async with session.get(f"{notifier}/v1/users/me/events", headers=headers) as stream:
            assert (await read_event(stream))[0] == "grants"
            hold = (await claim(session, stack, held["id"], "erin")).body["grant"]
            granted = await read_until(stream, "granted", seen)
            expiring = await read_until(stream, "hold_expiring", seen)
            released = await read_until(stream, "hold_released", seen)
            grant = (await claim(session, stack, outright["id"], "erin")).body["grant"]
            await read_until(stream, "granted", seen)
            await step(session, stack, grant["id"], "redeem", "erin")
            redeemed = await read_until(stream, "redeemed", seen)
    print(f"\nerin's stream: {[name for name, _ in seen]}")
    assert (granted["grant"]["id"], granted["after"]) == (hold["id"], "held")
    assert expiring["grant"]["id"] == hold["id"] and 0 <= expiring["seconds_left"] <= 2
    assert (released["grant"]["id"], released["cause"]) == (hold["id"], "hold_lapsed")
    assert (redeemed["grant"]["id"], redeemed["before"]) == (grant["id"], "assigned")


async def test_a_coupon_stream_shows_availability_line_watchers_and_sold_out(
    stack: Stack,
) -> None:
    notifier = stack.env["NOTIFIER_PUBLIC_URL"]
    first: list[tuple[str, dict[str, Any]]] = []
    async with aiohttp.ClientSession() as session:
        coupon = await create_coupon(session, stack, 2, daily_limit=False, hold_seconds=600)
        url = f"{notifier}/v1/events?coupon={coupon['id']}"
        async with session.get(url) as stream:  # no token: anyone may watch a coupon
            opening = dict([await read_event(stream) for _ in range(3)])
            async with session.get(url) as other:
                joined = await read_until(stream, "watchers", first)
                other_opening = dict([await read_event(other) for _ in range(3)])
            left = await read_until(stream, "watchers", first)
            holds = [(await claim(session, stack, coupon["id"], p)).body for p in ("al", "bo")]
            carol = await claim(session, stack, coupon["id"], "carol", wait_s=0.3)
            in_line = await read_until(stream, "line", first)
            for hold, person in zip(holds, ("al", "bo"), strict=True):
                await step(session, stack, hold["grant"]["id"], "confirm", person)
            sold_out = await read_until(stream, "sold_out", first)
            shown = [d for n, d in first if n == "availability"][-1]
            refused = await poll_ticket(session, carol.headers["Location"], timeout_s=10)
            emptied = await read_until(stream, "line", first)
    print(f"\ncoupon stream: {[name for name, _ in first]}")
    assert set(opening) == {"availability", "line", "watchers"}
    assert (opening["availability"]["remaining"], opening["availability"]["state"]) == (2, "live")
    assert (opening["line"]["length"], opening["watchers"]["count"]) == (0, 1)
    assert (joined["count"], other_opening["watchers"]["count"], left["count"]) == (2, 2, 1)
    assert (carol.status, in_line["length"]) == (202, 1)
    assert sold_out == {"coupon_id": coupon["id"]}
    assert (shown["state"], shown["remaining"]) == ("sold_out", 0)
    assert (refused["status"], refused["reason"], emptied["length"]) == ("rejected", "sold_out", 0)


async def test_a_coupon_stream_refuses_what_is_not_a_coupon(stack: Stack) -> None:
    notifier = stack.env["NOTIFIER_PUBLIC_URL"]
    async with aiohttp.ClientSession() as session:
        answers = []
        for query in ("", "?coupon=", "?coupon=FREE-IPHONE", f"?coupon={uuid.uuid4()}"):
            async with session.get(f"{notifier}/v1/events{query}") as response:
                answers.append((response.status, response.content_type, await response.json()))
    assert [(s, t) for s, t, _ in answers] == [(400, "application/problem+json")] * 3 + [
        (404, "application/problem+json")
    ]
    assert all(body["detail"] for _, _, body in answers)
