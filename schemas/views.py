"""What a coupon looks like from outside: its state at a moment, and its JSON view."""

from datetime import UTC, datetime
from typing import Any, Literal

from schemas.messages import CouponStatus, Grant

State = Literal["scheduled", "live", "sold_out", "closed", "expired"]

# Rejections the gateway may give at the edge, from a coupon's status alone.
EDGE_REASONS: dict[State, str] = {
    "scheduled": "not_started",
    "sold_out": "sold_out",
    "closed": "closed",
    "expired": "expired",
}


def really_gone(status: CouponStatus) -> bool:
    """No unit can come back: every one is given for good, or no code is left.
    (Held units may come back, so while some are held the line stays open.)"""
    return status.issued - status.held >= status.spec.count or status.codes_left == 0


def state_at(status: CouponStatus, now_ms: int) -> State:
    spec = status.spec
    if status.closed:
        return "closed"
    if now_ms >= spec.expiry_ms:
        return "expired"
    if really_gone(status):
        return "sold_out"
    if now_ms < spec.start_ms:
        return "scheduled"
    return "live"


def rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def coupon_view(status: CouponStatus, now_ms: int) -> dict[str, Any]:
    spec = status.spec
    return {
        "id": status.coupon_id,
        "code": spec.code,
        "message": spec.message,
        "description": spec.description,
        "start_time": rfc3339(spec.start_ms),
        "expiry": rfc3339(spec.expiry_ms),
        "count": spec.count,
        "per_user_limit": spec.per_user_limit,
        "daily_limit": spec.daily_rule,
        "hold_seconds": spec.hold_seconds,
        "release_on_disconnect": spec.release_on_disconnect,
        "lock_seconds": spec.lock_seconds,
        "redemptions_per_grant": spec.redemptions_per_grant,
        "redemptions_per_user": spec.redemptions_per_user,
        "code_source": spec.code_source,
        "code_pattern": spec.code_pattern,
        "code_alphabet": spec.code_alphabet,
        "issued": status.issued,
        "held": status.held,
        "remaining": max(spec.count - status.issued, 0),
        "codes_left": status.codes_left,
        "state": state_at(status, now_ms),
    }


def grant_view(grant: Grant) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": grant.id,
        "coupon_id": grant.coupon_id,
        "user_id": grant.user_id,
        "code": grant.code,
        "state": grant.state,
        "granted_at": rfc3339(grant.granted_at_ms),
        "source": grant.source,
        "redemptions": grant.redemptions,
    }
    if grant.deadline_ms is not None:
        # A hold must be confirmed, or a lock used, before this.
        view["expires_at"] = rfc3339(grant.deadline_ms)
    return view
