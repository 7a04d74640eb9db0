"""Every problem an answer can be (RFC 9457), with its status and title: one table for
every part. A type's title is the same in every answer; what this answer is about is its
detail. A refusal decided on the log is the problem named after its reason
(schemas/reasons.py), with the reason's own words, whichever part gives it: the allocator's
decision, the gateway's edge or a ticket."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, get_args

from schemas.reasons import Reason

TYPE_BASE = "https://coupons.example/problems/"


@dataclass(frozen=True, slots=True)
class Kind:
    status: int
    title: str


# Refusals of the request itself, and failures of ours or of a dependency.
ANSWERED: Final[Mapping[str, Kind]] = {
    "invalid-request": Kind(400, "Invalid request"),
    "unauthenticated": Kind(401, "Not authenticated"),
    "forbidden": Kind(403, "Forbidden"),
    "not-found": Kind(404, "Not found"),
    "unknown-ticket": Kind(404, "Unknown ticket"),
    "unknown-audience": Kind(404, "Unknown audience"),
    "method-not-allowed": Kind(405, "Method not allowed"),
    "precondition-failed": Kind(412, "Precondition failed"),
    "too-large": Kind(413, "Request too large"),
    "rate-limited": Kind(429, "Too many requests"),
    "too-many-streams": Kind(429, "Too many streams"),
    "internal": Kind(500, "Internal error"),
    "unavailable": Kind(503, "Service unavailable"),
    "overloaded": Kind(503, "Service overloaded"),
    "keys-refreshing": Kind(503, "Signing keys are being refreshed"),
}

# A decision's reasons: each answer carries `reason` too, and its words (reasons.DETAILS).
DECIDED: Final[Mapping[Reason, Kind]] = {
    "sold_out": Kind(409, "Sold out"),
    "not_started": Kind(409, "Not started"),
    "expired": Kind(409, "Expired"),
    "closed": Kind(409, "Coupon closed"),
    "already_claimed": Kind(409, "Already claimed"),
    "daily_limit": Kind(409, "Daily limit reached"),
    "unknown_coupon": Kind(404, "Unknown coupon"),
    "conflict": Kind(409, "Coupon exists"),
    "invalid_coupon": Kind(409, "Invalid coupon"),
    "unknown_grant": Kind(404, "Unknown grant"),
    "locked": Kind(409, "Grant locked"),
    "already_redeemed": Kind(409, "Already redeemed"),
    "invalid_transition": Kind(409, "Not allowed in this state"),
    "hold_expired": Kind(409, "Hold expired"),
    "revoked": Kind(409, "Grant revoked"),
    "redemption_limit": Kind(409, "Redemption limit reached"),
    "wrong_code_source": Kind(409, "Codes cannot be uploaded"),
    "duplicate_code": Kind(409, "Duplicate code"),
    "unknown_code": Kind(409, "Unknown code"),
    "code_taken": Kind(409, "Code taken"),
    "code_conflict": Kind(409, "Code conflicts with the pattern"),
    "per_user_limit": Kind(409, "Per-person limit reached"),
    "insufficient_units": Kind(409, "Not enough units"),
    "unstorable": Kind(409, "Value cannot be stored"),
    "lost": Kind(409, "Request lost"),
    "audience_changed": Kind(409, "Audience changed"),
}
assert set(DECIDED) == set(get_args(Reason)), "every reason is a problem"
# A reason this build does not know (from a newer allocator) still reads as a refusal.
REFUSED = Kind(409, "Request refused")


def slug(reason: str) -> str:
    """A reason's problem type, as the end of its URI."""
    return reason.replace("_", "-")


PROBLEMS: Final[Mapping[str, Kind]] = {
    **ANSWERED,
    **{slug(reason): kind for reason, kind in DECIDED.items()},
}
assert len(PROBLEMS) == len(ANSWERED) + len(DECIDED), "one type, one row"

# What an HTTP status that our code did not choose (aiohttp's own: an unknown route, a
# method the route lacks, a body past its size) is, in this table.
OF_STATUS: Final[Mapping[int, str]] = {
    400: "invalid-request",
    404: "not-found",
    405: "method-not-allowed",
    413: "too-large",
    500: "internal",
}
assert all(PROBLEMS[name].status == status for status, name in OF_STATUS.items())


_BY_REASON: Final[Mapping[str, Kind]] = {str(reason): kind for reason, kind in DECIDED.items()}


def of_reason(reason: str) -> Kind:
    return _BY_REASON.get(reason, REFUSED)
