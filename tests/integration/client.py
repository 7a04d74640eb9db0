"""A small HTTP client for the tests: what a person's app would send."""

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from schemas.topics import partition_of
from tests.integration.conftest import Stack

PARTITIONS = 4  # the command log's, in the test stack (conftest.build_stack)


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
    session: aiohttp.ClientSession, stack: Stack, **fields: Any
) -> list[str]:
    """A coupon on each partition of the command log (ids are made, not chosen)."""
    found: dict[int, str] = {}
    for _ in range(64):
        coupon = await create_coupon(session, stack, 1_000, **fields)
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


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


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
