"""A grant's life as a state machine, as pure functions.

    held ──confirm──▶ assigned ──lock──▶ locked ──redeem──▶ redeemed
      │                  ▲  │◀──unlock / lapse──┘               ▲
      └─cancel / lapse─▶ released       └──────────redeem───────┘

`released`, `revoked` and `redeemed` are terminal. A grant that may be redeemed more than
once goes back to `assigned` after each redemption but its last.
"""

from dataclasses import replace

from schemas.messages import Action, CouponSpec, Grant, GrantAction, GrantState

TERMINAL: frozenset[GrantState] = frozenset({"redeemed", "released", "revoked"})
HOLD_ACTIONS: frozenset[Action] = frozenset({"confirm", "cancel", "disconnect"})


def refusal(grant: Grant, command: GrantAction, spec: CouponSpec, redeemed_by: int) -> str | None:
    """Why `command` cannot happen to `grant` now, or None when it can."""
    state, action = grant.state, command.action
    if state == "redeemed":
        return "already_redeemed"
    if state == "revoked":
        return "revoked"
    if state == "released":
        return "hold_expired" if action == "confirm" else "invalid_transition"
    if action == "disconnect" and not spec.release_on_disconnect:
        return "invalid_transition"
    if action in HOLD_ACTIONS:
        return None if state == "held" else "invalid_transition"
    if state == "held":
        return "invalid_transition"  # a hold is confirmed before it is used
    if action == "unlock":
        if state != "locked":
            return "invalid_transition"
        return None if command.lock_id == grant.lock_id else "locked"
    if command.at_ms >= spec.expiry_ms:
        return "expired"
    if state == "locked" and (action == "lock" or command.lock_id != grant.lock_id):
        return "locked"
    limit = spec.redemptions_per_user
    if action == "redeem" and limit and redeemed_by >= limit:
        return "redemption_limit"
    return None


def apply(grant: Grant, command: GrantAction, spec: CouponSpec, now_ms: int) -> Grant:
    """The grant after `command`, which `refusal` allowed; `now_ms`: the coupon's clock."""
    action = command.action
    if action == "confirm":
        return replace(grant, state="assigned", deadline_ms=None)
    if action in HOLD_ACTIONS:
        return replace(grant, state="released", deadline_ms=None)
    if action == "lock":
        deadline = now_ms + spec.lock_seconds * 1000
        return replace(grant, state="locked", lock_id=command.request_id, deadline_ms=deadline)
    if action == "unlock":
        return replace(grant, state="assigned", lock_id=None, deadline_ms=None)
    redemptions = grant.redemptions + 1
    state: GrantState = "redeemed" if redemptions >= spec.redemptions_per_grant else "assigned"
    return replace(grant, state=state, redemptions=redemptions, lock_id=None, deadline_ms=None)


def lapse(grant: Grant) -> tuple[Grant, str]:
    """A deadline passed: a hold is released, a lock opens again."""
    if grant.state == "held":
        return replace(grant, state="released", deadline_ms=None), "hold_lapsed"
    assert grant.state == "locked", "only held and locked grants have deadlines"
    return replace(grant, state="assigned", lock_id=None, deadline_ms=None), "lock_lapsed"
