"""The allocator's decision core: synchronous, pure, deterministic.

No IO, no clock, no randomness. Time comes from the commands, codes from a keyed PRF,
ids from the log. Feeding the same records to a core with the same starting state always
yields the same effects, which is what lets analysts replay the log (invariant 6).

The daily rule ("one grant per person per day, across all coupons") crosses partitions.
It is decided in log order too: a claim that may win takes one of the coupon's units and
asks, through the log, the partition that owns the person (`ReserveDay`); that partition
answers in its own log order (`DayReserved`). While units are spoken for, later claims
wait in the coupon's line, so a unit freed by a refusal goes to the next person in order.
"""

import uuid
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo

from allocator.codes import code_for, coupon_key
from schemas.messages import (
    Claim,
    Command,
    CouponSpec,
    CouponStatus,
    CreateCoupon,
    DayReserved,
    Decision,
    Grant,
    Outcome,
    ReserveDay,
)

GRANT_NAMESPACE = uuid.UUID("6f0b7a52-6c1e-4f5e-9d2b-2f8c1a0e7d31")


@dataclass(frozen=True, slots=True)
class Record:
    """One command at its place in the partition's log."""

    offset: int
    command: Command


@dataclass(frozen=True, slots=True)
class CoreConfig:
    code_secret: bytes
    day_zone: tzinfo = UTC


@dataclass(frozen=True, slots=True)
class Waiting:
    """A claim accepted by the allocator and not decided yet."""

    claim: Claim
    offset: int


@dataclass(slots=True)
class LoadedCoupon:
    """What the IO shell reads back from PostgreSQL to rebuild one coupon's book."""

    status: CouponStatus
    held: Mapping[str, int]
    line: Sequence[Waiting]
    reserving: Sequence[Waiting]


@dataclass(slots=True)
class Needs:
    """What the core must know before it can decide a batch."""

    coupon_ids: set[str]
    user_ids: set[str]
    request_ids: set[str]


@dataclass(slots=True)
class Loaded:
    coupons: Mapping[str, LoadedCoupon] = field(default_factory=dict)
    user_days: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DecisionRow:
    decision: Decision
    offset: int


@dataclass(frozen=True, slots=True)
class DayRow:
    user_id: str
    day: str
    request_id: str
    coupon_id: str


@dataclass(slots=True)
class Effects:
    """Everything one batch changes; written in one transaction with `next_offset`."""

    next_offset: int
    created: list[CouponStatus] = field(default_factory=list)
    changed: dict[str, CouponStatus] = field(default_factory=dict)
    grants: list[Grant] = field(default_factory=list)
    decisions: list[DecisionRow] = field(default_factory=list)
    echoes: list[Decision] = field(default_factory=list)
    line_put: dict[str, tuple[Waiting, bool]] = field(default_factory=dict)
    line_removed: set[str] = field(default_factory=set)
    days: list[DayRow] = field(default_factory=list)
    commands: list[ReserveDay | DayReserved] = field(default_factory=list)


@dataclass(slots=True)
class CouponBook:
    coupon_id: str
    spec: CouponSpec
    code_key: bytes
    issued: int = 0
    closed: bool = False
    held: Counter[str] = field(default_factory=Counter)
    line: deque[Waiting] = field(default_factory=deque)
    reserving: dict[str, Waiting] = field(default_factory=dict)
    reserving_users: Counter[str] = field(default_factory=Counter)
    pending: set[str] = field(default_factory=set)

    def status(self) -> CouponStatus:
        return CouponStatus(self.coupon_id, self.spec, self.issued, self.closed)

    def refusal(self, claim: Claim) -> str | None:
        """Why a claim can be refused on arrival, before it takes a place in line."""
        if self.closed:
            return "closed"
        if claim.at_ms < self.spec.start_ms:
            return "not_started"
        if claim.at_ms >= self.spec.expiry_ms:
            return "expired"
        if self.held[claim.user_id] >= self.spec.per_user_limit:
            return "already_claimed"
        if self.issued >= self.spec.count:
            return "sold_out"
        return None


def day_of(at_ms: int, zone: tzinfo) -> str:
    return datetime.fromtimestamp(at_ms / 1000, tz=zone).date().isoformat()


def grant_id(coupon_id: str, seq: int) -> str:
    return str(uuid.uuid5(GRANT_NAMESPACE, f"{coupon_id}/{seq}"))


class PartitionCore:
    """The state of one partition's coupons and people, and the rules that change it."""

    def __init__(self, config: CoreConfig) -> None:
        self.config = config
        self.books: dict[str, CouponBook] = {}
        self.user_days: dict[str, dict[str, str]] = {}

    def needs(self, records: Iterable[Record]) -> Needs:
        needs = Needs(set(), set(), set())
        for record in records:
            command = record.command
            if isinstance(command, ReserveDay):
                if command.user_id not in self.user_days:
                    needs.user_ids.add(command.user_id)
                continue
            if command.coupon_id not in self.books:
                needs.coupon_ids.add(command.coupon_id)
            if isinstance(command, Claim | CreateCoupon):
                needs.request_ids.add(command.request_id)
        return needs

    def load(self, loaded: Loaded) -> None:
        for coupon_id, coupon in loaded.coupons.items():
            book = self._new_book(coupon.status)
            book.held.update(coupon.held)
            for waiting in coupon.reserving:
                book.reserving[waiting.claim.request_id] = waiting
                book.reserving_users[waiting.claim.user_id] += 1
                book.pending.add(waiting.claim.request_id)
            for waiting in coupon.line:
                book.line.append(waiting)
                book.pending.add(waiting.claim.request_id)
            self.books[coupon_id] = book
        for user_id, days in loaded.user_days.items():
            self.user_days[user_id] = dict(days)

    def decide(self, records: Sequence[Record], decided: Mapping[str, Decision]) -> Effects:
        """Apply a batch in log order. `decided`: earlier decisions of its request ids."""
        assert records, "a batch has at least one record"
        fx = Effects(next_offset=records[-1].offset + 1)
        seen: dict[str, Decision] = dict(decided)
        for record in records:
            command = record.command
            if isinstance(command, Claim | CreateCoupon) and command.request_id in seen:
                earlier = seen[command.request_id]
                fx.echoes.append(replace(earlier, reply_to=command.reply_to))
                continue
            before = len(fx.decisions)
            if isinstance(command, Claim):
                self._claim(fx, record.offset, command)
            elif isinstance(command, CreateCoupon):
                self._create(fx, record.offset, command)
            elif isinstance(command, ReserveDay):
                self._reserve_day(fx, command)
            else:
                self._day_reserved(fx, command)
            for row in fx.decisions[before:]:
                seen[row.decision.request_id] = row.decision
        return fx

    # -- commands -------------------------------------------------------------------------

    def _create(self, fx: Effects, offset: int, command: CreateCoupon) -> None:
        if command.coupon_id in self.books:
            _decide(fx, offset, command, "rejected", "conflict", command.at_ms)
            return
        book = self._new_book(CouponStatus(command.coupon_id, command.spec, 0, False))
        self.books[command.coupon_id] = book
        status = book.status()
        fx.created.append(status)
        fx.changed[command.coupon_id] = status
        _decide(fx, offset, command, "created", None, command.at_ms, coupon=status)

    def _claim(self, fx: Effects, offset: int, claim: Claim) -> None:
        book = self.books.get(claim.coupon_id)
        if book is None:
            _decide(fx, offset, claim, "rejected", "unknown_coupon", claim.at_ms)
            return
        if claim.request_id in book.pending:
            return  # a retry of a claim still in line: its decision is on the way
        reason = book.refusal(claim)
        if reason is not None:
            _decide(fx, offset, claim, "rejected", reason, claim.at_ms)
            return
        waiting = Waiting(claim, offset)
        book.line.append(waiting)
        book.pending.add(claim.request_id)
        fx.line_put[claim.request_id] = (waiting, False)
        self._advance(fx, book, claim.at_ms)

    def _reserve_day(self, fx: Effects, command: ReserveDay) -> None:
        days = self.user_days.setdefault(command.user_id, {})
        holder = days.get(command.day)
        if holder is None:
            days[command.day] = command.request_id
            fx.days.append(
                DayRow(command.user_id, command.day, command.request_id, command.coupon_id)
            )
        reserved = holder is None or holder == command.request_id
        fx.commands.append(
            DayReserved(
                command.request_id,
                command.coupon_id,
                command.user_id,
                command.day,
                reserved,
                command.at_ms,
            )
        )

    def _day_reserved(self, fx: Effects, command: DayReserved) -> None:
        book = self.books.get(command.coupon_id)
        waiting = book.reserving.pop(command.request_id, None) if book else None
        if book is None or waiting is None:
            return  # an answer seen before (the asking batch was published twice)
        book.reserving_users[waiting.claim.user_id] -= 1
        if command.reserved:
            self._grant(fx, book, waiting, command.at_ms)
        else:
            self._settle(fx, book, waiting, "rejected", "daily_limit", command.at_ms)
        self._advance(fx, book, command.at_ms)

    # -- the line -------------------------------------------------------------------------

    def _advance(self, fx: Effects, book: CouponBook, at_ms: int) -> None:
        """Give free units to the line in order; refuse everyone once nothing can free up."""
        while book.line:
            if book.issued + len(book.reserving) >= book.spec.count:
                if book.reserving:
                    return  # a refused reservation may still free a unit
                while book.line:
                    self._settle(fx, book, book.line.popleft(), "rejected", "sold_out", at_ms)
                return
            head = book.line[0]
            user_id = head.claim.user_id
            if book.held[user_id] >= book.spec.per_user_limit:
                book.line.popleft()
                self._settle(fx, book, head, "rejected", "already_claimed", at_ms)
                continue
            if book.held[user_id] + book.reserving_users[user_id] >= book.spec.per_user_limit:
                return  # the person's earlier claim decides this one: wait for it
            book.line.popleft()
            if not book.spec.daily_rule:
                self._grant(fx, book, head, head.claim.at_ms)
                continue
            book.reserving[head.claim.request_id] = head
            book.reserving_users[user_id] += 1
            fx.line_put[head.claim.request_id] = (head, True)
            claim = head.claim
            fx.commands.append(
                ReserveDay(
                    claim.request_id,
                    claim.coupon_id,
                    user_id,
                    day_of(claim.at_ms, self.config.day_zone),
                    claim.at_ms,
                )
            )

    def _grant(self, fx: Effects, book: CouponBook, waiting: Waiting, at_ms: int) -> None:
        assert book.issued < book.spec.count, "a grant beyond the coupon's count"
        book.issued += 1
        claim = waiting.claim
        book.held[claim.user_id] += 1
        seq = book.issued
        grant = Grant(
            id=grant_id(book.coupon_id, seq),
            coupon_id=book.coupon_id,
            user_id=claim.user_id,
            seq=seq,
            code=code_for(book.code_key, seq),
            state="assigned",
            granted_at_ms=at_ms,
        )
        fx.grants.append(grant)
        fx.changed[book.coupon_id] = book.status()
        self._settle(fx, book, waiting, "granted", None, at_ms, grant)

    def _settle(
        self,
        fx: Effects,
        book: CouponBook,
        waiting: Waiting,
        outcome: Outcome,
        reason: str | None,
        at_ms: int,
        grant: Grant | None = None,
    ) -> None:
        request_id = waiting.claim.request_id
        book.pending.discard(request_id)
        fx.line_put.pop(request_id, None)
        fx.line_removed.add(request_id)
        _decide(fx, waiting.offset, waiting.claim, outcome, reason, at_ms, grant=grant)

    def _new_book(self, status: CouponStatus) -> CouponBook:
        return CouponBook(
            coupon_id=status.coupon_id,
            spec=status.spec,
            code_key=coupon_key(self.config.code_secret, status.coupon_id),
            issued=status.issued,
            closed=status.closed,
        )


def _decide(
    fx: Effects,
    offset: int,
    command: Claim | CreateCoupon,
    outcome: Outcome,
    reason: str | None,
    at_ms: int,
    grant: Grant | None = None,
    coupon: CouponStatus | None = None,
) -> None:
    decision = Decision(
        request_id=command.request_id,
        coupon_id=command.coupon_id,
        user_id=command.user_id,
        outcome=outcome,
        reason=reason,
        at_ms=at_ms,
        reply_to=command.reply_to,
        grant=grant,
        coupon=coupon,
    )
    fx.decisions.append(DecisionRow(decision, offset))
