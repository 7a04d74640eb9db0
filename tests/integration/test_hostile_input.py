"""Hostile but well-formed input on every endpoint of the running stack (issue 12): what
schemathesis does not send. Header values (`Prefer`, `Idempotency-Key`, `Authorization`,
`Content-Type`, `X-Forwarded-For`) as raw bytes, and strings holding NUL, lone
surrogates, control characters or very long values, in bodies, paths and queries.

Requests go out as raw HTTP/1.1 bytes: an HTTP client library would refuse to send much
of this, and a real attacker uses none. No answer may be a 5xx, no part may log an
unhandled error, and afterwards a canary claim on every partition must be decided.
"""

import asyncio
import json
import socket
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.auth import mint_token
from tests.support.client import (
    PARTITIONS,
    claim,
    coupons_on_every_partition,
    create_coupon,
    post,
)
from tests.support.stack import SECRET, Stack

pytestmark = [pytest.mark.integration, pytest.mark.shares_stack]

EXAMPLES_PER_OPERATION = 60  # bounded: CI time
ANSWER_TIMEOUT_S = 15  # Prefer: wait is at most 10 s
LONG_CHARS = 20_000

NASTY_TEXT = st.one_of(
    st.sampled_from(["a\x00b", "\x00", "\ud800", "x\udfffy", "\x1b[31m", "\u202e", ""]),
    st.text(alphabet=st.characters(exclude_categories=()), max_size=40),  # surrogates too
    st.builds(
        lambda c, n: c * n,
        st.sampled_from(["a", "\x00", "é", "\ud800"]),
        st.integers(1, LONG_CHARS),
    ),  # fmt: skip
)
NASTY_NUMBER = st.sampled_from(
    ["NaN", "Infinity", "-Infinity", "1e400", "18446744073709551616", "-0", "1.5", "2147483648"]
)
HEADER_BYTES = st.one_of(
    st.binary(max_size=200).filter(lambda b: b"\r" not in b and b"\n" not in b),
    st.sampled_from(
        [b"wait=nan", b"wait=inf", b"wait=-inf", b"wait=1e309", b"wait=-1", b"wait=", b"wait",
         b"wait=0x10", b'wait="nan"', b"wait=10, wait=nan", b"\xff\xfe", b"\xed\xa0\x80",
         b"Bearer", b"Bearer ", b"Bearer \xff", b"bearer a.b.c", b"Basic Zm9vOmJhcg==",
         b"text/csv", b"text/csv; charset=latin-1", b"application/json; charset=\xff",
         b"multipart/form-data; boundary=x", b"::1, 10.0.0.1", b"999.1.1.1", b"unknown"]
    ),
)  # fmt: skip
HEADERS = ("Prefer", "Idempotency-Key", "Authorization", "Content-Type", "X-Forwarded-For")


@dataclass(frozen=True)
class Operation:
    part: str  # its base URL
    method: str
    path: str  # with {placeholders}
    stream: bool  # a live stream: only the status line is read


def operations(documents: dict[str, dict[str, Any]]) -> list[Operation]:
    found = []
    for base, document in documents.items():
        for path, methods in document["paths"].items():
            for method, spec in methods.items():
                if method in ("get", "post", "delete", "put", "patch"):
                    responses = spec.get("responses", {})
                    stream = any(
                        "text/event-stream" in (r.get("content") or {}) for r in responses.values()
                    )
                    found.append(Operation(base, method.upper(), path, stream))
    return found


def tokens(stack: Stack) -> list[str]:
    """Tokens as an identity provider might sign them, `sub` and all."""
    subs = ["fuzzer", "a\x00b", "\ud800", "x" * 300, "\x07bell", "é" * 10]
    made = [mint_token(SECRET, sub, admin=True) for sub in subs]
    made += [
        mint_token(SECRET, "fuzzer"),
        mint_token("not-the-secret-" + "x" * 32, "fuzzer", admin=True),
    ]
    made += [stack.token("fuzzer", admin=True) + "x", "a.b.c", "\x00"]
    return made


def raw_request(
    url: str,
    method: str,
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    stream: bool,
) -> int:
    """Send one request as bytes; the status code of its answer."""
    parts = urllib.parse.urlsplit(url)
    head = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: " + parts.netloc.encode()]
    head += [name + b": " + value for name, value in headers]
    head += [b"Content-Length: " + str(len(body)).encode(), b"Connection: close"]
    with socket.create_connection((parts.hostname, parts.port), timeout=ANSWER_TIMEOUT_S) as s:
        s.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
        answer = b""
        while b"\r\n" not in answer:
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
        if not stream:  # read it all: a handler that fails late fails before the end
            while s.recv(65536):
                pass
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1."), f"no HTTP answer: {answer[:200]!r}"
    return int(status_line.split()[1])


def valid_body(path: str) -> dict[str, Any]:
    """A body the operation takes: a hostile value then goes in one of its fields."""
    now = datetime.now(UTC)
    if path == "/v1/coupons":
        return {
            "code": "FUZZ", "message": "m", "description": "d", "count": 3,
            "start_time": (now - timedelta(seconds=1)).isoformat(),
            "expiry": (now + timedelta(days=1)).isoformat(),
        }  # fmt: skip
    by_suffix: dict[str, dict[str, Any]] = {
        "/claims": {"user_id": "fuzzed"},
        "/codes": {"codes": ["F1", "F2"]},
        "/assignments": {"user_id": "fuzzed", "code": "FUZZ-ONE"},
        "/distributions": {"users": ["u1", "u2"], "strategy": "fcfs", "seed": "s"},
        "{action}": {"lock_id": "00000000-0000-4000-8000-000000000000"},
    }
    return next((dict(body) for end, body in by_suffix.items() if path.endswith(end)), {})


def body_for(data: st.DataObject, path: str) -> bytes:
    """A valid body with one hostile field or number, hostile values anywhere, or bytes."""
    valid = valid_body(path)
    kind = data.draw(st.sampled_from(["one_field", "one_field", "number", "anywhere", "raw", ""]))
    if kind == "raw":
        return data.draw(st.binary(max_size=500))
    if not kind or not valid:
        return json.dumps(valid).encode()
    field = data.draw(st.sampled_from(sorted(valid)))
    if kind == "number":
        number = data.draw(NASTY_NUMBER)
        return json.dumps({**valid, field: "_N_"}).replace('"_N_"', number).encode()
    nasty = data.draw(NASTY_TEXT)
    if kind == "one_field":
        body: dict[str, Any] = {**valid, field: [nasty] if field in ("codes", "users") else nasty}
    else:
        body = {data.draw(st.sampled_from([*valid, nasty])): nasty, "lock_id": nasty}
    return json.dumps(body).encode()  # ensure_ascii: a lone surrogate goes as \ud800


def target_for(data: st.DataObject, operation: Operation, ids: dict[str, str]) -> bytes:
    path = operation.path
    for name, real in ids.items():
        placeholder = "{" + name + "}"
        if placeholder in path:
            nasty = urllib.parse.quote(data.draw(NASTY_TEXT)[:300], safe="", errors="surrogatepass")
            path = path.replace(placeholder, data.draw(st.sampled_from([real, real, real, nasty])))
    query = data.draw(st.sampled_from(["", "live", "revoke", "after", "limit", "coupon"]))
    if query:
        value = data.draw(st.one_of(st.sampled_from(["true", "²", "-1", "1e3", ids["coupon_id"]]),
                                    NASTY_TEXT.map(lambda t: t[:300])))  # fmt: skip
        path += f"?{query}=" + urllib.parse.quote(value, safe="", errors="surrogatepass")
    return path.encode()


async def setup_ids(stack: Stack) -> dict[str, str]:
    async with aiohttp.ClientSession() as session:
        coupons = await coupons_on_every_partition(session, stack)
        granted = await claim(session, stack, coupons[0], "fuzz-holder")
        assert granted.status == 201, granted.body
        async with session.get(f"{stack.gateway_url}/openapi.json") as response:
            await response.read()
    return {
        "coupon_id": coupons[0],
        "grant_id": granted.body["grant"]["id"],
        "ticket": granted.body["ticket"],
        "action": "redeem",
    }


async def documents(stack: Stack) -> dict[str, dict[str, Any]]:
    assert stack.notifier is not None
    found = {}
    async with aiohttp.ClientSession() as session:
        for base in (stack.gateway_url, stack.notifier.url):
            async with session.get(f"{base}/openapi.json") as response:
                found[base] = await response.json()
    return found


def test_hostile_headers_and_strings_on_every_endpoint(stack: Stack) -> None:
    ids = asyncio.run(setup_ids(stack))
    every = operations(asyncio.run(documents(stack)))
    assert len(every) >= 20, [f"{o.method} {o.path}" for o in every]
    made = tokens(stack)
    answered: dict[int, int] = {}
    started = time.perf_counter()

    def fuzz(operation: Operation) -> None:
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,  # the same requests on every run: a failure can be replayed
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(data=st.data())
        def hostile(data: st.DataObject) -> None:
            headers = []
            for name in HEADERS:
                if name == "Authorization":
                    token = data.draw(st.sampled_from([made[0]] * 3 * len(made) + made))
                    bearer = b"Bearer " + token.encode("utf-8", "surrogatepass")
                    hostile_header = data.draw(st.integers(0, 3)) == 0
                    value = data.draw(HEADER_BYTES) if hostile_header else bearer
                elif data.draw(st.integers(0, 3)) == 0:  # one in four: a hostile value
                    value = data.draw(HEADER_BYTES)
                else:
                    continue
                headers.append((name.encode(), value))
            body = body_for(data, operation.path) if operation.method == "POST" else b""
            target = target_for(data, operation, ids)
            status = raw_request(
                operation.part, operation.method, target, headers, body, operation.stream
            )
            answered[status] = answered.get(status, 0) + 1
            assert status < 500, f"{operation.method} {target[:200]!r} {headers} {body[:300]!r}"

        hostile()

    for operation in every:
        fuzz(operation)
    seconds = time.perf_counter() - started
    print(
        f"\nhostile input: {sum(answered.values())} requests on {len(every)} operations in"
        f" {seconds:.1f} s, answered {dict(sorted(answered.items()))}"
    )
    for part in [stack.gateway, stack.notifier, *stack.allocators]:
        assert part is not None
        log = part.process.log_path.read_text(errors="replace")
        assert "unhandled error" not in log and "Traceback" not in log, log[-3000:]
    asyncio.run(canaries_decided(stack))


async def canaries_decided(stack: Stack) -> None:
    """Every partition still decides: a fresh claim on a coupon of each is granted."""
    async with aiohttp.ClientSession() as session:
        coupons = await coupons_on_every_partition(session, stack)
        answers = [
            await claim(session, stack, c, f"canary-{uuid.uuid4().hex[:6]}") for c in coupons
        ]
    assert [a.status for a in answers] == [201] * PARTITIONS, [a.body for a in answers]


async def test_odd_wait_values_still_answer_with_the_decision_or_the_ticket(stack: Stack) -> None:
    """Prefer: wait=nan once failed after the produce: a claim in the log, its sender a 500."""
    async with aiohttp.ClientSession() as session:
        coupons = await coupons_on_every_partition(session, stack)
        for n, wait in enumerate(["nan", "-nan", "inf", "-inf", "1e309", "-1", "0", "x"]):
            url = f"{stack.gateway_url}/v1/coupons/{coupons[n % PARTITIONS]}/claims"
            headers = {"Authorization": f"Bearer {stack.token(f'waiter-{n}')}",
                       "Prefer": f"wait={wait}"}  # fmt: skip
            async with session.post(url, json={}, headers=headers) as response:
                body = await response.json(content_type=None)
            assert response.status in (201, 202), (wait, response.status, body)
            assert body["ticket"], (wait, body)


# Ids the one rule refuses (schemas/storable.py), each for a reason of its own.
REFUSED_IDS = {
    "   ": "is blank",
    "a\x07b": "control character",
    "ann\nbob": "control character",
    " ann": "whitespace",
    "ann\u2028": "line or paragraph separator",
    "\u202eann": "bidirectional",
}


async def test_a_persons_id_is_held_to_one_rule_at_every_door(stack: Stack) -> None:
    """Issue 23: a blank id was granted in an inline distribution, control characters were
    taken as ids. Each door refuses them naming the field and the rule, and nothing moves."""
    ops = stack.token("ops", admin=True)
    async with aiohttp.ClientSession() as session:
        coupon = await create_coupon(session, stack, 10, daily_limit=False)
        base = f"{stack.gateway_url}/v1/coupons/{coupon['id']}"
        answers = []
        for n, (bad, rule) in enumerate(REFUSED_IDS.items()):
            tried = {
                "user_id": await post(session, f"{base}/claims", ops, {"user_id": bad}),
                "users[1]": await post(session, f"{base}/distributions", ops,
                                       {"users": ["fine", bad]}, {"Prefer": "wait=10"}),
                "user_id ": await post(session, f"{base}/assignments", ops,
                                       {"user_id": bad, "code": f"BY-HAND-{n}"}),
            }  # fmt: skip
            answers += [(bad, rule, field.strip(), answer) for field, answer in tried.items()]
        granted = await stack.fetchval(
            "SELECT count(*) FROM grants WHERE coupon_id = $1", coupon["id"]
        )
    print("".join(f"\n{field} {bad!r}: {a.status} {a.body.get('detail')}"
                  for bad, _, field, a in answers))  # fmt: skip
    for bad, rule, field, answer in answers:
        assert answer.status == 400, (bad, field, answer.status, answer.body)
        assert answer.headers["Content-Type"] == "application/problem+json", (bad, field)
        assert answer.body["detail"].startswith(f"{field} "), (bad, answer.body)
        assert rule in answer.body["detail"], (bad, answer.body)
    assert granted == 0


async def test_a_codes_csv_with_an_open_quote_or_a_newline_in_a_code_is_refused(
    stack: Stack,
) -> None:
    """Issue 23: an unterminated quote ran to the end of the file and was stored as one
    value. The CSV reader refuses it, and a quoted newline, naming the line."""
    ops = {"Authorization": f"Bearer {stack.token('ops', admin=True)}", "Content-Type": "text/csv"}
    bodies = {
        "open quote": 'code\nA1\n"B2\nC3\n',
        "newline in a code": 'code\nA1\n"B2\nC3"\nD4\n',
    }
    async with aiohttp.ClientSession() as session:
        coupon = await create_coupon(session, stack, 5, code_source="uploaded")
        url = f"{stack.gateway_url}/v1/coupons/{coupon['id']}/codes"
        answers = {}
        for what, body in bodies.items():
            async with session.post(url, data=body.encode(), headers=ops) as response:
                answers[what] = (response.status, response.content_type, await response.json())
        left = await stack.fetchval("SELECT codes_left FROM coupons WHERE id = $1", coupon["id"])
    for what, (status, content_type, problem) in answers.items():
        assert (status, content_type) == (400, "application/problem+json"), (what, problem)
        assert "line 3" in problem["detail"], (what, problem)
    assert left == 0  # nothing was added
