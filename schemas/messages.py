"""Messages on the log, and their encoding (orjson).

Times are integer milliseconds since the Unix epoch, in UTC. Every command carries the
time it is decided at, so the allocator's core never reads a clock.
"""

from dataclasses import dataclass
from typing import Any, Literal

import orjson

Outcome = Literal["granted", "rejected", "created"]


@dataclass(frozen=True, slots=True)
class CouponSpec:
    code: str
    message: str
    description: str
    start_ms: int
    expiry_ms: int
    count: int
    per_user_limit: int = 1
    daily_rule: bool = True


@dataclass(frozen=True, slots=True)
class CreateCoupon:
    request_id: str
    coupon_id: str
    user_id: str
    spec: CouponSpec
    at_ms: int
    reply_to: str
    kind: Literal["create_coupon"] = "create_coupon"


@dataclass(frozen=True, slots=True)
class Claim:
    request_id: str
    coupon_id: str
    user_id: str
    at_ms: int
    reply_to: str
    kind: Literal["claim"] = "claim"


@dataclass(frozen=True, slots=True)
class ReserveDay:
    """Asks the partition that owns `user_id` for the person's one grant of `day`."""

    request_id: str
    coupon_id: str
    user_id: str
    day: str
    at_ms: int
    kind: Literal["reserve_day"] = "reserve_day"


@dataclass(frozen=True, slots=True)
class DayReserved:
    """The answer to ReserveDay, sent back to the coupon's partition."""

    request_id: str
    coupon_id: str
    user_id: str
    day: str
    reserved: bool
    at_ms: int
    kind: Literal["day_reserved"] = "day_reserved"


Command = CreateCoupon | Claim | ReserveDay | DayReserved


@dataclass(frozen=True, slots=True)
class Grant:
    id: str
    coupon_id: str
    user_id: str
    seq: int
    code: str
    state: str
    granted_at_ms: int


@dataclass(frozen=True, slots=True)
class CouponStatus:
    """A coupon as the allocator last committed it."""

    coupon_id: str
    spec: CouponSpec
    issued: int
    closed: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    request_id: str
    coupon_id: str
    user_id: str
    outcome: Outcome
    reason: str | None
    at_ms: int
    reply_to: str
    grant: Grant | None = None
    coupon: CouponStatus | None = None


def encode(message: Command | Decision | CouponStatus) -> bytes:
    return orjson.dumps(message)


def _spec(raw: dict[str, Any]) -> CouponSpec:
    return CouponSpec(**raw)


def _status(raw: dict[str, Any]) -> CouponStatus:
    return CouponStatus(**{**raw, "spec": _spec(raw["spec"])})


def decode_command(payload: bytes) -> Command:
    raw: dict[str, Any] = orjson.loads(payload)
    kind = raw.get("kind")
    if kind == "claim":
        return Claim(**raw)
    if kind == "reserve_day":
        return ReserveDay(**raw)
    if kind == "day_reserved":
        return DayReserved(**raw)
    if kind == "create_coupon":
        return CreateCoupon(**{**raw, "spec": _spec(raw["spec"])})
    raise ValueError(f"unknown command kind {kind!r}")


def decode_decision(payload: bytes) -> Decision:
    raw: dict[str, Any] = orjson.loads(payload)
    grant = raw.get("grant")
    coupon = raw.get("coupon")
    return Decision(
        **{
            **raw,
            "grant": Grant(**grant) if grant else None,
            "coupon": _status(coupon) if coupon else None,
        }
    )


def decode_status(payload: bytes) -> CouponStatus:
    return _status(orjson.loads(payload))
