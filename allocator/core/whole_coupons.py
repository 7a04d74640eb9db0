"""Coupons as wholes: created and closed, codes uploaded and assigned, distributions."""

from dataclasses import replace

from allocator.core import answers, distribution, grant_log, line
from allocator.core.book import LIVE, CouponBook
from allocator.core.budget import REVOKE_SEQ_SLICE
from allocator.core.effects import (
    Cause,
    CodeRow,
    Effects,
)
from allocator.core.state import CoreState
from schemas.codes import InvalidFormat, codes_key
from schemas.messages import (
    AddCodes,
    AssignCode,
    CloseCoupon,
    CouponStatus,
    CreateCoupon,
    Distribute,
    Grant,
    Outcome,
    Revoke,
)


def create(partition: CoreState, effects: Effects, offset: int, command: CreateCoupon) -> None:
    if command.coupon_id in partition.books:
        answers.decide(effects, offset, command, "rejected", "conflict", command.at_ms)
        return
    status = CouponStatus(command.coupon_id, command.spec, 0, False)
    key = codes_key(partition.config.code_secret, command.coupon_id)
    try:
        book = CouponBook.open(status, key)
    except InvalidFormat:  # the gateway checks this; a hand-written command may not
        answers.decide(effects, offset, command, "rejected", "invalid_coupon", command.at_ms)
        return
    book.clock_ms = command.at_ms
    partition.books[command.coupon_id] = book
    status = book.status()
    effects.created.append(status)
    effects.touched.add(command.coupon_id)
    answers.decide(effects, offset, command, "created", None, command.at_ms, coupon=status)


def close(
    effects: Effects, book: CouponBook, offset: int, command: CloseCoupon, cause: Cause
) -> None:
    """Close the coupon; with `revoke`, revoke its live grants: the first slice of sequence
    numbers now, each further one by a Revoke command of its own (`revoke_slice`). Its
    grants count as revoked from now on, whatever slice they are in."""
    book.closed = True
    line.refuse_line(effects, book, "closed", cause)
    revoked = 0
    if command.revoke and not book.revoking:  # a second close joins the revocation going on
        book.revoking = True
        revoked = revoke_slice(effects, book, 0, cause)
    effects.touched.add(book.coupon_id)
    answers.decide(
        effects,
        offset,
        command,
        "applied",
        None,
        cause.at_ms,
        coupon=book.status(),
        revoked=revoked,
    )


def revoke_slice(effects: Effects, book: CouponBook, after_seq: int, cause: Cause) -> int:
    """Revoke the live grants numbered in (after_seq, after_seq + REVOKE_SEQ_SLICE] (the
    shell loads those: Needs.live_grants_of), and ask for the next slice through the log
    while any number is left; how many were revoked."""
    upto = after_seq + REVOKE_SEQ_SLICE
    live = sorted(
        (g for g in book.grants.values() if g.state in LIVE and after_seq < g.seq <= upto),
        key=_by_seq,
    )
    for grant in live:
        changed = replace(grant, state="revoked", deadline_ms=None, lock_id=None)
        grant_log.change(effects, book, changed, "revoke", cause)
    if upto < book.last_seq:
        effects.commands.append(Revoke(cause.request_id, book.coupon_id, upto, cause.at_ms))
    else:
        book.revoking = False
    effects.touched.add(book.coupon_id)
    return len(live)


def add_codes(
    partition: CoreState,
    effects: Effects,
    book: CouponBook,
    offset: int,
    command: AddCodes,
    cause: Cause,
) -> None:
    reason = None
    if not book.uploaded:
        reason = "wrong_code_source"
    elif book.closed:
        reason = "closed"
    elif len(set(command.codes)) < len(command.codes) or book.codes_taken & set(command.codes):
        reason = "duplicate_code"
    if reason is not None:
        answers.decide(effects, offset, command, "rejected", reason, cause.at_ms)
        return
    for code in command.codes:
        book.codes_uploaded += 1
        book.codes.append(code)
        book.codes_taken.add(code)
        effects.codes_added.append(CodeRow(book.coupon_id, book.codes_uploaded, code))
    effects.touched.add(book.coupon_id)
    line.advance(partition, effects, book, cause)  # people may be waiting for codes
    answers.decide(effects, offset, command, "applied", None, cause.at_ms, coupon=book.status())


def assign(
    effects: Effects, book: CouponBook, offset: int, command: AssignCode, cause: Cause
) -> None:
    reason = _assign_refusal(book, command)
    if reason is not None:
        answers.decide(effects, offset, command, "rejected", reason, cause.at_ms)
        return
    grant = grant_log.give(
        effects, book, command.owner_id, command.request_id, cause, "assign", command.code
    )
    answers.decide(effects, offset, command, "granted", None, cause.at_ms, grant=grant)


def distribute(
    effects: Effects, book: CouponBook, offset: int, command: Distribute, cause: Cause
) -> None:
    if book.closed or cause.at_ms >= book.spec.expiry_ms:
        refused = "closed" if book.closed else "expired"
        answers.decide(effects, offset, command, "rejected", refused, cause.at_ms)
        return
    plan, reason = distribution.plan(book, command)
    if reason is None and not command.dry_run:
        for user_id, count in plan.granted:
            for _ in range(count):
                grant_log.give(effects, book, user_id, command.request_id, cause, "distribution")
    outcome: Outcome = "rejected" if reason else "applied"
    answers.decide(effects, offset, command, outcome, reason, cause.at_ms, plan=plan)


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
