"""The behaviour suite's driver on the decision core: the in-memory cluster of
tests/support/simulation.py behind one gateway, in virtual time that moves only when a
scenario lets it, and then as the allocator's timer moves it: a Tick at each deadline."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import count

from schemas import messages
from schemas.messages import CouponSpec, CreateCoupon, Decision, GrantAction, ReserveDay, Tick
from schemas.tickets import mint, open_ticket, request_id_for
from schemas.views import state_at
from tests.behaviour.driver import (
    DAY_MS,
    Answer,
    Claim,
    Coupon,
    Event,
    Grant,
    Step,
    Stock,
    Terms,
)
from tests.support.simulation import NOON, SECRET, Cluster, coupon_id, request_id

GATEWAY = "gateway"  # the reply topic of the one gateway every request goes through
DEADLINES_MAX = 100  # deadlines passed waiting for one decision before giving up
Request = messages.Claim | GrantAction | CreateCoupon


def _grant(grant: messages.Grant) -> Grant:
    return Grant(
        grant.id, grant.coupon_id, grant.user_id, grant.state, grant.granted_at_ms,
        grant.deadline_ms, grant.lock_id,
    )  # fmt: skip


def _answer(decision: Decision) -> Answer:
    assert decision.outcome != "created", decision
    ticket = mint(SECRET, decision.coupon_id, decision.request_id)
    if decision.outcome == "rejected" or decision.grant is None:
        return Answer(decision.outcome, ticket, decision.reason)
    return Answer(decision.outcome, ticket, decision.reason, _grant(decision.grant))


@dataclass
class InMemory:
    partitions: int = 3
    lapse_late_ms_max: int = 0  # the Tick comes at the very deadline
    clock_slack_ms: int = 0  # a request carries the clock as it stands
    clock_ms: int = NOON
    cluster: Cluster = field(init=False)
    numbers: "count[int]" = field(default_factory=lambda: count(1))

    def __post_init__(self) -> None:
        self.cluster = Cluster(self.partitions)

    def now_ms(self) -> int:
        return self.clock_ms

    def _send(self, requests: Sequence[Request]) -> list[Answer]:
        """Append the requests in order, decide everything, and answer each with what the
        gateway hears about it from then on (a decision, or an echo of one) or, when it
        hears nothing, with its place in line."""
        heard = self._heard(requests)
        return [
            _answer(heard[r.request_id]) if r.request_id in heard else self._waiting(r)
            for r in requests
        ]

    def _heard(self, requests: Sequence[Request]) -> dict[str, Decision]:
        start = len(self.cluster.effects)
        for request in requests:
            self.cluster.append(request)
        self.cluster.drain()
        heard: dict[str, Decision] = {}
        for batch in self.cluster.effects[start:]:
            for decision in [*(row.decision for row in batch.decisions), *batch.echoes]:
                heard.setdefault(decision.request_id, decision)
        return heard

    def _waiting(self, request: Request) -> Answer:
        assert isinstance(request, messages.Claim), f"no answer to {request}"
        book = self.cluster.cores[self.cluster.partition_of(request)].books[request.coupon_id]
        line = sorted([*book.reserving.values(), *book.line], key=lambda w: w.offset)
        (place,) = [n for n, w in enumerate(line, 1) if w.claim.request_id == request.request_id]
        ticket = mint(SECRET, request.coupon_id, request.request_id)
        return Answer("waiting", ticket, position=place)

    def _claim(self, claim: Claim) -> messages.Claim:
        rid = (request_id_for(SECRET, claim.person, claim.coupon.id, claim.key) if claim.key
               else request_id(next(self.numbers)))  # fmt: skip
        return messages.Claim(rid, claim.coupon.id, claim.person, self.clock_ms, GATEWAY)

    async def create_coupon(self, terms: Terms) -> Coupon:
        n = next(self.numbers)
        start = self.clock_ms if terms.start_ms is None else terms.start_ms
        end = start + DAY_MS if terms.expiry_ms is None else terms.expiry_ms
        spec = CouponSpec(
            f"C{n}", "m", "d", start, end, terms.count, terms.per_user_limit, terms.daily,
            terms.hold_seconds, lock_seconds=terms.lock_seconds,
            redemptions_per_grant=terms.redemptions_per_grant,
            redemptions_per_user=terms.redemptions_per_user,
        )  # fmt: skip
        create = CreateCoupon(request_id(n), coupon_id(n), "admin", spec, self.clock_ms, GATEWAY)
        created = self._heard([create])[create.request_id]
        assert created.outcome == "created" and created.coupon is not None, created
        return Coupon(create.coupon_id, state_at(created.coupon, self.clock_ms), end)

    async def claim(self, coupon: Coupon, person: str, key: str | None = None) -> Answer:
        (answer,) = await self.claims_at_once([Claim(coupon, person, key)])
        return answer

    async def join(self, coupon: Coupon, person: str) -> Answer:
        return await self.claim(coupon, person)

    async def claims_at_once(self, claims: Sequence[Claim]) -> list[Answer]:
        return self._send([self._claim(c) for c in claims])

    async def claims_in_order(self, claims: Sequence[Claim]) -> list[Answer]:
        return [await self.outcome(a) for a in await self.claims_at_once(claims)]

    async def step(
        self, grant: Grant, step: Step, person: str, lock_id: str | None = None
    ) -> Answer:
        rid = request_id(next(self.numbers))
        sent = GrantAction(rid, grant.coupon_id, person, grant.id, step, self.clock_ms, GATEWAY,
                           lock_id)  # fmt: skip
        (answer,) = self._send([sent])
        return answer

    def _decided(self, ticket: str) -> Decision | None:
        """A request's decision, as its ticket finds it."""
        opened = open_ticket(SECRET, ticket)
        assert opened is not None, ticket
        found = [d for d in self.cluster.decisions if d.request_id == opened[1]]
        return found[0] if found else None

    def _pass(self, deadline: int) -> None:
        """Time passes to a deadline: the timer looks a moment before it, and at it."""
        for moment in (deadline - 1, deadline):
            self.clock_ms = max(self.clock_ms, moment)
            self.cluster.tick(self.clock_ms)

    async def outcome(self, waiting: Answer) -> Answer:
        for _ in range(DEADLINES_MAX):
            decided = self._decided(waiting.ticket)
            if decided is not None:
                return _answer(decided)
            deadlines = [d for core in self.cluster.cores for book in core.books.values()
                         if (d := book.next_deadline()) is not None]  # fmt: skip
            assert deadlines, f"nothing will ever decide {waiting}"
            self._pass(min(deadlines))
        return waiting

    async def look(self, waiting: Answer) -> Answer:
        decided = self._decided(waiting.ticket)
        if decided is not None:
            return _answer(decided)
        opened = open_ticket(SECRET, waiting.ticket)
        claims = [c for log in self.cluster.logs for c in log if isinstance(c, messages.Claim)]
        (claim,) = [c for c in claims if (c.coupon_id, c.request_id) == opened]
        return self._waiting(claim)

    async def after_deadline(self, grant: Grant) -> Grant:
        deadline = self.cluster.grants()[grant.id].deadline_ms
        assert deadline is not None, grant
        self._pass(deadline)
        return _grant(self.cluster.grants()[grant.id])

    async def until_expired(self, coupon: Coupon) -> None:
        self.clock_ms = max(self.clock_ms, coupon.expiry_ms)

    async def holders(self, coupon: Coupon) -> list[tuple[str, str]]:
        grants = [g for g in self.cluster.grants().values() if g.coupon_id == coupon.id]
        return [(g.user_id, g.state) for g in sorted(grants, key=lambda g: g.seq)]

    async def stock(self, coupon: Coupon) -> Stock:
        book = self.cluster.cores[self.partition_of(coupon)].books[coupon.id]
        status = book.status()
        held = [state for _, state in await self.holders(coupon) if state == "held"]
        line = len(book.line) + len(book.reserving)
        return Stock(len(held), line, max(status.spec.count - status.issued, 0))

    async def events(self, grant: Grant) -> list[Event]:
        return [
            (e.before, e.after, e.cause)
            for batch in self.cluster.effects
            for e in batch.events
            if e.grant_id == grant.id
        ]

    def partition_of(self, coupon: Coupon) -> int:
        return self.cluster.partition_of(Tick("", coupon.id, 0))

    def days_partition(self, person: str) -> int:
        return self.cluster.partition_of(ReserveDay("", "", person, "", 0))

    def decider_of(self, partition: int) -> int:
        return partition  # each partition's core decides it alone
