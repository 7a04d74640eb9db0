"""Saved audiences on the real stack: saved with versions, refused when stale, distributed
to, deleted; and a distribution to one still replays from the log once it is gone."""

import io
from typing import Any

import aiohttp
import pytest

from tests.support.client import Answer, create_coupon, replay
from tests.support.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.shares_stack]


async def call(
    session: aiohttp.ClientSession,
    stack: Stack,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    who: str = "ops",
) -> Answer:
    sent = {"Authorization": f"Bearer {stack.token(who, admin=who == 'ops')}", **(headers or {})}
    kwargs: dict[str, Any] = {"json": body}
    if isinstance(body, str):  # a CSV, streamed: aiohttp warns of a large body in one piece
        kwargs = {"data": io.BytesIO(body.encode())}
    async with session.request(
        method, f"{stack.gateway_url}{path}", headers=sent, **kwargs
    ) as response:
        payload = await response.json(content_type=None) if response.status != 204 else {}
        return Answer(response.status, payload, dict(response.headers), 0.0)


async def test_audience_saved_in_versions_and_a_stale_save_refused(stack: Stack) -> None:
    csv = {"Content-Type": "text/csv"}
    async with aiohttp.ClientSession() as session:
        first = await call(session, stack, "PUT", "/v1/audiences/vip",
                           {"members": ["ann", "bo", "ann", "cy"]})  # fmt: skip
        listed = await call(session, stack, "GET", "/v1/audiences")
        read = await call(session, stack, "GET", "/v1/audiences/vip")
        tag = first.headers["Etag"]
        second = await call(session, stack, "PUT", "/v1/audiences/vip", "user_id\nann\r\ndee\n\n",
                            {**csv, "If-Match": tag})  # fmt: skip
        stale = await call(session, stack, "PUT", "/v1/audiences/vip", {"members": ["zed"]},
                           {"If-Match": tag})  # fmt: skip
        taken = await call(session, stack, "PUT", "/v1/audiences/vip", {"members": ["zed"]},
                           {"If-None-Match": "*"})  # fmt: skip
        after = await call(session, stack, "GET", "/v1/audiences/vip")
    assert first.status == 201 and first.headers["Location"] == "/v1/audiences/vip"
    assert (first.body["size"], first.body["dropped"], first.body["saved_by"]) == (3, 1, "ops")
    assert [(a["name"], a["size"]) for a in listed.body["items"]] == [("vip", 3)]
    assert read.body["members"] == ["ann", "bo", "cy"] and read.headers["Etag"] == tag
    assert second.status == 200 and second.body["version"] > first.body["version"]
    assert second.headers["Etag"] == f'"{second.body["version"]}"'
    assert (stale.status, taken.status) == (412, 412)
    assert stale.headers["Content-Type"] == "application/problem+json"
    assert after.body["members"] == ["ann", "dee"]  # the refused saves changed nothing
    assert after.body["version"] == second.body["version"]


async def test_distribution_to_an_audience_previewed_applied_and_replayed(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        coupon = await create_coupon(session, stack, 10, daily_limit=False)
        path = f"/v1/coupons/{coupon['id']}/distributions"
        saved = await call(session, stack, "PUT", "/v1/audiences/vip",
                           {"members": ["ann", "bo", "cy"]})  # fmt: skip
        version = saved.body["version"]
        preview = await call(session, stack, "POST", path,
                             {"audience": "vip", "audience_version": version, "dry_run": True},
                             {"Prefer": "wait=10"})  # fmt: skip
        await call(session, stack, "PUT", "/v1/audiences/vip", {"members": ["ann", "dee"]})
        changed = await call(session, stack, "POST", path,
                             {"audience": "vip", "audience_version": version,
                              "seed": preview.body["seed"]}, {"Prefer": "wait=10"})  # fmt: skip
        issued = await stack.fetchval(
            "SELECT count(*) FROM grants WHERE coupon_id = $1", coupon["id"]
        )
        applied = await call(session, stack, "POST", path, {"audience": "vip"},
                             {"Prefer": "wait=10"})  # fmt: skip
        deleted = await call(session, stack, "DELETE", "/v1/audiences/vip")
        gone = await call(session, stack, "GET", "/v1/audiences/vip")
        to_gone = await call(session, stack, "POST", path, {"audience": "vip"})
        owners = await stack.fetch(
            "SELECT user_id FROM grants WHERE coupon_id = $1 ORDER BY user_id", coupon["id"]
        )
    assert preview.status == 200 and preview.body["audience"] == {
        "name": "vip", "version": version, "size": 3}  # fmt: skip
    assert [p["user_id"] for p in preview.body["plan"]] == ["ann", "bo", "cy"]
    assert changed.status == 409 and changed.body["reason"] == "audience_changed"
    assert issued == 0  # the stale apply reached nothing
    assert applied.status == 201 and applied.body["audience"]["size"] == 2
    assert [r["user_id"] for r in owners] == ["ann", "dee"]
    assert (deleted.status, gone.status, to_gone.status) == (204, 404, 404)
    status, report = replay(stack)  # the audience is gone; the log holds whom it named
    assert status == 0 and ", 0 mismatch" in report, report


async def test_audience_requests_refused_in_words(stack: Stack) -> None:
    many = "\n".join(f"person-number-{i:06d}" for i in range(5_000))  # 105 KB: an upload
    too_many = {"members": [f"p{i}" for i in range(5_001)]}
    async with aiohttp.ClientSession() as session:
        coupon = await create_coupon(session, stack, 1)
        path = f"/v1/coupons/{coupon['id']}/distributions"
        answers = {
            "not admin": await call(session, stack, "GET", "/v1/audiences", who="eve"),
            "not admin saving": await call(
                session, stack, "PUT", "/v1/audiences/x", {"members": ["a"]}, who="eve"
            ),
            "bad name": await call(session, stack, "PUT", "/v1/audiences/-x", {"members": ["a"]}),
            "empty": await call(session, stack, "PUT", "/v1/audiences/x", {"members": []}),
            "too many": await call(session, stack, "PUT", "/v1/audiences/x", too_many),
            "not strings": await call(session, stack, "PUT", "/v1/audiences/x", {"members": [1]}),
            "bad If-Match": await call(
                session, stack, "PUT", "/v1/audiences/x", {"members": ["a"]}, {"If-Match": "*"}
            ),
            "bad If-None-Match": await call(
                session, stack, "PUT", "/v1/audiences/x", {"members": ["a"]}, {"If-None-Match": "x"}
            ),
            "too large": await call(
                session,
                stack,
                "PUT",
                "/v1/audiences/x",
                "a\n" * 600_000,
                {"Content-Type": "text/csv"},
            ),  # fmt: skip
            "unknown": await call(session, stack, "GET", "/v1/audiences/nobody"),
            "unknown deleted": await call(session, stack, "DELETE", "/v1/audiences/nobody"),
            "both": await call(session, stack, "POST", path, {"users": ["a"], "audience": "x"}),
            "neither": await call(session, stack, "POST", path, {"strategy": "fcfs"}),
            "version alone": await call(
                session, stack, "POST", path, {"users": ["a"], "audience_version": 1}
            ),
        }
        large = await call(session, stack, "PUT", "/v1/audiences/large", many,
                           {"Content-Type": "text/csv"})  # fmt: skip
        stored = await stack.fetchval(
            "SELECT array_agg(name) FROM audiences WHERE name IN ('x', '-x', 'large')"
        )
    expected = {"not admin": 403, "not admin saving": 403, "too large": 413, "unknown": 404,
                "unknown deleted": 404}  # fmt: skip
    for what, answer in answers.items():
        assert answer.status == expected.get(what, 400), (what, answer.body)
        assert answer.headers["Content-Type"] == "application/problem+json", what
        assert answer.body["detail"], what
    assert large.status == 201 and large.body["size"] == 5_000
    assert stored == ["large"]  # every refusal changed nothing


async def test_members_are_held_to_the_id_rule_and_a_broken_csv_is_refused(stack: Stack) -> None:
    """Issue 23: an audience took control characters as ids, and a CSV's unterminated quote
    ran to the end of the file and was saved as the member "ann\nbob". Each is refused,
    naming the member or the line and the rule; nothing is saved, and an audience saved
    before the rule is not distributed to."""
    csv = {"Content-Type": "text/csv"}
    refused = {
        "control": {"members": ["ann", "a\tb"]},
        "blank": {"members": ["ann", "   "]},
        "edges": {"members": ["ann", " cy "]},
        "open quote": 'user_id\nann\n"bob\ncy\n',
        "newline in a member": 'user_id\nann\n"bob\ncy"\ndee\n',
        "control in a csv": "user_id\nann\nbo\x1bb\n",
    }
    async with aiohttp.ClientSession() as session:
        answers = {
            what: await call(session, stack, "PUT", "/v1/audiences/broken", body,
                             csv if isinstance(body, str) else None)
            for what, body in refused.items()
        }  # fmt: skip
        saved = await stack.fetchval("SELECT count(*) FROM audiences WHERE name = 'broken'")
        coupon = await create_coupon(session, stack, 5, daily_limit=False)
        await stack.fetch("INSERT INTO audiences (name, members, saved_by)"
                          " VALUES ('old', ARRAY['ann', '   '], 'ops')")  # fmt: skip
        to_old = await call(session, stack, "POST", f"/v1/coupons/{coupon['id']}/distributions",
                            {"audience": "old"}, {"Prefer": "wait=10"})  # fmt: skip
        granted = await stack.fetchval(
            "SELECT count(*) FROM grants WHERE coupon_id = $1", coupon["id"]
        )
    said = {what: (a.status, str(a.body.get("detail"))) for what, a in answers.items()}
    print("".join(f"\n{what}: {status} {detail}" for what, (status, detail) in said.items()))
    print(f"to an old audience: {to_old.status} {to_old.body.get('detail')}")
    for what, answer in answers.items():
        assert answer.status == 400, (what, answer.body)
        assert answer.headers["Content-Type"] == "application/problem+json", what
    assert said["control"][1].startswith("members[1] holds a control character")
    assert said["blank"][1] == "members[1] is blank"
    assert said["edges"][1].startswith("members[1] begins or ends with whitespace")
    assert "line 3" in said["open quote"][1] and "line 3" in said["newline in a member"][1]
    assert said["control in a csv"][1].startswith("members: line 3: ")
    assert saved == 0
    assert to_old.status == 409 and to_old.body["reason"] == "unstorable"
    assert "members[1] is blank" in to_old.body["detail"] and granted == 0
