"""Nobody acts where they have no right: every endpoint with no token, a user's token,
another user's token and an admin's; forged tickets; secrets kept out of logs and metrics."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.client import claim, create_coupon
from tests.support.stack import SECRET, Stack

pytestmark = [pytest.mark.integration, pytest.mark.shares_stack]


async def call(
    session: aiohttp.ClientSession, method: str, url: str, token: str | None, body: Any = None
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.request(method, url, json=body, headers=headers) as response:
        payload = await response.json(content_type=None)
        if response.status >= 400:
            assert response.headers["Content-Type"] == "application/problem+json", payload
        return response.status, payload


def admin_only(coupon: str) -> Iterator[tuple[str, str, Any]]:
    yield "POST", "/v1/coupons", {"code": "X", "count": 1}
    yield "DELETE", f"/v1/coupons/{coupon}?revoke=true", None
    yield "POST", f"/v1/coupons/{coupon}/codes", {"codes": ["A1"]}
    yield "POST", f"/v1/coupons/{coupon}/assignments", {"user_id": "bob", "code": "A1"}
    yield "POST", f"/v1/coupons/{coupon}/distributions", {"users": ["bob"], "strategy": "fcfs"}
    yield "GET", f"/v1/coupons/{coupon}/grants", None
    yield "GET", f"/v1/coupons/{coupon}/stats", None
    yield "POST", f"/v1/coupons/{coupon}/claims", {"user_id": "bob"}  # acting for another


def owner_only(grant: str) -> Iterator[tuple[str, str, Any]]:
    yield "GET", f"/v1/grants/{grant}", None
    yield "GET", f"/v1/grants/{grant}/events", None
    for action in ("confirm", "cancel", "lock", "unlock", "redeem"):
        yield "POST", f"/v1/grants/{grant}/{action}", {}


async def test_every_endpoint_refuses_who_has_no_right_and_changes_nothing(stack: Stack) -> None:
    gw, alice, bob = stack.gateway_url, stack.token("alice"), stack.token("bob")
    async with aiohttp.ClientSession() as session:
        coupon = (await create_coupon(session, stack, 5))["id"]
        grant = (await claim(session, stack, coupon, "alice")).body["grant"]["id"]
        seen: list[tuple[str, str, str, int]] = []
        for method, path, body in admin_only(coupon):
            for who, token in (("nobody", None), ("alice", alice)):
                status, _ = await call(session, method, gw + path, token, body)
                seen.append((who, method, path, status))
        for method, path, body in owner_only(grant):
            for who, token in (("nobody", None), ("bob", bob)):
                status, _ = await call(session, method, gw + path, token, body)
                seen.append((who, method, path, status))
        stream = f"{stack.notifier.url if stack.notifier else ''}/v1/users/me/events"
        async with session.get(stream) as response:
            seen.append(("nobody", "GET", "/v1/users/me/events", response.status))
        wrong = {"nobody": 401, "alice": 403, "bob": 404}
        assert [s for s in seen if s[3] != wrong[s[0]]] == []
        # What they may do: everyone reads coupons; alice reads her grant, bob not in his list.
        assert (await call(session, "GET", f"{gw}/v1/coupons/{coupon}", None))[0] == 200
        assert (await call(session, "GET", f"{gw}/v1/grants/{grant}", alice))[0] == 200
        admin = stack.token("ops", admin=True)
        assert (await call(session, "GET", f"{gw}/v1/grants/{grant}", admin))[0] == 200
        _, mine = await call(session, "GET", f"{gw}/v1/users/me/grants", bob)
        assert mine["items"] == []
    async with stack.connection() as conn:
        state = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM grants WHERE coupon_id = $2) AS grants,"
            " (SELECT state FROM grants WHERE id = $1) AS state,"
            " (SELECT count(*) FROM coupon_codes WHERE coupon_id = $2) AS codes,"
            " (SELECT closed FROM coupons WHERE id = $2) AS closed",
            grant,
            coupon,
        )
    assert dict(state) == {"grants": 1, "state": "assigned", "codes": 0, "closed": False}
    print(f"security: {len(seen)} refused calls, nothing changed")


async def test_a_forged_or_altered_ticket_is_unknown(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        coupon = (await create_coupon(session, stack, 5))["id"]
        ticket = (await claim(session, stack, coupon, "tess")).body["ticket"]
        base = f"{stack.notifier.url if stack.notifier else ''}/v1/tickets/"
        flipped = ticket[:-1] + ("A" if ticket[-1] != "A" else "B")
        answers = {}
        for name, candidate in (("real", ticket), ("altered", flipped), ("forged", "x" * 40)):
            async with session.get(base + candidate) as response:
                answers[name] = (response.status, await response.json(content_type=None))
    assert answers["real"][0] == 200 and answers["real"][1]["status"] == "granted"
    assert answers["altered"][0] == 404 and answers["forged"][0] == 404
    assert "grant" not in answers["altered"][1]


def test_no_secret_in_logs_or_metrics(stack: Stack) -> None:
    import urllib.request

    parts = [p for p in (stack.gateway, stack.notifier, *stack.allocators) if p is not None]
    metrics = ""
    for part in parts:
        with urllib.request.urlopen(f"{part.url}/metrics", timeout=10) as response:
            metrics += response.read().decode()
    logs = "".join(path.read_text() for path in Path(stack.log_dir).glob("*.log"))
    assert metrics and logs
    assert SECRET not in metrics and SECRET not in logs
