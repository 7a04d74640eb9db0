"""Messages on the log, and their encoding (orjson).

Times are integer milliseconds since the Unix epoch, in UTC. Every command carries the
time it is decided at, so the allocator's core never reads a clock.
"""

import json
from dataclasses import dataclass
from typing import Any, Literal

import orjson

Outcome = Literal["granted", "rejected", "created", "applied"]
GrantState = Literal["held", "assigned", "locked", "redeemed", "released", "revoked"]
Action = Literal["confirm", "cancel", "disconnect", "lock", "unlock", "redeem"]
Strategy = Literal["fcfs", "random", "equal"]
Source = Literal["claim", "assign", "distribution"]  # how a grant came to be


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
    hold_seconds: int = 0  # 0: a claim is granted outright, no confirmation asked
    release_on_disconnect: bool = False
    lock_seconds: int = 300
    redemptions_per_grant: int = 1
    redemptions_per_user: int = 0  # 0: no limit beyond the grants a person holds
    code_source: Literal["pattern", "uploaded"] = "pattern"
    code_pattern: str = "{random:5}-{random:5}"
    code_alphabet: str = "crockford"


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
    fault: str | None = None  # the ReserveDay could not be stored: the claim is refused
    kind: Literal["day_reserved"] = "day_reserved"


@dataclass(frozen=True, slots=True)
class ReleaseDay:
    """Gives back the day `request_id` took: its held grant lapsed or was cancelled."""

    request_id: str
    coupon_id: str
    user_id: str
    at_ms: int
    kind: Literal["release_day"] = "release_day"


@dataclass(frozen=True, slots=True)
class Tick:
    """The allocator's timer: time has reached a deadline of this coupon."""

    request_id: str
    coupon_id: str
    at_ms: int
    kind: Literal["tick"] = "tick"


@dataclass(frozen=True, slots=True)
class Revoke:
    """The allocator's own: a coupon closed with revocation revokes its live grants a slice
    of sequence numbers at a time, in (after_seq, after_seq + REVOKE_SEQ_SLICE], each slice
    a command of its own so that no batch is long (allocator/core/whole_coupons.py)."""

    request_id: str  # the close's: its grants' events name it
    coupon_id: str
    after_seq: int
    at_ms: int
    kind: Literal["revoke"] = "revoke"


@dataclass(frozen=True, slots=True)
class GrantAction:
    """A step of a grant's life: confirm a hold, lock, unlock, redeem, cancel."""

    request_id: str
    coupon_id: str
    user_id: str
    grant_id: str
    action: Action
    at_ms: int
    reply_to: str
    lock_id: str | None = None
    kind: Literal["grant_action"] = "grant_action"


@dataclass(frozen=True, slots=True)
class CloseCoupon:
    request_id: str
    coupon_id: str
    user_id: str
    revoke: bool
    at_ms: int
    reply_to: str
    kind: Literal["close_coupon"] = "close_coupon"


@dataclass(frozen=True, slots=True)
class AddCodes:
    """Codes an admin uploaded, handed out in this order after any uploaded before."""

    request_id: str
    coupon_id: str
    user_id: str
    codes: tuple[str, ...]
    at_ms: int
    reply_to: str
    kind: Literal["add_codes"] = "add_codes"


@dataclass(frozen=True, slots=True)
class AssignCode:
    """An admin gives one specific code to one person."""

    request_id: str
    coupon_id: str
    user_id: str
    owner_id: str
    code: str
    at_ms: int
    reply_to: str
    kind: Literal["assign_code"] = "assign_code"


@dataclass(frozen=True, slots=True)
class Distribute:
    """An admin hands a coupon to a list of people, all at once or not at all."""

    request_id: str
    coupon_id: str
    user_id: str
    users: tuple[str, ...]
    strategy: Strategy
    per_user: int
    seed: str
    dry_run: bool
    at_ms: int
    reply_to: str
    kind: Literal["distribute"] = "distribute"


Command = (
    CreateCoupon
    | Claim
    | ReserveDay
    | DayReserved
    | ReleaseDay
    | Tick
    | Revoke
    | GrantAction
    | CloseCoupon
    | AddCodes
    | AssignCode
    | Distribute
)
# Commands a person sent, answered with a decision (the others are the allocator's own).
Request = CreateCoupon | Claim | GrantAction | CloseCoupon | AddCodes | AssignCode | Distribute
REQUESTS = (CreateCoupon, Claim, GrantAction, CloseCoupon, AddCodes, AssignCode, Distribute)


@dataclass(frozen=True, slots=True)
class Grant:
    id: str
    coupon_id: str
    user_id: str
    seq: int
    code: str
    state: GrantState
    granted_at_ms: int
    request_id: str = ""
    source: Source = "claim"
    deadline_ms: int | None = None  # a hold's or a lock's end
    lock_id: str | None = None
    redemptions: int = 0


@dataclass(frozen=True, slots=True)
class CouponStatus:
    """A coupon as the allocator last committed it."""

    coupon_id: str
    spec: CouponSpec
    issued: int  # units given out and not given back: held ones included
    closed: bool = False
    held: int = 0
    codes_left: int | None = None  # uploaded codes not handed out yet
    # How many requests about it have been decided: its decisions are numbered 1.. this,
    # so whoever holds that many of them holds every one made when this was committed.
    decided: int = 0
    revoking: bool = False  # closed with revocation, and not every slice revoked yet


@dataclass(frozen=True, slots=True)
class Plan:
    """What a distribution gives (or, as a dry run, would give) to whom."""

    strategy: Strategy
    dry_run: bool
    granted: tuple[tuple[str, int], ...]
    skipped: tuple[tuple[str, str], ...]


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
    plan: Plan | None = None
    revoked: int = 0


@dataclass(frozen=True, slots=True)
class EdgeAnswers:
    """Claims one gateway answered on one coupon without the log, in [from_ms, to_ms), the
    first at first_ms and the last at last_ms: by reason (`sold_out`, `not_started`,
    `expired`, `closed`), and `retry` for a retried request answered with its earlier
    decision. On coupon.edge, keyed by coupon."""

    coupon_id: str
    gateway_id: str
    from_ms: int
    to_ms: int
    reasons: dict[str, int]
    first_ms: int = 0
    last_ms: int = 0


def decode_edge(payload: bytes) -> EdgeAnswers:
    return EdgeAnswers(**orjson.loads(payload))


# The most bytes one message of ours may hold, as `encode` makes it. Apache Kafka takes a
# record batch of at most `message.max.bytes` (1 MiB + 12 by default) and aiokafka sends
# one of at most `max_request_size` (1 MiB): the rest is room for the key, the record's
# framing and the batch header (runtime/kafka.py holds both limits to this at start).
MESSAGE_BYTES_MAX = 896 * 1024
# The most a person's command may hold: its decision echoes it (a distribution's plan
# names each person once more, with a count or a reason: at most 24 bytes more each, for
# at most 5,000 people), and must still be a message.
COMMAND_BYTES_MAX = 768 * 1024


def encode(message: Command | Decision | CouponStatus | EdgeAnswers) -> bytes:
    return orjson.dumps(message)


def _spec(raw: dict[str, Any]) -> CouponSpec:
    return CouponSpec(**raw)


def _status(raw: dict[str, Any]) -> CouponStatus:
    return CouponStatus(**{**raw, "spec": _spec(raw["spec"])})


def _plan(raw: dict[str, Any]) -> Plan:
    return Plan(
        **{
            **raw,
            "granted": tuple((u, n) for u, n in raw["granted"]),
            "skipped": tuple((u, r) for u, r in raw["skipped"]),
        }
    )


COMMANDS: dict[str, Any] = {
    "claim": Claim,
    "reserve_day": ReserveDay,
    "day_reserved": DayReserved,
    "release_day": ReleaseDay,
    "tick": Tick,
    "revoke": Revoke,
    "grant_action": GrantAction,
    "close_coupon": CloseCoupon,
    "assign_code": AssignCode,
}


def decode_command(payload: bytes) -> Command:
    """The command a record holds; ValueError, TypeError or KeyError when it holds none.
    What it holds is not checked here: `schemas.storable.command_fault` does that."""
    try:
        raw = orjson.loads(payload)
    except orjson.JSONDecodeError:
        # orjson refuses an escaped lone surrogate; the standard parser reads it, so such a
        # command is refused with a decision (command_fault) rather than skipped unanswered.
        raw = json.loads(payload)
    if not isinstance(raw, dict):
        raise ValueError("a command is a JSON object")
    kind = raw.get("kind")
    if kind == "create_coupon":
        return CreateCoupon(**{**raw, "spec": _spec(raw["spec"])})
    if kind == "add_codes":
        return AddCodes(**{**raw, "codes": tuple(raw["codes"])})
    if kind == "distribute":
        return Distribute(**{**raw, "users": tuple(raw["users"])})
    if isinstance(kind, str) and kind in COMMANDS:
        command: Command = COMMANDS[kind](**raw)
        return command
    raise ValueError(f"unknown command kind {kind!r}")


def decode_decision(payload: bytes) -> Decision:
    raw: dict[str, Any] = orjson.loads(payload)
    grant = raw.get("grant")
    coupon = raw.get("coupon")
    plan = raw.get("plan")
    return Decision(
        **{
            **raw,
            "grant": Grant(**grant) if grant else None,
            "coupon": _status(coupon) if coupon else None,
            "plan": _plan(plan) if plan else None,
        }
    )


def decode_status(payload: bytes) -> CouponStatus:
    return _status(orjson.loads(payload))
