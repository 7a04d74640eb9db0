"""Clients as a careful client developer writes them: an Idempotency-Key per claim, a retry
on another gateway when a connection breaks or the answer is 503, tickets polled to the
end. What they were told is checked against PostgreSQL afterwards."""

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import aiohttp

from tests.support.client import POLL_INTERVAL_S, Answer, post
from tests.support.stack import Stack

ATTEMPTS_MAX = 40
RETRY_PAUSE_S = 0.25


@dataclass
class Outcome:
    user: str
    answer: Answer | None = None
    final: str = "unanswered"  # granted, a reason, or unanswered
    grant_id: str | None = None
    broken: int = 0  # connections that broke under it
    shed: int = 0  # 503s it was told to retry after
    resent: int = 0  # times its ticket said the request was lost, so it sent it again


@dataclass
class Tally:
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self) -> Counter[str]:
        return Counter(o.final for o in self.outcomes)


async def claim_until_answered(
    http: aiohttp.ClientSession, stack: Stack, urls: list[str], coupon: str, user: str,
    wait_s: float = 2,
) -> Outcome:  # fmt: skip
    outcome = Outcome(user)
    while True:
        body = await _claim_once(http, stack, urls, coupon, outcome, wait_s)
        if body.get("reason") != "lost" or outcome.resent >= ATTEMPTS_MAX:
            break
        outcome.resent += 1  # as the ticket says: send it again, with the same key
    if body.get("status") == "granted":
        outcome.final = "granted"
    else:
        outcome.final = body.get("reason") or "unanswered"
    outcome.grant_id = (body.get("grant") or {}).get("id")
    return outcome


async def _claim_once(
    http: aiohttp.ClientSession, stack: Stack, urls: list[str], coupon: str, outcome: Outcome,
    wait_s: float,
) -> dict[str, Any]:  # fmt: skip
    """One claim, retried until some answer comes; the decision, or {} without one."""
    headers = {"Prefer": f"wait={wait_s}", "Idempotency-Key": f"claim-{outcome.user}"}
    outcome.answer = None
    for attempt in range(ATTEMPTS_MAX):
        url = f"{urls[attempt % len(urls)]}/v1/coupons/{coupon}/claims"
        try:
            answer = await post(http, url, stack.token(outcome.user), {}, headers)
        except (TimeoutError, aiohttp.ClientError):
            outcome.broken += 1
            await asyncio.sleep(RETRY_PAUSE_S)
            continue
        if answer.status == 503:
            outcome.shed += 1
            await asyncio.sleep(float(answer.headers.get("Retry-After", "1")))
            continue
        outcome.answer = answer
        break
    if outcome.answer is None:
        return {}
    if outcome.answer.status == 202:
        return await poll_until_decided(http, outcome.answer.headers["Location"], outcome)
    return outcome.answer.body


async def paced(clients: Sequence[Callable[[], Awaitable[Outcome]]], per_s: float) -> list[Outcome]:
    """Start the clients at a steady rate (a sustained load, not one wave); all outcomes."""
    started = time.monotonic()
    running: list[asyncio.Task[Outcome]] = []
    for index, client in enumerate(clients):
        delay = started + index / per_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        running.append(asyncio.ensure_future(client()))
    return list(await asyncio.gather(*running))


def sustained_load(
    http: aiohttp.ClientSession, stack: Stack, coupon: str, prefix: str, users: int,
    per_s: float, wait_s: float = 2,
) -> "asyncio.Task[list[Outcome]]":  # fmt: skip
    """`users` careful clients on the stack's gateway, started at `per_s`, running."""
    clients = [
        partial(
            claim_until_answered, http, stack, [stack.gateway_url], coupon, f"{prefix}{i}", wait_s
        )  # fmt: skip
        for i in range(users)
    ]
    return asyncio.create_task(paced(clients, per_s))


async def poll_until_decided(
    http: aiohttp.ClientSession, url: str, outcome: Outcome, timeout_s: float = 120
) -> dict[str, Any]:
    """Poll a ticket to its decision, through a notifier that may be down or answer 503."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            async with http.get(url) as response:
                body: dict[str, Any] = await response.json(content_type=None)
                status = response.status
        except (TimeoutError, aiohttp.ClientError):
            outcome.broken += 1
            await asyncio.sleep(RETRY_PAUSE_S)
            continue
        assert status in (200, 503), (status, body)  # never a 500, never a 404
        if status == 503:
            outcome.shed += 1
        elif body["status"] != "pending":
            return body
        await asyncio.sleep(POLL_INTERVAL_S)
    return {"status": "pending", "reason": "unanswered"}


async def stored_grants(stack: Stack, coupon: str) -> dict[str, str]:
    """user → grant id, as PostgreSQL has them; fails on a user with two."""
    async with stack.connection() as conn:
        rows = await conn.fetch("SELECT user_id, id FROM grants WHERE coupon_id = $1", coupon)
    users = [r["user_id"] for r in rows]
    assert len(users) == len(set(users)), "a user holds two grants"
    return {r["user_id"]: str(r["id"]) for r in rows}


def check(outcomes: list[Outcome], stored: dict[str, str], count: int) -> dict[str, int]:
    """Everyone answered; every granted answer is the stored grant and every stored grant
    was answered granted; exactly `count` grants. The figures a fault test prints."""
    told = {o.user: o.grant_id for o in outcomes if o.final == "granted"}
    lost = sum(1 for o in outcomes if o.final == "unanswered")
    doubled = len(stored) - len(set(stored.values()))
    assert lost == 0, f"{lost} clients never got an answer: {_unanswered(outcomes)}"
    differ = sorted(
        (user, told.get(user), stored.get(user), [o for o in outcomes if o.user == user][0].final)
        for user in set(told) | set(stored)
        if told.get(user) != stored.get(user)
    )
    assert not differ, f"told differs from stored (user, told, stored, final): {differ[:5]}"
    assert len(stored) == count
    return {
        "clients": len(outcomes),
        "granted": len(told),
        "answered": len(outcomes) - lost,
        "answered by ticket": sum(1 for o in outcomes if o.answer and o.answer.status == 202),
        "retried after a broken connection": sum(1 for o in outcomes if o.broken),
        "retried after 503": sum(1 for o in outcomes if o.shed),
        "sent again after a lost ticket": sum(1 for o in outcomes if o.resent),
        "lost": lost,
        "doubled": doubled,
    }


def _unanswered(outcomes: list[Outcome]) -> str:
    """How the unanswered went: refused at every attempt, or a ticket pending to the end."""
    left = [o for o in outcomes if o.final == "unanswered"]
    never = sum(1 for o in left if o.answer is None)
    return (
        f"{never} never past a 503 or a broken connection, {len(left) - never} with a ticket"
        f" pending to the end ({sum(1 for o in left if o.resent)} had sent again after"
        f" 'lost'); first: {left[0] if left else None}"
    )


def report(name: str, did: str, figures: dict[str, int], started: float) -> None:
    shown = ", ".join(f"{k} {v}" for k, v in figures.items())
    print(f"\n{name}: {did}; {shown} ({time.monotonic() - started:.1f} s)")
