"""A grant's steps (confirm, cancel, lock, unlock, redeem) and the passing of time, which
lapses holds and locks whose deadline has come."""

from allocator.core import answers, grant_log, line, redemption
from allocator.core.book import LIVE, CouponBook
from allocator.core.effects import Cause, Effects
from allocator.core.state import CoreState
from schemas.messages import (
    GrantAction,
)


def step(
    partition: CoreState,
    effects: Effects,
    book: CouponBook,
    offset: int,
    command: GrantAction,
    cause: Cause,
) -> None:
    grant = book.grants.get(command.grant_id)
    if grant is None:
        answers.decide(effects, offset, command, "rejected", "unknown_grant", cause.at_ms)
        return
    spec = book.spec
    reason = redemption.refusal(grant, command, spec, book.redeemed_by[grant.user_id])
    if book.revoking and grant.state in LIVE:
        reason = "revoked"  # its slice has not come yet: it is revoked all the same
    if reason is not None:
        answers.decide(effects, offset, command, "rejected", reason, cause.at_ms, grant=grant)
        return
    changed = redemption.apply(grant, command, spec, book.clock_ms)
    grant_log.change(effects, book, changed, command.action, cause)
    if command.action == "redeem":
        book.redeemed_by[grant.user_id] += 1
    if changed.state == "released":
        grant_log.give_back(effects, book, changed, cause)
    line.advance(partition, effects, book, cause)  # a unit came back, or the last hold became final
    answers.decide(effects, offset, command, "applied", None, cause.at_ms, grant=changed)


def pass_time(partition: CoreState, effects: Effects, book: CouponBook, cause: Cause) -> None:
    """Move the coupon's clock to `cause`: lapse what is due, close the line at expiry."""
    if cause.at_ms <= book.clock_ms:
        return
    book.clock_ms = cause.at_ms
    released = False
    for grant in book.lapsed(book.clock_ms):
        changed, why = redemption.lapse(grant)
        grant_log.change(effects, book, changed, why, cause)
        if changed.state == "released":
            grant_log.give_back(effects, book, changed, cause)
            released = True
    if released or (book.line and book.clock_ms >= book.spec.expiry_ms):
        line.advance(partition, effects, book, cause)
