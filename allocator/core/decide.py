"""The allocator's decision core: synchronous, pure, deterministic.

No IO, no clock, no randomness. Time comes from the commands, codes from a keyed PRF,
ids from the log. Feeding the same records to a core with the same starting state always
yields the same effects, which is what lets analysts replay the log (invariant 6).

This module holds a partition's state and dispatches each command, in log order, to the
rules of its concept: `coupons` (created, closed, codes, distributions), `line` (claims
and the order units go in), `days` (the daily rule across partitions), `grants` and
`steps` (a grant's life, and time passing: holds and locks whose deadline has come lapse
before a command with a later time is decided; when nobody writes, the allocator appends
a `Tick` to the log at the deadline).
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

from allocator.core import answers, days, line, steps, whole_coupons
from allocator.core.book import CouponBook
from allocator.core.effects import Cause, Effects, Loaded, Needs, Record
from allocator.core.state import CoreConfig, CoreState
from schemas import storable
from schemas.codes import codes_key
from schemas.messages import (
    REQUESTS,
    AddCodes,
    AssignCode,
    Claim,
    CloseCoupon,
    CreateCoupon,
    DayReserved,
    Decision,
    Distribute,
    GrantAction,
    ReleaseDay,
    ReserveDay,
    Revoke,
    Tick,
)


@dataclass
class Named:
    """Which coupons and people commands named since the last look, and when each was
    last named before that (by the caller's clock): what `forget_idle` keeps."""

    coupons: set[str] = field(default_factory=set)
    people: set[str] = field(default_factory=set)
    coupons_at: dict[str, float] = field(default_factory=dict)
    people_at: dict[str, float] = field(default_factory=dict)

    def look(self, now: float) -> None:
        self.coupons_at.update(dict.fromkeys(self.coupons, now))
        self.people_at.update(dict.fromkeys(self.people, now))
        self.coupons.clear()
        self.people.clear()


class PartitionCore(CoreState):
    """The state of one partition's coupons and people, and the rules that change it."""

    def __init__(self, config: CoreConfig) -> None:
        super().__init__(config)
        self.named = Named()

    def forget_idle(self, now: float, idle_s: float) -> int:
        """Drop coupons and people no command has named for `idle_s` (by the caller's clock)
        whose whole state PostgreSQL holds: a coupon with nothing timed and nobody in line
        or waiting for a day; any person's days. A command that names them again reads them
        back, as after a restart. Keeps memory to the working set; returns how many went."""
        cutoff = now - idle_s
        named = self.named
        named.look(now)
        idle_books = [
            c
            for c, book in self.books.items()
            if named.coupons_at.get(c, now) < cutoff and book.settled()
        ]
        idle_people = [u for u in self.user_days if named.people_at.get(u, now) < cutoff]
        for coupon_id in idle_books:
            del self.books[coupon_id]
        for user_id in idle_people:
            del self.user_days[user_id]
        named.coupons_at = {c: named.coupons_at.get(c, now) for c in self.books}
        named.people_at = {u: named.people_at.get(u, now) for u in self.user_days}
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
                self.named.people.add(command.user_id)
                if command.user_id not in self.user_days:
                    needs.user_ids.add(command.user_id)
                continue
            self.named.coupons.add(command.coupon_id)
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
                needs.live_grants_of.add((command.coupon_id, 0))
            if isinstance(command, Revoke):
                needs.live_grants_of.add((command.coupon_id, command.after_seq))
        return needs

    def load(self, loaded: Loaded) -> None:
        for coupon_id, coupon in loaded.coupons.items():
            if coupon_id not in self.books:
                key = codes_key(self.config.code_secret, coupon_id)
                book = CouponBook.open(coupon.status, key)
                book.restore(coupon)
                self.books[coupon_id] = book
        for user_id, their_days in loaded.user_days.items():
            self.user_days.setdefault(user_id, dict(their_days))
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
        effects = Effects(next_offset=records[-1].offset + 1)
        effects.number = partial(self._number, effects)
        seen: dict[str, Decision] = dict(decided)
        for record in records:
            command = record.command
            if record.fault is not None and not storable.answerable(command):
                self._refuse(effects, record)  # no decision of its own
                continue
            if isinstance(command, REQUESTS) and command.request_id in seen:
                earlier = seen[command.request_id]
                effects.echoes.append(replace(earlier, reply_to=command.reply_to))
                continue
            before = len(effects.decisions)
            self._apply(effects, record)
            for row in effects.decisions[before:]:
                seen[row.decision.request_id] = row.decision
        for coupon_id in sorted(effects.touched):
            effects.changed[coupon_id] = self.books[coupon_id].status()
        return effects

    def _number(self, effects: Effects, coupon_id: str) -> int | None:
        """The next of a coupon's decision numbers, taken as the decision is made: so a
        status read at any moment counts every decision made before it (the gateway's
        answers to retries rely on it: gateway/retries.py)."""
        book = self.books.get(coupon_id)
        if book is None:
            return None
        book.decided += 1
        effects.touched.add(coupon_id)
        return book.decided

    def _apply(self, effects: Effects, record: Record) -> None:
        command = record.command
        if record.fault is not None:
            return self._refuse(effects, record)
        if isinstance(command, ReserveDay):
            return days.reserve_day(self, effects, command)
        if isinstance(command, ReleaseDay):
            return days.release_day(self, effects, command)
        if isinstance(command, CreateCoupon):
            return whole_coupons.create(self, effects, record.offset, command)
        book = self.books.get(command.coupon_id)
        if book is None:
            if isinstance(command, REQUESTS):
                at_ms = command.at_ms
                answers.decide(effects, record.offset, command, "rejected", "unknown_coupon", at_ms)
            return None
        cause = Cause(command.request_id, record.offset, command.at_ms)
        steps.pass_time(self, effects, book, cause)
        if isinstance(command, Claim):
            line.join(self, effects, book, record.offset, command, cause)
        elif isinstance(command, DayReserved):
            days.day_reserved(self, effects, book, command, cause)
        elif isinstance(command, GrantAction):
            steps.step(self, effects, book, record.offset, command, cause)
        elif isinstance(command, CloseCoupon):
            whole_coupons.close(effects, book, record.offset, command, cause)
        elif isinstance(command, Revoke):
            whole_coupons.revoke_slice(effects, book, command.after_seq, cause)
        elif isinstance(command, AddCodes):
            whole_coupons.add_codes(self, effects, book, record.offset, command, cause)
        elif isinstance(command, AssignCode):
            whole_coupons.assign(effects, book, record.offset, command, cause)
        elif isinstance(command, Distribute):
            whole_coupons.distribute(effects, book, record.offset, command, cause)
        else:
            assert isinstance(command, Tick), f"a command the core does not know: {command}"
            effects.ticked.add(command.coupon_id)
        return None

    def _refuse(self, effects: Effects, record: Record) -> None:
        """A record that cannot be stored changes nothing; whoever it speaks for is told.
        A request is refused; a day asked for is answered refused, and the claim that is
        waiting for it is refused; any other record is only noted (effects.unstorable)."""
        command, fault = record.command, record.fault
        assert fault is not None
        effects.unstorable.append(record)
        if storable.answerable(command):
            answers.refuse_unstorable(effects, record)
        elif isinstance(command, ReserveDay) and storable.routable(command):
            effects.commands.append(
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
                days.day_reserved(self, effects, book, command, cause, fault)
