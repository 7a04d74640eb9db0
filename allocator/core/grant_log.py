"""Grants: given, changed and given back, each change with its audit row (grant_events)."""

import uuid

from allocator.core.book import CouponBook
from allocator.core.effects import (
    Cause,
    Effects,
    GrantEvent,
)
from schemas.messages import (
    Grant,
    ReleaseDay,
    Source,
)

GRANT_NAMESPACE = uuid.UUID("6f0b7a52-6c1e-4f5e-9d2b-2f8c1a0e7d31")


def grant_id(coupon_id: str, seq: int) -> str:
    return str(uuid.uuid5(GRANT_NAMESPACE, f"{coupon_id}/{seq}"))


def give(
    effects: Effects,
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
        effects.codes_used[(book.coupon_id, code)] = grant_id(book.coupon_id, seq)
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
    effects.new_grants[grant.id] = grant
    effects.events.append(
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
    effects.touched.add(book.coupon_id)
    return grant


def change(effects: Effects, book: CouponBook, grant: Grant, why: str, cause: Cause) -> None:
    before = book.grants[grant.id]
    book.remember(grant)
    if grant.id in effects.new_grants:
        effects.new_grants[grant.id] = grant
    else:
        effects.grant_changes[grant.id] = grant
    effects.events.append(
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
    effects.touched.add(book.coupon_id)


def give_back(effects: Effects, book: CouponBook, grant: Grant, cause: Cause) -> None:
    """A released hold returns its unit (not its code) and the person's day."""
    book.issued -= 1
    book.per_user[grant.user_id] -= 1
    if book.spec.daily_rule and grant.source == "claim":
        effects.commands.append(
            ReleaseDay(grant.request_id, book.coupon_id, grant.user_id, cause.at_ms)
        )
