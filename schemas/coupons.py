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


def state_at(status: CouponStatus, now_ms: int) -> State:
    spec = status.spec
    if status.closed:
        return "closed"
    if now_ms >= spec.expiry_ms:
        return "expired"
    if status.issued >= spec.count:
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
        "issued": status.issued,
        "remaining": max(spec.count - status.issued, 0),
        "state": state_at(status, now_ms),
    }


def grant_view(grant: Grant) -> dict[str, Any]:
    return {
        "id": grant.id,
        "coupon_id": grant.coupon_id,
        "user_id": grant.user_id,
        "code": grant.code,
        "state": grant.state,
        "granted_at": rfc3339(grant.granted_at_ms),
    }
