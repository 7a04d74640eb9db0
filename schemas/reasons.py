"""Why a request is refused: every reason the allocator, the gateway's edge or a ticket
gives, with the detail a person reads. The `reason` field of problem+json answers, of
decisions on the log and of the `decisions` table is one of these."""

from collections.abc import Mapping
from typing import Final, Literal, get_args

Reason = Literal[
    "sold_out",
    "not_started",
    "expired",
    "closed",
    "already_claimed",
    "daily_limit",
    "unknown_coupon",
    "conflict",
    "invalid_coupon",
    "unknown_grant",
    "locked",
    "already_redeemed",
    "invalid_transition",
    "hold_expired",
    "revoked",
    "redemption_limit",
    "wrong_code_source",
    "duplicate_code",
    "unknown_code",
    "code_taken",
    "code_conflict",
    "per_user_limit",
    "insufficient_units",
    "unstorable",
    "lost",
    "audience_changed",
]

DETAILS: Final[Mapping[Reason, str]] = {
    "sold_out": "every unit of this coupon has been given out",
    "not_started": "this coupon is not live yet",
    "expired": "this coupon has expired",
    "closed": "this coupon is closed",
    "already_claimed": "you already hold this coupon",
    "daily_limit": "you already received a coupon today",
    "unknown_coupon": "no such coupon",
    "conflict": "a coupon with this id exists already",
    "invalid_coupon": "the coupon's code pattern cannot make codes",
    "unknown_grant": "no such grant",
    "locked": "the grant is locked by another request: unlock it or wait for the lock to lapse",
    "already_redeemed": "the grant has been redeemed",
    "invalid_transition": "the grant is not in a state that allows this",
    "hold_expired": "the hold ran out before it was confirmed; the unit went to the next person",
    "revoked": "the grant was revoked when its coupon was closed",
    "redemption_limit": "you have made as many redemptions of this coupon as it allows",
    "wrong_code_source": "this coupon makes its own codes; codes cannot be uploaded to it",
    "duplicate_code": "a code in the upload is repeated or was uploaded before",
    "unknown_code": "this code was not uploaded to this coupon",
    "code_taken": "this code has been handed out already",
    "code_conflict": "this code has the shape of the coupon's pattern, so it could be generated",
    "per_user_limit": "someone on the list cannot hold that many more grants",
    "insufficient_units": "not enough units are left to give everyone the same",
    "unstorable": "the request holds a value that cannot be stored (a NUL character, invalid"
    " Unicode or a number out of range); nothing was changed",
    "lost": "this request was accepted, but the log that held it was lost before it was"
    " decided; send it again with the same Idempotency-Key",
    "audience_changed": "the audience was saved again since the preview; preview it again",
}
assert set(DETAILS) == set(get_args(Reason)), "every reason has its detail"


_WORDS: Final[dict[str, str]] = {str(reason): words for reason, words in DETAILS.items()}


def detail(reason: str) -> str:
    """The words for a reason; an unknown one (from a newer allocator) speaks for itself."""
    return _WORDS.get(reason, reason)
