"""Every operation of both documents answered by the real stack, each answer held to the
document strictly (tests/support/openapi.py): a field an answer carries and the document
does not declare fails, as a generated client would miss it (issue 26: the generated
`Coupon` lacked `hold_seconds`; `/stats` lacked ten counts)."""

import asyncio
import io
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest

from runtime.docs import document
from tests.support.openapi import Conformance
from tests.support.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.shares_stack]
STREAM_READ_S = 5.0


@dataclass
class Said:
    status: int
    body: Any
    headers: Mapping[str, str]


class Tour:
    """Requests to one stack, each answer checked against its part's document."""

    def __init__(self, session: aiohttp.ClientSession, stack: Stack) -> None:
        assert stack.notifier is not None
        self.session, self.stack = session, stack
        self.parts = {
            stack.gateway_url: Conformance(document("gateway")),
            stack.notifier.url: Conformance(document("notifier")),
        }

    async def call(
        self, method: str, url: str, body: Any = None, who: str | None = "ops",
        headers: Mapping[str, str] | None = None, base: str | None = None,
    ) -> Said:  # fmt: skip
        base = base or self.stack.gateway_url
        sent = {"Prefer": "wait=10", **(headers or {})}
        if who is not None:
            sent["Authorization"] = f"Bearer {self.stack.token(who, admin=who == 'ops')}"
        data: Any = None
        if isinstance(body, str):
            data = io.BytesIO(body.encode())
        elif body is not None:
            data, sent["Content-Type"] = orjson.dumps(body), "application/json"
        async with self.session.request(method, base + url, data=data, headers=sent) as response:
            content_type = response.headers.get("Content-Type", "")
            if content_type.startswith("text/event-stream"):
                raw = await asyncio.wait_for(response.content.readuntil(b"\n\n"), STREAM_READ_S)
            else:
                raw = await response.read()
        self.parts[base].check(method, urlsplit(url).path, response.status, content_type, raw)
        parsed = orjson.loads(raw) if "json" in content_type and raw else raw
        return Said(response.status, parsed, response.headers)


async def test_every_operation_answers_as_its_document_says(stack: Stack) -> None:
    assert stack.notifier is not None
    notifier = stack.notifier.url
    now = datetime.now(UTC)
    new = {
        "code": "TOUR", "message": "a tour", "count": 50, "hold_seconds": 60,
        "start_time": (now - timedelta(seconds=1)).isoformat(),
        "expiry": (now + timedelta(days=1)).isoformat(),
    }  # fmt: skip
    async with aiohttp.ClientSession() as session:
        tour = Tour(session, stack)
        call = tour.call
        signed_in = await call("POST", "/v1/dev/token", {"name": "tia"}, who=None)
        assert signed_in.status == 200, signed_in.body
        coupon = (await call("POST", "/v1/coupons", new)).body
        uploaded = (await call("POST", "/v1/coupons", {**new, "code_source": "uploaded"})).body
        for url in ("/v1/coupons", "/v1/coupons?live=true", f"/v1/coupons/{coupon['id']}"):
            assert (await call("GET", url, who=None)).status == 200
        claims = f"/v1/coupons/{coupon['id']}/claims"
        held = await call("POST", claims, {}, who="tia", headers={"Idempotency-Key": "t1"})
        assert held.status == 201, held.body
        again = await call("POST", claims, {}, who="tia")
        assert again.status == 409, again.body
        pending = await call("POST", claims, {}, who="tom", headers={"Prefer": "wait=0"})
        assert pending.status in (201, 202), pending.body
        for answer in (held, again, pending):
            ticket = await call("GET", f"/v1/tickets/{answer.body['ticket']}", base=notifier)
            assert ticket.status == 200, ticket.body
        grant = held.body["grant"]["id"]
        for url in ("/v1/users/me/grants", f"/v1/grants/{grant}", f"/v1/grants/{grant}/events"):
            assert (await call("GET", url, who="tia")).status == 200
        steps: dict[str, Any] = {}
        for action in ("confirm", "lock", "unlock", "lock", "redeem"):
            keyed = action in ("unlock", "redeem")  # with the key the last lock gave
            body = {"lock_id": steps["lock"]["lock_id"]} if keyed else {}
            stepped = await call("POST", f"/v1/grants/{grant}/{action}", body, who="tia")
            assert stepped.status == 200, (action, stepped.body)
            steps[action] = stepped.body
        cancelled = await call("POST", claims, {}, who="tod")
        cancel = await call("POST", f"/v1/grants/{cancelled.body['grant']['id']}/cancel", {},
                            who="tod")  # fmt: skip
        assert cancel.status == 200, cancel.body
        codes = f"/v1/coupons/{uploaded['id']}/codes"
        assert (await call("POST", codes, {"codes": ["TOUR-1", "TOUR-2"]})).status == 200
        csv = await call("POST", codes, "code\nTOUR-3\n", headers={"Content-Type": "text/csv"})
        assert csv.status == 200, csv.body
        assigned = await call("POST", f"/v1/coupons/{uploaded['id']}/assignments",
                              {"user_id": "tia", "code": "TOUR-1"})  # fmt: skip
        assert assigned.status == 201, assigned.body
        saved = await call("PUT", "/v1/audiences/tourists", {"members": ["tam", "tib"]},
                           headers={"If-None-Match": "*"})  # fmt: skip
        assert saved.status == 201, saved.body
        again_saved = await call("PUT", "/v1/audiences/tourists", "user_id\ntam\ntib\ntic\n",
                                 headers={"Content-Type": "text/csv"})  # fmt: skip
        assert again_saved.status == 200, again_saved.body
        for url in ("/v1/audiences", "/v1/audiences/tourists"):
            assert (await call("GET", url)).status == 200
        distributions = f"/v1/coupons/{coupon['id']}/distributions"
        preview = await call("POST", distributions, {"audience": "tourists", "dry_run": True})
        assert preview.status == 200, preview.body
        given = await call("POST", distributions, {"users": ["tam", "tib"], "strategy": "random"})
        assert given.status == 201, given.body
        assert (await call("DELETE", "/v1/audiences/tourists")).status == 204
        for url in (
            f"/v1/coupons/{coupon['id']}/grants?limit=2",
            f"/v1/coupons/{coupon['id']}/stats",
        ):
            assert (await call("GET", url)).status == 200
        streams = [("/v1/users/me/events", "tia"), (f"/v1/events?coupon={coupon['id']}", None),
                   ("/dashboard", None), ("/dashboard/events", None)]  # fmt: skip
        for url, who in streams:
            assert (await call("GET", url, who=who, base=notifier)).status == 200, url
        closed = await call("DELETE", f"/v1/coupons/{coupon['id']}?revoke=true")
        assert closed.status == 200, closed.body
        for base in tour.parts:
            for url in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
                assert (await call("GET", url, who=None, base=base)).status == 200
        # A problem of each kind the documents declare, as clients meet them.
        refusals: list[tuple[str, str, Any, str | None, int]] = [
            ("GET", "/v1/coupons/no-such", None, None, 404),
            ("POST", claims, {"user_id": "x"}, "tia", 403),
            ("POST", claims, {"nope": 1}, "tia", 400),
            ("GET", "/v1/users/me/grants", None, None, 401),
        ]
        for method, url, sent, who, status in refusals:
            assert (await call(method, url, sent, who=who)).status == status, url
        unknown = await call("GET", "/v1/tickets/" + "A" * 64, base=notifier)
        assert unknown.status == 404
    unanswered = {base: part.unanswered() for base, part in tour.parts.items()}
    assert unanswered == {base: [] for base in tour.parts}
