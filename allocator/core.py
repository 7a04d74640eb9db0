"""The allocator's decision core: synchronous, pure, deterministic.

No IO, no clock, no randomness. Time comes from the commands, codes from a keyed PRF,
ids from the log. Feeding the same records to a core with the same starting state always
yields the same effects, which is what lets analysts replay the log (invariant 6).

Time moves for a coupon when one of its commands carries a later time than any before:
holds and locks whose deadline has come lapse right there, before the command itself is
decided. When nobody writes, the allocator appends a `Tick` to the log at the deadline.

The daily rule ("one grant per person per day, across all coupons") crosses partitions.
It is decided in log order too: a claim that may win takes one of the coupon's units and
asks, through the log, the partition that owns the person (`ReserveDay`); that partition
answers in its own log order (`DayReserved`). While units are spoken for, later claims
wait in the coupon's line, so a unit freed by a refusal goes to the next person in order.
"""

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, tzinfo

from allocator import distribution, redemption
from allocator.book import LIVE, CouponBook
from allocator.effects import (
    Cause,
    CodeRow,
    DayRow,
    DecisionRow,
    Effects,
    GrantEvent,
    Loaded,
    Needs,
    Record,
    Waiting,
)
from schemas import storable
from schemas.codes import InvalidFormat, coupon_key
from schemas.messages import (
    REQUESTS,
    AddCodes,
    AssignCode,
    Claim,
    CloseCoupon,
    CouponStatus,
    CreateCoupon,
    DayReserved,
    Decision,
    Distribute,
    Grant,
    GrantAction,
    Outcome,
    Plan,
    ReleaseDay,
    Request,
    ReserveDay,
    Source,
    Tick,
)

GRANT_NAMESPACE = uuid.UUID("6f0b7a52-6c1e-4f5e-9d2b-2f8c1a0e7d31")


@dataclass(frozen=True, slots=True)
class CoreConfig:
    code_secret: bytes
    day_zone: tzinfo = UTC


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
        self._touched: set[str] = set()
        self._named: tuple[set[str], set[str]] = (set(), set())  # coupons, people
        self._named_at: tuple[dict[str, float], dict[str, float]] = ({}, {})

    def forget_idle(self, now: float, idle_s: float) -> int:
        """Drop coupons and people no command has named for `idle_s` (by the caller's clock)
        whose whole state PostgreSQL holds: a coupon with nothing timed and nobody in line
        or waiting for a day; any person's days. A command that names them again reads them
        back, as after a restart. Keeps memory to the working set; returns how many went."""
        cutoff = now - idle_s
        coupons, people = self._named_at
        for named, named_at in zip(self._named, self._named_at, strict=True):
            named_at.update(dict.fromkeys(named, now))
            named.clear()
        idle_books = [
            c for c, book in self.books.items() if coupons.get(c, now) < cutoff and book.settled()
        ]
        idle_people = [u for u in self.user_days if people.get(u, now) < cutoff]
        for coupon_id in idle_books:
            del self.books[coupon_id]
        for user_id in idle_people:
            del self.user_days[user_id]
        self._named_at = (
            {c: coupons.get(c, now) for c in self.books},
            {u: people.get(u, now) for u in self.user_days},
        )
        return len(idle_books) + len(idle_people)

    def needs(self, records: Iterable[Record]) -> Needs:
        needs = Needs()
        for record in records:
            command = record.command
            if record.fault is not None:
                if storable.answerable(command):  # a retry is answered with its first answer
                    needs.request_ids.add(command.request_id)
                elif isinstance(command, DayReserved) and storable.routable(command):
                    needs.coupon_ids.add(command.coupon_id)  # its claim is refused
                continue
            if isinstance(command, ReserveDay | ReleaseDay):
                self._named[1].add(command.user_id)
                if command.user_id not in self.user_days:
                    needs.user_ids.add(command.user_id)
                continue
            self._named[0].add(command.coupon_id)
            book = self.books.get(command.coupon_id)
            if book is None:
                needs.coupon_ids.add(command.coupon_id)
            if isinstance(command, REQUESTS):
                needs.request_ids.add(command.request_id)
            if isinstance(command, GrantAction) and (
                book is None or command.grant_id not in book.grants
            ):
                needs.grant_ids.add(command.grant_id)
            if isinstance(command, CloseCoupon) and command.revoke:
                needs.live_grants_of.add(command.coupon_id)
        return needs

    def load(self, loaded: Loaded) -> None:
        for coupon_id, coupon in loaded.coupons.items():
            if coupon_id not in self.books:
                key = coupon_key(self.config.code_secret, coupon_id)
                book = CouponBook.open(coupon.status, key)
                book.restore(coupon)
                self.books[coupon_id] = book
        for user_id, days in loaded.user_days.items():
            self.user_days.setdefault(user_id, dict(days))
        for grant in loaded.grants:
            known = self.books.get(grant.coupon_id)
            if known is not None and grant.id not in known.grants:
                known.remember(grant)

    def due(self, now_ms: int) -> list[str]:
        """Coupons with a deadline at or before `now_ms`: they need a Tick."""
        return [
            coupon_id
            for coupon_id, book in self.books.items()
            if (deadline := book.next_deadline()) is not None and deadline <= now_ms
        ]

    def decide(self, records: Sequence[Record], decided: Mapping[str, Decision]) -> Effects:
        """Apply a batch in log order. `decided`: earlier decisions of its request ids."""
        assert records, "a batch has at least one record"
        fx = Effects(next_offset=records[-1].offset + 1)
        seen: dict[str, Decision] = dict(decided)
        self._touched = set()
        for record in records:
            command = record.command
            if record.fault is not None and not storable.answerable(command):
                self._refuse(fx, record)  # no decision of its own
                continue
            if isinstance(command, REQUESTS) and command.request_id in seen:
                earlier = seen[command.request_id]
                fx.echoes.append(replace(earlier, reply_to=command.reply_to))
                continue
            before = len(fx.decisions)
            self._apply(fx, record)
            for row in fx.decisions[before:]:
                seen[row.decision.request_id] = row.decision
        for coupon_id in sorted(self._touched):
            fx.changed[coupon_id] = self.books[coupon_id].status()
        return fx

    def _apply(self, fx: Effects, record: Record) -> None:
        command = record.command
        if record.fault is not None:
            return self._refuse(fx, record)
        if isinstance(command, ReserveDay):
            return self._reserve_day(fx, command)
        if isinstance(command, ReleaseDay):
            return self._release_day(fx, command)
        if isinstance(command, CreateCoupon):
            return self._create(fx, record.offset, command)
        book = self.books.get(command.coupon_id)
        if book is None:
            if isinstance(command, REQUESTS):
                _decide(fx, record.offset, command, "rejected", "unknown_coupon", command.at_ms)
            return None
        cause = Cause(command.request_id, record.offset, command.at_ms)
        self._pass_time(fx, book, cause)
        if isinstance(command, Claim):
            self._claim(fx, book, record.offset, command, cause)
        elif isinstance(command, DayReserved):
            self._day_reserved(fx, book, command, cause)
        elif isinstance(command, GrantAction):
            self._grant_action(fx, book, record.offset, command, cause)
        elif isinstance(command, CloseCoupon):
            self._close(fx, book, record.offset, command, cause)
        elif isinstance(command, AddCodes):
            self._add_codes(fx, book, record.offset, command, cause)
        elif isinstance(command, AssignCode):
            self._assign(fx, book, record.offset, command, cause)
        elif isinstance(command, Distribute):
            self._distribute(fx, book, record.offset, command, cause)
        else:
            assert isinstance(command, Tick), f"a command the core does not know: {command}"
            fx.ticked.add(command.coupon_id)
        return None

    # -- coupons --------------------------------------------------------------------------

    def _create(self, fx: Effects, offset: int, command: CreateCoupon) -> None:
        if command.coupon_id in self.books:
            _decide(fx, offset, command, "rejected", "conflict", command.at_ms)
            return
        status = CouponStatus(command.coupon_id, command.spec, 0, False)
        key = coupon_key(self.config.code_secret, command.coupon_id)
        try:
            book = CouponBook.open(status, key)
        except InvalidFormat:  # the gateway checks this; a hand-written command may not
            _decide(fx, offset, command, "rejected", "invalid_coupon", command.at_ms)
            return
        book.clock_ms = command.at_ms
        self.books[command.coupon_id] = book
        status = book.status()
        fx.created.append(status)
        self._touched.add(command.coupon_id)
        _decide(fx, offset, command, "created", None, command.at_ms, coupon=status)

    def _close(
        self, fx: Effects, book: CouponBook, offset: int, command: CloseCoupon, cause: Cause
    ) -> None:
        book.closed = True
        self._refuse_line(fx, book, "closed", cause)
        revoked = 0
        if command.revoke:
            live = sorted((g for g in book.grants.values() if g.state in LIVE), key=_by_seq)
            for grant in live:
                changed = replace(grant, state="revoked", deadline_ms=None, lock_id=None)
                self._change(fx, book, changed, "revoke", cause)
                revoked += 1
        self._touched.add(book.coupon_id)
        _decide(
            fx, offset, command, "applied", None, cause.at_ms, coupon=book.status(), revoked=revoked
        )

    def _add_codes(
        self, fx: Effects, book: CouponBook, offset: int, command: AddCodes, cause: Cause
    ) -> None:
        reason = None
        if not book.uploaded:
            reason = "wrong_code_source"
        elif book.closed:
            reason = "closed"
        elif len(set(command.codes)) < len(command.codes) or book.codes_taken & set(command.codes):
            reason = "duplicate_code"
        if reason is not None:
            _decide(fx, offset, command, "rejected", reason, cause.at_ms)
            return
        for code in command.codes:
            book.codes_uploaded += 1
            book.codes.append(code)
            book.codes_taken.add(code)
            fx.codes_added.append(CodeRow(book.coupon_id, book.codes_uploaded, code))
        self._touched.add(book.coupon_id)
        self._advance(fx, book, cause)  # people may be waiting for codes
        _decide(fx, offset, command, "applied", None, cause.at_ms, coupon=book.status())

    def _assign(
        self, fx: Effects, book: CouponBook, offset: int, command: AssignCode, cause: Cause
    ) -> None:
        reason = _assign_refusal(book, command)
        if reason is not None:
            _decide(fx, offset, command, "rejected", reason, cause.at_ms)
            return
        grant = self._grant(
            fx, book, command.owner_id, command.request_id, cause, "assign", command.code
        )
        _decide(fx, offset, command, "granted", None, cause.at_ms, grant=grant)

    def _distribute(
        self, fx: Effects, book: CouponBook, offset: int, command: Distribute, cause: Cause
    ) -> None:
        if book.closed or cause.at_ms >= book.spec.expiry_ms:
            refused = "closed" if book.closed else "expired"
            _decide(fx, offset, command, "rejected", refused, cause.at_ms)
            return
        plan, reason = distribution.plan(book, command)
        if reason is None and not command.dry_run:
            for user_id, grants in plan.granted:
                for _ in range(grants):
                    self._grant(fx, book, user_id, command.request_id, cause, "distribution")
        outcome: Outcome = "rejected" if reason else "applied"
        _decide(fx, offset, command, outcome, reason, cause.at_ms, plan=plan)

    # -- claims and the line --------------------------------------------------------------

    def _claim(
        self, fx: Effects, book: CouponBook, offset: int, claim: Claim, cause: Cause
    ) -> None:
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
        self._advance(fx, book, cause)

    def _advance(self, fx: Effects, book: CouponBook, cause: Cause) -> None:
        """Give free units to the line in order; refuse everyone once nothing can free up."""
        while book.line:
            head = book.line[0]
            user_id = head.claim.user_id
            if book.per_user[user_id] >= book.spec.per_user_limit:
                book.line.popleft()
                self._settle(fx, book, head, "rejected", "already_claimed", cause)
                continue
            if book.clock_ms >= book.spec.expiry_ms:
                return self._refuse_line(fx, book, "expired", cause)
            if book.free_units() <= 0:
                if book.may_free():
                    return None  # a released hold or a refused reservation may free one
                return self._refuse_line(fx, book, "sold_out", cause)
            if book.per_user[user_id] + book.reserving_users[user_id] >= book.spec.per_user_limit:
                return None  # the person's earlier claim decides this one: wait for it
            book.line.popleft()
            if not book.spec.daily_rule:
                grant = self._grant(fx, book, user_id, head.claim.request_id, cause, "claim")
                self._settle(fx, book, head, "granted", None, cause, grant)
                continue
            book.reserving[head.claim.request_id] = head
            book.reserving_users[user_id] += 1
            fx.line_put[head.claim.request_id] = (head, True)
            day = day_of(head.claim.at_ms, self.config.day_zone)
            fx.commands.append(
                ReserveDay(head.claim.request_id, book.coupon_id, user_id, day, book.clock_ms)
            )
        return None

    def _refuse_line(self, fx: Effects, book: CouponBook, reason: str, cause: Cause) -> None:
        while book.line:
            self._settle(fx, book, book.line.popleft(), "rejected", reason, cause)

    def _settle(
        self,
        fx: Effects,
        book: CouponBook,
        waiting: Waiting,
        outcome: Outcome,
        reason: str | None,
        cause: Cause,
        grant: Grant | None = None,
    ) -> None:
        request_id = waiting.claim.request_id
        book.pending.discard(request_id)
        fx.line_put.pop(request_id, None)
        fx.line_removed.add(request_id)
        _decide(fx, waiting.offset, waiting.claim, outcome, reason, cause.at_ms, grant=grant)

    # -- the daily rule -------------------------------------------------------------------

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

    def _release_day(self, fx: Effects, command: ReleaseDay) -> None:
        days = self.user_days.setdefault(command.user_id, {})
        for day, holder in sorted(days.items()):
            if holder == command.request_id:
                del days[day]
                row = DayRow(command.user_id, day, command.request_id, command.coupon_id)
                fx.days_released.append(row)

    def _day_reserved(
        self,
        fx: Effects,
        book: CouponBook,
        command: DayReserved,
        cause: Cause,
        fault: str | None = None,
    ) -> None:
        waiting = book.reserving.pop(command.request_id, None)
        if waiting is None:
            return  # an answer seen before (the asking batch was published twice)
        user_id = waiting.claim.user_id
        book.reserving_users[user_id] -= 1
        fault = fault or command.fault
        if command.reserved is True and not book.closed and fault is None:
            grant = self._grant(fx, book, user_id, command.request_id, cause, "claim")
            self._settle(fx, book, waiting, "granted", None, cause, grant)
        else:
            if command.reserved is True:  # closed or refused meanwhile: give the day back
                fx.commands.append(
                    ReleaseDay(command.request_id, book.coupon_id, user_id, cause.at_ms)
                )
            reason = "unstorable" if fault else "closed" if book.closed else "daily_limit"
            self._settle(fx, book, waiting, "rejected", reason, cause)
        self._advance(fx, book, cause)

    def _refuse(self, fx: Effects, record: Record) -> None:
        """A record that cannot be stored changes nothing; whoever it speaks for is told.
        A request is refused; a day asked for is answered refused, and the claim that is
        waiting for it is refused; any other record is only noted (fx.unstorable)."""
        command, fault = record.command, record.fault
        assert fault is not None
        fx.unstorable.append(record)
        if storable.answerable(command):
            _refuse_unstorable(fx, record)
        elif isinstance(command, ReserveDay) and storable.routable(command):
            fx.commands.append(
                DayReserved(
                    command.request_id,
                    command.coupon_id,
                    storable.stand_in(command.user_id, storable.USER_ID_CHARS_MAX) or "-",
                    storable.DAY_STAND_IN,
                    False,
                    storable.time_stand_in(command.at_ms),
                    fault=storable.stand_in(fault, storable.FAULT_CHARS_MAX),
                )
            )
        elif isinstance(command, DayReserved) and storable.routable(command):
            book = self.books.get(command.coupon_id)
            if book is not None:
                cause = Cause(command.request_id, record.offset, book.clock_ms)
                self._day_reserved(fx, book, command, cause, fault)

    # -- grants ---------------------------------------------------------------------------

    def _grant(
        self,
        fx: Effects,
        book: CouponBook,
        owner_id: str,
        request_id: str,
        cause: Cause,
        source: Source,
        code: str | None = None,
    ) -> Grant:
        assert book.issued < book.spec.count, "a grant beyond the coupon's count"
        seq = book.last_seq + 1
        book.last_seq = seq
        if code is None:
            code = book.next_code(seq)
        elif book.uploaded:
            book.codes.remove(code)
        if book.uploaded or source == "assign":
            book.codes_taken.add(code)
        if book.uploaded:
            fx.codes_used[(book.coupon_id, code)] = grant_id(book.coupon_id, seq)
        hold_ms = book.spec.hold_seconds * 1000 if source == "claim" else 0
        grant = Grant(
            id=grant_id(book.coupon_id, seq),
            coupon_id=book.coupon_id,
            user_id=owner_id,
            seq=seq,
            code=code,
            state="held" if hold_ms else "assigned",
            granted_at_ms=cause.at_ms,
            request_id=request_id,
            source=source,
            deadline_ms=book.clock_ms + hold_ms if hold_ms else None,
        )
        book.issued += 1
        book.per_user[owner_id] += 1
        book.remember(grant)
        fx.new_grants[grant.id] = grant
        fx.events.append(
            GrantEvent(
                grant.id,
                book.coupon_id,
                None,
                grant.state,
                source,
                request_id,
                cause.offset,
                cause.at_ms,
            )
        )
        self._touched.add(book.coupon_id)
        return grant

    def _change(self, fx: Effects, book: CouponBook, grant: Grant, why: str, cause: Cause) -> None:
        before = book.grants[grant.id]
        book.remember(grant)
        if grant.id in fx.new_grants:
            fx.new_grants[grant.id] = grant
        else:
            fx.grant_changes[grant.id] = grant
        fx.events.append(
            GrantEvent(
                grant.id,
                book.coupon_id,
                before.state,
                grant.state,
                why,
                cause.request_id,
                cause.offset,
                cause.at_ms,
            )
        )
        self._touched.add(book.coupon_id)

    def _give_back(self, fx: Effects, book: CouponBook, grant: Grant, cause: Cause) -> None:
        """A released hold returns its unit (not its code) and the person's day."""
        book.issued -= 1
        book.per_user[grant.user_id] -= 1
        if book.spec.daily_rule and grant.source == "claim":
            fx.commands.append(
                ReleaseDay(grant.request_id, book.coupon_id, grant.user_id, cause.at_ms)
            )

    def _grant_action(
        self, fx: Effects, book: CouponBook, offset: int, command: GrantAction, cause: Cause
    ) -> None:
        grant = book.grants.get(command.grant_id)
        if grant is None:
            _decide(fx, offset, command, "rejected", "unknown_grant", cause.at_ms)
            return
        spec = book.spec
        reason = redemption.refusal(grant, command, spec, book.redeemed_by[grant.user_id])
        if reason is not None:
            _decide(fx, offset, command, "rejected", reason, cause.at_ms, grant=grant)
            return
        changed = redemption.apply(grant, command, spec, book.clock_ms)
        self._change(fx, book, changed, command.action, cause)
        if command.action == "redeem":
            book.redeemed_by[grant.user_id] += 1
        if changed.state == "released":
            self._give_back(fx, book, changed, cause)
        self._advance(fx, book, cause)  # a unit came back, or the last hold became final
        _decide(fx, offset, command, "applied", None, cause.at_ms, grant=changed)

    def _pass_time(self, fx: Effects, book: CouponBook, cause: Cause) -> None:
        """Move the coupon's clock to `cause`: lapse what is due, close the line at expiry."""
        if cause.at_ms <= book.clock_ms:
            return
        book.clock_ms = cause.at_ms
        released = False
        for grant in book.lapsed(book.clock_ms):
            changed, why = redemption.lapse(grant)
            self._change(fx, book, changed, why, cause)
            if changed.state == "released":
                self._give_back(fx, book, changed, cause)
                released = True
        if released or (book.line and book.clock_ms >= book.spec.expiry_ms):
            self._advance(fx, book, cause)


def _by_seq(grant: Grant) -> int:
    return grant.seq


def _assign_refusal(book: CouponBook, command: AssignCode) -> str | None:
    if book.closed:
        return "closed"
    if command.at_ms >= book.spec.expiry_ms:
        return "expired"
    if book.per_user[command.owner_id] >= book.spec.per_user_limit:
        return "already_claimed"
    if book.uploaded:
        if command.code not in book.codes:
            return "code_taken" if command.code in book.codes_taken else "unknown_code"
    elif book.code_format.matches(command.code):
        return "code_conflict"  # a code of the pattern's shape may be generated one day
    elif command.code in book.codes_taken:
        return "code_taken"
    if book.free_units() <= 0:
        return "sold_out"
    return None


def _refuse_unstorable(fx: Effects, record: Record) -> None:
    """A request that holds what cannot be stored changes nothing and is refused; its
    decision names the sender with what can be stored of what they sent."""
    command = record.command
    assert isinstance(command, REQUESTS), "only a request a person sent is answerable"
    decision = Decision(
        request_id=command.request_id,
        coupon_id=command.coupon_id,
        user_id=storable.stand_in(command.user_id, storable.USER_ID_CHARS_MAX),
        outcome="rejected",
        reason="unstorable",
        at_ms=storable.time_stand_in(command.at_ms),
        reply_to=storable.reply_stand_in(command.reply_to),
    )
    fx.decisions.append(DecisionRow(decision, record.offset))


def _decide(
    fx: Effects,
    offset: int,
    command: Request,
    outcome: Outcome,
    reason: str | None,
    at_ms: int,
    grant: Grant | None = None,
    coupon: CouponStatus | None = None,
    plan: Plan | None = None,
    revoked: int = 0,
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
        plan=plan,
        revoked=revoked,
    )
    fx.decisions.append(DecisionRow(decision, offset))
