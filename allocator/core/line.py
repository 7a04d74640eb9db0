"""Claims and the line: a claim joins its coupon's line, and free units go to the line in
order; with the daily rule the head of the line first asks for the person's day."""

from allocator.core import answers, grant_log
from allocator.core.book import CouponBook
from allocator.core.effects import Cause, Effects, Waiting
from allocator.core.state import CoreState, day_of
from schemas.messages import (
    Claim,
    Grant,
    Outcome,
    ReserveDay,
)


def join(
    partition: CoreState,
    effects: Effects,
    book: CouponBook,
    offset: int,
    claim: Claim,
    cause: Cause,
) -> None:
    if claim.request_id in book.pending:
        return  # a retry of a claim still in line: its decision is on the way
    reason = book.refusal(claim)
    if reason is not None:
        answers.decide(effects, offset, claim, "rejected", reason, claim.at_ms)
        return
    waiting = Waiting(claim, offset)
    book.line.append(waiting)
    book.pending.add(claim.request_id)
    effects.line_put[claim.request_id] = (waiting, False)
    advance(partition, effects, book, cause)


def advance(partition: CoreState, effects: Effects, book: CouponBook, cause: Cause) -> None:
    """Give free units to the line in order; refuse everyone once nothing can free up."""
    while book.line:
        head = book.line[0]
        user_id = head.claim.user_id
        if book.per_user[user_id] >= book.spec.per_user_limit:
            book.line.popleft()
            settle(effects, book, head, "rejected", "already_claimed", cause)
            continue
        if book.clock_ms >= book.spec.expiry_ms:
            return refuse_line(effects, book, "expired", cause)
        if book.free_units() <= 0:
            if book.may_free():
                return None  # a released hold or a refused reservation may free one
            return refuse_line(effects, book, "sold_out", cause)
        if book.per_user[user_id] + book.reserving_users[user_id] >= book.spec.per_user_limit:
            return None  # the person's earlier claim decides this one: wait for it
        book.line.popleft()
        if not book.spec.daily_rule:
            grant = grant_log.give(effects, book, user_id, head.claim.request_id, cause, "claim")
            settle(effects, book, head, "granted", None, cause, grant)
            continue
        book.reserving[head.claim.request_id] = head
        book.reserving_users[user_id] += 1
        effects.line_put[head.claim.request_id] = (head, True)
        day = day_of(head.claim.at_ms, partition.config.day_zone)
        effects.commands.append(
            ReserveDay(head.claim.request_id, book.coupon_id, user_id, day, book.clock_ms)
        )
    return None


def refuse_line(effects: Effects, book: CouponBook, reason: str, cause: Cause) -> None:
    while book.line:
        settle(effects, book, book.line.popleft(), "rejected", reason, cause)


def settle(
    effects: Effects,
    book: CouponBook,
    waiting: Waiting,
    outcome: Outcome,
    reason: str | None,
    cause: Cause,
    grant: Grant | None = None,
) -> None:
    request_id = waiting.claim.request_id
    book.pending.discard(request_id)
    effects.line_put.pop(request_id, None)
    effects.line_removed.add(request_id)
    answers.decide(
        effects, waiting.offset, waiting.claim, outcome, reason, cause.at_ms, grant=grant
    )
