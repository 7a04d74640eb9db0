"""The behaviour suite's driver over HTTP on the real stack, in real time: the public API as
a person's app and an admin's console call it (tests/support/client.py), waiting for a
condition with a deadline whenever time must pass. Each driver gives its scenario's people
ids of their own, so scenarios can share a stack."""

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from runtime.settings import COMMAND_PARTITIONS
from schemas.readmodel import dt_to_ms
from schemas.topics import partition_for, partition_of, user_key
from tests.behaviour.driver import (
    HOUR_MS,
    Answer,
    Claim,
    Coupon,
    Event,
    Grant,
    Outcome,
    Step,
    Stock,
    Terms,
)
from tests.support import client
from tests.support.stack import Stack

LINE_WAIT_S = 0.3  # how long a claim that is to wait in line waits for its place
DECISION_WAIT_S = 10  # how long a claim or a step waits for its decision (Prefer: wait)
TICKET_WAIT_S = 15  # how long a waiting claim's ticket is polled for its decision
LAPSE_WAIT_S = 10  # how long past a deadline a grant may take to leave its state
OUTCOMES: dict[int, Outcome] = {
    201: "granted",
    202: "waiting",
    200: "applied",
    404: "rejected",
    409: "rejected",
}


def _ms(rfc3339: str) -> int:
    return dt_to_ms(datetime.fromisoformat(rfc3339))


def _at(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def deciders(allocators: Sequence[str | None]) -> dict[int, int]:
    """Which allocator decides each partition, for allocators started as `allocators`
    (ALLOCATOR_PARTITIONS each; "all", or None, the one member of a group: every one)."""
    owned = [range(COMMAND_PARTITIONS) if mine in (None, "all") else map(int, mine.split(","))
             for mine in allocators]  # fmt: skip
    return {partition: n for n, partitions in enumerate(owned) for partition in partitions}


@dataclass
class OverHttp:
    stack: Stack
    http: aiohttp.ClientSession
    owners: dict[int, int]  # partition: the allocator deciding it
    partitions: int = COMMAND_PARTITIONS
    lapse_late_ms_max: int = 1_000  # the allocator looks for deadlines every 100 ms
    clock_slack_ms: int = HOUR_MS  # far beyond any request's way through the stack
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def _id(self, person: str) -> str:
        return f"{person}-{self.tag}"

    def _person(self, user_id: str) -> str:
        person, tag = user_id.rsplit("-", 1)
        assert tag == self.tag, user_id
        return person

    def _grant(self, view: dict[str, Any]) -> Grant:
        deadline = view.get("expires_at")
        return Grant(
            view["id"], view["coupon_id"], self._person(view["user_id"]), view["state"],
            _ms(view["granted_at"]), deadline and _ms(deadline), view.get("lock_id"),
        )  # fmt: skip

    def _answer(self, answer: client.Answer) -> Answer:
        body = answer.body
        assert answer.status in OUTCOMES, (answer.status, body)
        outcome = OUTCOMES[answer.status]
        if outcome == "rejected":
            # A refusal decided on the log names its reason; the gateway's own (no such
            # coupon) is the problem named after it.
            reason = body.get("reason") or body["type"].rsplit("/", 1)[-1].replace("-", "_")
            return Answer("rejected", body.get("ticket", ""), reason)
        if outcome == "waiting":
            return Answer("waiting", body["ticket"], position=body["position"])
        view: dict[str, Any] = body["grant"] if outcome == "granted" else body
        return Answer(outcome, body["ticket"], grant=self._grant(view))

    def _polled(self, body: dict[str, Any]) -> Answer:
        """A ticket's answer: its decision, or where it waits."""
        status, ticket = body["status"], body["ticket"]
        if status == "granted":
            return Answer("granted", ticket, grant=self._grant(body["grant"]))
        if status == "rejected":
            return Answer("rejected", ticket, body["reason"])
        assert status == "pending", body
        return Answer("waiting", ticket, position=body.get("position"))

    def _ticket_url(self, ticket: str) -> str:
        return f"{self.stack.env['NOTIFIER_PUBLIC_URL']}/v1/tickets/{ticket}"

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    async def create_coupon(self, terms: Terms) -> Coupon:
        made = await client.create_coupon(
            self.http, self.stack, terms.count, _at(terms.start_ms), _at(terms.expiry_ms),
            terms.daily, hold_seconds=terms.hold_seconds, lock_seconds=terms.lock_seconds,
            per_user_limit=terms.per_user_limit,
            redemptions_per_grant=terms.redemptions_per_grant,
            redemptions_per_user=terms.redemptions_per_user,
        )  # fmt: skip
        return Coupon(made["id"], made["state"], _ms(made["expiry"]))

    async def _claim(self, claim: Claim, wait_s: float) -> Answer:
        sent = await client.claim(self.http, self.stack, claim.coupon.id, self._id(claim.person),
                                  wait_s, claim.key)  # fmt: skip
        return self._answer(sent)

    async def claim(self, coupon: Coupon, person: str, key: str | None = None) -> Answer:
        return await self._claim(Claim(coupon, person, key), DECISION_WAIT_S)

    async def join(self, coupon: Coupon, person: str) -> Answer:
        return await self._claim(Claim(coupon, person), LINE_WAIT_S)

    async def claims_at_once(self, claims: Sequence[Claim]) -> list[Answer]:
        return list(await asyncio.gather(*(self._claim(c, DECISION_WAIT_S) for c in claims)))

    async def claims_in_order(self, claims: Sequence[Claim]) -> list[Answer]:
        # Prefer: wait=0 answers once the claim is in the log, before it is decided.
        sent = [await self._claim(c, 0) for c in claims]
        return [await self.outcome(a) for a in sent]

    async def step(
        self, grant: Grant, step: Step, person: str, lock_id: str | None = None
    ) -> Answer:
        body = {"lock_id": lock_id} if lock_id is not None else None
        sent = await client.step(self.http, self.stack, grant.id, step, self._id(person), body)
        return self._answer(sent)

    async def outcome(self, waiting: Answer) -> Answer:
        if waiting.outcome != "waiting":
            return waiting
        url = self._ticket_url(waiting.ticket)
        return self._polled(await client.poll_ticket(self.http, url, TICKET_WAIT_S))

    async def look(self, waiting: Answer) -> Answer:
        return self._polled((await client.get(self.http, self._ticket_url(waiting.ticket))).body)

    async def _grant_now(self, grant: Grant) -> Grant:
        url = f"{self.stack.gateway_url}/v1/grants/{grant.id}"
        return self._grant((await client.get(self.http, url, self._token(grant.person))).body)

    def _token(self, person: str) -> str:
        return self.stack.token(self._id(person))

    async def after_deadline(self, grant: Grant) -> Grant:
        assert grant.deadline_ms is not None, grant
        now: list[Grant] = []

        async def moved() -> bool:
            now.append(await self._grant_now(grant))
            return now[-1].state != grant.state

        wait_s = max(0, grant.deadline_ms - self.now_ms()) / 1000 + LAPSE_WAIT_S
        await client.until(moved, wait_s, f"{grant} still {grant.state}")
        return now[-1]

    async def until_expired(self, coupon: Coupon) -> None:
        url = f"{self.stack.gateway_url}/v1/coupons/{coupon.id}"

        async def expired() -> bool:
            return bool((await client.get(self.http, url)).body["state"] == "expired")

        wait_s = max(0, coupon.expiry_ms - self.now_ms()) / 1000 + LAPSE_WAIT_S
        await client.until(expired, wait_s, f"coupon {coupon.id} not expired")

    async def holders(self, coupon: Coupon) -> list[tuple[str, str]]:
        held = await client.holders(self.stack, coupon.id)
        return [(self._person(user_id), state) for user_id, state in held]

    async def stock(self, coupon: Coupon) -> Stock:
        url = f"{self.stack.gateway_url}/v1/coupons/{coupon.id}/stats"
        stats = (await client.get(self.http, url, self.stack.token("ops", admin=True))).body
        return Stock(stats["held"], stats["line"], stats["remaining"])

    async def events(self, grant: Grant) -> list[Event]:
        url = f"{self.stack.gateway_url}/v1/grants/{grant.id}/events"
        items = (await client.get(self.http, url, self._token(grant.person))).body["items"]
        return [(e["from"], e["to"], e["cause"]) for e in items]

    def partition_of(self, coupon: Coupon) -> int:
        return partition_of(coupon.id, self.partitions)

    def days_partition(self, person: str) -> int:
        return partition_for(user_key(self._id(person)), self.partitions)

    def decider_of(self, partition: int) -> int:
        return self.owners[partition]
