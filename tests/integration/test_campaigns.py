"""Running a campaign through the HTTP API on the real stack: codes, closing, bulk grants,
the grant list and statistics, the audit trail, and the users table."""

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.client import Answer, claim, create_coupon, get, post, step
from tests.support.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.shares_stack]


async def admin_post(
    session: aiohttp.ClientSession, stack: Stack, path: str, body: dict[str, Any]
) -> Answer:
    url = f"{stack.gateway_url}{path}"
    return await post(session, url, stack.token("ops", admin=True), body, {"Prefer": "wait=10"})


async def admin_get(session: aiohttp.ClientSession, stack: Stack, path: str) -> Answer:
    return await get(session, f"{stack.gateway_url}{path}", stack.token("ops", admin=True))


async def test_codes_made_from_a_pattern_over_each_alphabet(stack: Stack) -> None:
    shapes = {"digits": r"SALE-[0-9]{8}", "hangul": r"SALE-[2-9가-힣]{8}"}
    async with aiohttp.ClientSession() as session:
        codes = {}
        for alphabet in shapes:
            coupon = await create_coupon(
                session,
                stack,
                3,
                daily_limit=False,
                code_pattern="{prefix}-{random:8}",
                code_prefix="sale",
                code_alphabet=alphabet,
            )
            answers = [await claim(session, stack, coupon["id"], f"u{i}") for i in range(3)]
            codes[alphabet] = [a.body["grant"]["code"] for a in answers]
        guessable = await admin_post(
            session,
            stack,
            "/v1/coupons",
            {
                "code": "X",
                "start_time": "2026-01-01T00:00:00Z",
                "expiry": "2027-01-01T00:00:00Z",
                "count": 1000,
                "code_pattern": "{random:4}",
                "code_alphabet": "digits",
            },
        )
    for alphabet, shape in shapes.items():
        assert all(re.fullmatch(shape, c) for c in codes[alphabet]), codes
        assert len(set(codes[alphabet])) == 3
    assert guessable.status == 400 and "guessed" in guessable.body["detail"]


async def test_uploaded_codes_in_order_then_sold_out_and_one_assigned(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        coupon = await create_coupon(session, stack, 10, daily_limit=False, code_source="uploaded")
        path = f"/v1/coupons/{coupon['id']}"
        empty = await claim(session, stack, coupon["id"], "early")
        as_json = await admin_post(session, stack, f"{path}/codes", {"codes": ["J1", "J2"]})
        url = f"{stack.gateway_url}{path}/codes"
        headers = {
            "Authorization": f"Bearer {stack.token('ops', admin=True)}",
            "Content-Type": "text/csv",
        }
        async with session.post(url, data="code\nC1\nC2\n", headers=headers) as response:
            as_csv = (response.status, await response.json(content_type=None))
        repeated = await admin_post(session, stack, f"{path}/codes", {"codes": ["C9", "J1"]})
        by_user = await post(session, url, stack.token("mallory"), {"codes": ["M1"]})
        given = await admin_post(
            session, stack, f"{path}/assignments", {"user_id": "vip", "code": "C1"}
        )
        claims = [await claim(session, stack, coupon["id"], f"u{i}") for i in range(4)]
    assert (empty.status, empty.body["reason"]) == (409, "sold_out")
    assert (as_json.status, as_json.body["codes_left"]) == (200, 2)
    assert as_csv == (200, {"added": 2, "codes_left": 4})
    assert (repeated.status, repeated.body["reason"]) == (409, "duplicate_code")
    assert by_user.status == 403
    assert given.status == 201, given.body
    assert (given.body["code"], given.body["user_id"]) == ("C1", "vip")
    handed = [a.body["grant"]["code"] if a.status == 201 else a.body["reason"] for a in claims]
    assert handed == ["J1", "J2", "C2", "sold_out"]


async def test_closing_with_revoke_and_what_the_admin_sees(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        coupon = await create_coupon(session, stack, 5, daily_limit=False)
        path = f"/v1/coupons/{coupon['id']}"
        grants = [
            (await claim(session, stack, coupon["id"], f"u{i}")).body["grant"] for i in range(3)
        ]
        await step(session, stack, grants[0]["id"], "redeem", "u0")
        stats_before = await admin_get(session, stack, f"{path}/stats")
        page = await admin_get(session, stack, f"{path}/grants?limit=2")
        rest = await admin_get(session, stack, page.body["next"])
        not_admin = await get(session, f"{stack.gateway_url}{path}/stats", stack.token("u0"))
        url = f"{stack.gateway_url}{path}?revoke=true"
        async with session.delete(
            url, headers={"Authorization": f"Bearer {stack.token('u1')}"}
        ) as r:
            refused_close = r.status
        async with session.delete(
            url, headers={"Authorization": f"Bearer {stack.token('ops', admin=True)}"}
        ) as r:
            closed = (r.status, await r.json())
        after = await claim(session, stack, coupon["id"], "late")
        stats_after = await admin_get(session, stack, f"{path}/stats")
    assert {k: stats_before.body[k] for k in ("issued", "assigned", "redeemed", "remaining")} == {
        "issued": 3,
        "assigned": 2,
        "redeemed": 1,
        "remaining": 2,
    }
    seen = [g["code"] for g in page.body["items"] + rest.body["items"]]
    assert seen == [g["code"] for g in grants] and "next" not in rest.body
    assert (not_admin.status, refused_close) == (403, 403)
    assert (closed[0], closed[1]["state"], closed[1]["revoked"]) == (200, "closed", 2)
    assert (after.status, after.body["reason"]) == (409, "closed")
    assert (stats_after.body["revoked"], stats_after.body["redeemed"]) == (2, 1)


async def test_bulk_distribution_dry_run_then_real_and_all_or_nothing(stack: Stack) -> None:
    users = [f"member{i}" for i in range(8)]
    async with aiohttp.ClientSession() as session:
        coupon = await create_coupon(session, stack, 5, daily_limit=False, per_user_limit=2)
        path = f"/v1/coupons/{coupon['id']}/distributions"
        body = {"users": users, "strategy": "random", "seed": "noon"}
        preview = await admin_post(session, stack, path, {**body, "dry_run": True})
        stats_preview = await admin_get(session, stack, f"/v1/coupons/{coupon['id']}/stats")
        real = await admin_post(session, stack, path, body)
        equal = await admin_post(
            session, stack, path, {"users": ["a", "b"], "strategy": "equal", "per_user": 2}
        )
        stats = await admin_get(session, stack, f"/v1/coupons/{coupon['id']}/stats")
        bad = await admin_post(session, stack, path, {"users": [], "strategy": "fcfs"})
        listed = await admin_get(session, stack, f"/v1/coupons/{coupon['id']}/grants")
    assert (preview.status, preview.body["dry_run"], preview.body["granted"]) == (200, True, 5)
    assert stats_preview.body["issued"] == 0
    assert (real.status, real.body["plan"]) == (201, preview.body["plan"])
    assert {s["reason"] for s in real.body["skipped"]} == {"sold_out"}
    assert (equal.status, equal.body["reason"]) == (409, "insufficient_units")
    assert stats.body["issued"] == 5  # the refused distribution changed nothing
    assert bad.status == 400
    winners = sorted(p["user_id"] for p in real.body["plan"])
    assert sorted(g["user_id"] for g in listed.body["items"]) == winners
    assert {g["source"] for g in listed.body["items"]} == {"distribution"}


async def test_every_transition_is_in_the_audit_trail_with_its_cause(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        coupon = await create_coupon(session, stack, 2, daily_limit=False, hold_seconds=60)
        grant_id = (await claim(session, stack, coupon["id"], "alice")).body["grant"]["id"]
        for action in ("confirm", "lock"):
            await step(session, stack, grant_id, action, "alice")
        lock_id = (
            await get(session, f"{stack.gateway_url}/v1/grants/{grant_id}", stack.token("alice"))
        ).body
        events = await get(
            session, f"{stack.gateway_url}/v1/grants/{grant_id}/events", stack.token("alice")
        )
    assert "lock_id" not in lock_id  # the key is given to whoever locked, not shown after
    items = events.body["items"]
    assert [(e["from"], e["to"], e["cause"]) for e in items] == [
        (None, "held", "claim"),
        ("held", "assigned", "confirm"),
        ("assigned", "locked", "lock"),
    ]
    offsets = [e["log"]["offset"] for e in items]
    assert offsets == sorted(offsets) and len(set(offsets)) == 3
    assert len({e["request_id"] for e in items}) == 3


async def test_users_imported_from_csv_show_in_the_grant_list(stack: Stack, tmp_path: Path) -> None:
    csv_file = tmp_path / "users.csv"
    csv_file.write_text("id,display_name\nalice,Alice Kim\nbob,Bob Lee\n", encoding="utf-8")
    bad_file = tmp_path / "bad.csv"
    bad_file.write_text("name\nalice\n", encoding="utf-8")
    env = {**os.environ, "DATABASE_URL": stack.database_url}
    results = []
    for path in (csv_file, bad_file):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli", "users", "import", str(path),
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
        results.append((process.returncode, out.decode() + err.decode()))
    async with aiohttp.ClientSession() as session:
        coupon = await create_coupon(session, stack, 3, daily_limit=False)
        for user in ("alice", "carol"):  # carol was never imported: claims don't need a row
            assert (await claim(session, stack, coupon["id"], user)).status == 201
        listed = await admin_get(session, stack, f"/v1/coupons/{coupon['id']}/grants")
    assert results[0][0] == 0 and "imported 2 users" in results[0][1]
    assert results[1][0] == 2 and "id and display_name" in results[1][1]
    names = {g["user_id"]: g["display_name"] for g in listed.body["items"]}
    assert names == {"alice": "Alice Kim", "carol": None}
