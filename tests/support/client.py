"""A small HTTP client for the tests: what a person's app would send."""

import asyncio
import json
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from runtime.settings import COMMAND_PARTITIONS, Settings
from schemas.tickets import open_ticket
from schemas.topics import partition_of
from tests.support.stack import Stack
from tests.support.terminal import coupons_in, stack_folder

PARTITIONS = COMMAND_PARTITIONS  # the command log's, in the test stack


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]
    seconds: float


async def create_coupon(
    session: aiohttp.ClientSession,
    stack: Stack,
    count: int,
    start: datetime | None = None,
    expiry: datetime | None = None,
    daily_limit: bool = True,
    **fields: Any,
) -> dict[str, Any]:
    start = start or datetime.now(UTC) - timedelta(seconds=1)
    body = {
        "code": "TEST",
        "message": "a test coupon",
        "start_time": start.isoformat(),
        "expiry": (expiry or start + timedelta(days=1)).isoformat(),
        "count": count,
        "daily_limit": daily_limit,
        **fields,
    }
    answer = await post(
        session, f"{stack.gateway_url}/v1/coupons", stack.token("admin", True), body
    )
    assert answer.status == 201, answer.body
    return answer.body


async def coupons_on_every_partition(
    session: aiohttp.ClientSession, stack: Stack, count: int = 1_000, **fields: Any
) -> list[str]:
    """A coupon of `count` on each partition of the command log (ids are made, not
    chosen); the coupons made beside them are never claimed."""
    found: dict[int, str] = {}
    for _ in range(64):
        coupon = await create_coupon(session, stack, count, **fields)
        found.setdefault(partition_of(coupon["id"], PARTITIONS), coupon["id"])
        if len(found) == PARTITIONS:
            return [found[p] for p in range(PARTITIONS)]
    raise AssertionError(f"coupons landed on partitions {sorted(found)} only")


async def post(
    session: aiohttp.ClientSession,
    url: str,
    token: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> Answer:
    started = time.perf_counter()
    async with session.post(
        url, json=body, headers={"Authorization": f"Bearer {token}", **(headers or {})}
    ) as response:
        return await _answer(response, started)


async def _answer(response: aiohttp.ClientResponse, started: float) -> Answer:
    payload = await response.json(content_type=None)
    return Answer(response.status, payload, dict(response.headers), time.perf_counter() - started)


async def claim(
    session: aiohttp.ClientSession,
    stack: Stack,
    coupon_id: str,
    user: str,
    wait_s: float = 10,
    key: str | None = None,
) -> Answer:
    headers = {"Prefer": f"wait={wait_s}"}
    if key:
        headers["Idempotency-Key"] = key
    url = f"{stack.gateway_url}/v1/coupons/{coupon_id}/claims"
    return await post(session, url, stack.token(user), {}, headers)


async def get(session: aiohttp.ClientSession, url: str, token: str | None = None) -> Answer:
    started = time.perf_counter()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.get(url, headers=headers) as response:
        return await _answer(response, started)


async def step(
    session: aiohttp.ClientSession,
    stack: Stack,
    grant_id: str,
    action: str,
    user: str,
    body: dict[str, Any] | None = None,
    admin: bool = False,
) -> Answer:
    """confirm, cancel, lock, unlock or redeem a grant, as `user`."""
    url = f"{stack.gateway_url}/v1/grants/{grant_id}/{action}"
    return await post(session, url, stack.token(user, admin), body or {}, {"Prefer": "wait=10"})


async def at_the_edge(stack: Stack, answers: list[Answer]) -> list[Answer]:
    """The refusals the gateway's edge gave: requests the log never decided (the edge's
    answer is the allocator's word for word, ticket and all, so only the log tells)."""
    rows = await stack.fetch("SELECT request_id::text FROM decisions")
    decided = {row["request_id"] for row in rows}
    secret = Settings.from_env(stack.env).ticket_secret
    opened = [(a, open_ticket(secret, a.body["ticket"])) for a in answers if a.status == 409]
    return [a for a, ids in opened if ids is not None and ids[1] not in decided]


async def poll_ticket(
    session: aiohttp.ClientSession, url: str, timeout_s: float = 60
) -> dict[str, Any]:
    """Poll a ticket until it is decided (bounded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        async with session.get(url) as response:
            body: dict[str, Any] = await response.json(content_type=None)
            assert response.status == 200, body
        if body["status"] != "pending" or time.monotonic() > deadline:
            return body
        await asyncio.sleep(POLL_INTERVAL_S)


POLL_INTERVAL_S = 0.05  # between looks at a condition that has a deadline


async def read_event(stream: aiohttp.ClientResponse) -> tuple[str, dict[str, Any]]:
    """The next server-sent event (keep-alive comments skipped), within a bound."""
    name, data = "", b""
    while True:
        line = await asyncio.wait_for(stream.content.readline(), timeout=10)
        assert line, "the stream ended"
        if line.startswith(b"event: "):
            name = line[7:].strip().decode()
        elif line.startswith(b"data: "):
            data = line[6:].strip()
        elif line == b"\n" and name:
            return name, json.loads(data)


EVENTS_READ_MAX = 40  # a stream that never shows what is awaited fails instead of hanging


async def read_until(
    stream: aiohttp.ClientResponse,
    wanted: str,
    seen: list[tuple[str, dict[str, Any]]],
    grant_id: str | None = None,
) -> dict[str, Any]:
    """Read events (keeping each in `seen`) until one named `wanted` comes (about the grant
    `grant_id`, when given): a grant's decision, from the log, and its `granted`, from the
    database's feed, reach a person's stream in either order."""
    for _ in range(EVENTS_READ_MAX):
        name, data = await read_event(stream)
        seen.append((name, data))
        if name == wanted and (grant_id is None or data["grant"]["id"] == grant_id):
            return data
    raise AssertionError(f"no {wanted} among {[n for n, _ in seen]}")


def session(connections_max: int = 256, timeout_s: float = 60) -> aiohttp.ClientSession:
    """A client session for many people at once."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections_max),
        timeout=aiohttp.ClientTimeout(total=timeout_s),
    )


async def grants_of(stack: Stack, coupon_id: str) -> tuple[int, int, int]:
    async with stack.connection() as conn:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT user_id) AS users,"
            " (SELECT issued FROM coupons WHERE id = $1) AS issued"
            " FROM grants WHERE coupon_id = $1",
            coupon_id,
        )
    return row["n"], row["users"], row["issued"]


async def holders(stack: Stack, coupon_id: str) -> list[tuple[str, str]]:
    """Who holds each grant of the coupon and in what state, in the order granted."""
    rows = await stack.fetch(
        "SELECT user_id, state FROM grants WHERE coupon_id = $1 ORDER BY seq", coupon_id
    )
    return [(r["user_id"], r["state"]) for r in rows]


async def decisions_of(stack: Stack, coupon_id: str) -> int:
    async with stack.connection() as conn:
        decided: int = await conn.fetchval(
            "SELECT count(*) FROM decisions WHERE coupon_id = $1 AND outcome <> 'created'",
            coupon_id,
        )
    return decided


async def until(found: Callable[[], Awaitable[bool]], timeout_s: float, why: str) -> None:
    """Look until `found()` holds, at most `timeout_s`; fail saying `why` it did not."""
    deadline = time.monotonic() + timeout_s
    while not await found():
        assert time.monotonic() < deadline, f"{why} after {timeout_s}s"
        await asyncio.sleep(POLL_INTERVAL_S)


async def wait_for_grants(
    stack: Stack, coupon_id: str, at_least: int, timeout_s: float = 30
) -> None:
    deadline = time.monotonic() + timeout_s
    while (await grants_of(stack, coupon_id))[0] < at_least:
        assert time.monotonic() < deadline, f"fewer than {at_least} grants after {timeout_s}s"
        await asyncio.sleep(POLL_INTERVAL_S)


async def claims_under_way(
    http: aiohttp.ClientSession, stack: Stack, count: int, prefix: str, users: int,
    grants_first: int,
) -> "tuple[str, asyncio.Future[list[Answer]]]":  # fmt: skip
    """A new coupon of `count`, and `users` claims on it sent at once (none waits for its
    decision), still running once at least `grants_first` of them are granted: the moment
    to break something. Returns the coupon's id and the claims' answers to come."""
    coupon_id = (await create_coupon(http, stack, count))["id"]
    burst = asyncio.gather(
        *(claim(http, stack, coupon_id, f"{prefix}{i}", wait_s=0) for i in range(users))
    )
    await wait_for_grants(stack, coupon_id, grants_first)
    return coupon_id, burst


async def settle(http: aiohttp.ClientSession, stack: Stack, answers: list[Answer]) -> Counter[str]:
    """Every answer's final outcome, polling the tickets of those still pending."""
    outcomes: Counter[str] = Counter()
    assert stack.notifier
    for answer in answers:
        assert answer.status in (201, 202, 409), (answer.status, answer.body)
        if answer.status == 202:
            final = await poll_ticket(http, answer.headers["Location"])
            outcomes[final.get("reason") or final["status"]] += 1
        else:
            outcomes[answer.body.get("reason") or answer.body["status"]] += 1
    return outcomes


async def pending_answers_reach(session: aiohttp.ClientSession, stack: Stack, count: int) -> bool:
    """Until the gateway has answered `count` claims 202 (from its metrics), bounded."""
    deadline = time.monotonic() + 60
    while True:
        async with session.get(f"{stack.gateway_url}/metrics") as response:
            text = await response.text()
        pending = sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith('coupons_claims_total{outcome="pending"}')
        )
        if pending >= count:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(POLL_INTERVAL_S)


async def metric(url: str, name: str) -> float:
    """A counter's value (summed over its labels) on a part's /metrics."""
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as response:
        text = await response.text()
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith((name + " ", name + "{"))
    )


def replay(stack: Stack, *args: str) -> tuple[int, str]:
    """`coupons replay ARGS` in a folder where it finds the stack by its settings file."""
    with tempfile.TemporaryDirectory() as folder:
        status, out, err = coupons_in(stack_folder(stack, Path(folder)), "replay", *args)
    return status, out + err
