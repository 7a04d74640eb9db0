"""Decisions as the core writes them: one row per request, at its place in the log."""

from allocator.core.effects import DecisionRow, Effects, Record
from schemas import storable
from schemas.messages import (
    REQUESTS,
    CouponStatus,
    Decision,
    Grant,
    Outcome,
    Plan,
    Request,
)


def decide(
    effects: Effects,
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
    effects.decisions.append(DecisionRow(decision, offset, effects.number(decision.coupon_id)))


def refuse_unstorable(effects: Effects, record: Record) -> None:
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
    effects.decisions.append(
        DecisionRow(decision, record.offset, effects.number(decision.coupon_id))
    )
