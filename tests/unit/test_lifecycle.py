"""A grant's life in the core: codes, closing, bulk grants, and random lifecycles by
property. Holds, the line, locks and redemption are the behaviour suite's
(tests/behaviour/scenarios.py), run here by tests/unit/test_behaviour.py."""

from collections import Counter
from dataclasses import replace
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from allocator.core.budget import REVOKE_SEQ_SLICE
from schemas.messages import (
    AddCodes,
    AssignCode,
    Claim,
    CloseCoupon,
    CreateCoupon,
    Decision,
    Distribute,
    GrantAction,
    Revoke,
    Strategy,
)
from tests.support.simulation import NOON, Cluster, claim, coupon_id, create, request_id

TICK_MS = 100
_ids = iter(range(10**6, 10**7))


def rid() -> str:
    return request_id(next(_ids))


def coupon(n: int, count: int, **spec: Any) -> CreateCoupon:
    made = create(n, count, daily=spec.pop("daily_rule", False))
    return replace(made, spec=replace(made.spec, **spec))


def act(grant_id: str, action: str, at: int, user: str = "u", **kw: Any) -> GrantAction:
    return GrantAction(rid(), coupon_id(1), user, grant_id, action, at, "r", **kw)  # type: ignore[arg-type]


def last(cluster: Cluster) -> Decision:
    return cluster.decisions[-1]


def send(cluster: Cluster, command: Any) -> Decision:
    cluster.append(command)
    cluster.drain()
    return last(cluster)


def granted(cluster: Cluster, user: str, at: int = NOON + 1) -> str:
    decision = send(cluster, Claim(rid(), coupon_id(1), user, at, "r"))
    assert decision.grant is not None, decision
    return decision.grant.id


# -- codes --------------------------------------------------------------------------------


def test_uploaded_codes_go_out_in_order_and_running_out_is_sold_out() -> None:
    cluster = Cluster(2)
    send(cluster, coupon(1, 10, code_source="uploaded"))
    assert (
        send(cluster, AddCodes(rid(), coupon_id(1), "admin", ("A1", "A2"), NOON, "r")).outcome
        == "applied"
    )
    dup = send(cluster, AddCodes(rid(), coupon_id(1), "admin", ("A3", "A1"), NOON, "r"))
    assert (dup.outcome, dup.reason) == ("rejected", "duplicate_code")
    given = send(cluster, AssignCode(rid(), coupon_id(1), "admin", "vip", "A2", NOON, "r"))
    unknown = send(cluster, AssignCode(rid(), coupon_id(1), "admin", "eve", "ZZ", NOON, "r"))
    again = send(cluster, AssignCode(rid(), coupon_id(1), "admin", "eve", "A2", NOON, "r"))
    assert given.grant and given.grant.code == "A2"
    assert (unknown.reason, again.reason) == ("unknown_code", "code_taken")
    codes = [send(cluster, claim(i, 1, f"u{i}")) for i in range(2)]
    assert [d.grant.code if d.grant else d.reason for d in codes] == ["A1", "sold_out"]


def test_an_admin_assigns_one_specific_code() -> None:
    cluster = Cluster(1)
    send(cluster, coupon(1, 5, code_pattern="VIP-{random:6}", code_alphabet="digits"))
    vanity = send(cluster, AssignCode(rid(), coupon_id(1), "admin", "bob", "BOB-2026", NOON, "r"))
    assert vanity.grant and (vanity.grant.code, vanity.grant.user_id) == ("BOB-2026", "bob")
    again = send(cluster, AssignCode(rid(), coupon_id(1), "admin", "eve", "BOB-2026", NOON, "r"))
    shaped = send(cluster, AssignCode(rid(), coupon_id(1), "admin", "eve", "VIP-123456", NOON, "r"))
    assert (again.reason, shaped.reason) == ("code_taken", "code_conflict")
    code = send(cluster, claim(1, 1, "carol")).grant
    assert code and code.code.startswith("VIP-") and code.code[4:].isdigit()


# -- closing ------------------------------------------------------------------------------


def test_closing_refuses_the_line_and_revokes_what_is_outstanding() -> None:
    cluster = Cluster(1)
    send(cluster, coupon(1, 2, hold_seconds=60))
    grant = granted(cluster, "a")
    redeemed = granted(cluster, "b")
    send(cluster, act(grant, "confirm", NOON + 2, user="a"))
    send(cluster, act(redeemed, "confirm", NOON + 2, user="b"))
    send(cluster, act(redeemed, "redeem", NOON + 3, user="b"))
    closed = send(cluster, CloseCoupon(rid(), coupon_id(1), "admin", True, NOON + 4, "r"))
    assert closed.revoked == 1 and closed.coupon and closed.coupon.closed
    states = {g.id: g.state for g in cluster.grants().values()}
    assert (states[grant], states[redeemed]) == ("revoked", "redeemed")
    assert send(cluster, claim(9, 1, "c", at=NOON + 5)).reason == "closed"


def test_a_big_revocation_goes_a_slice_at_a_time_and_refuses_what_it_has_not_reached() -> None:
    """Issue 23, 2: revoking every grant in one batch took minutes; each slice is now a
    command of its own, and a grant not reached yet is revoked all the same."""
    cluster = Cluster(1)
    people = tuple(f"p{n}" for n in range(5_000))
    send(cluster, coupon(1, 5_000))
    send(cluster, Distribute(rid(), coupon_id(1), "admin", people, "fcfs", 1, "s", False,
                             NOON + 1, "r"))  # fmt: skip
    last_grant = max(cluster.grants().values(), key=lambda g: g.seq)
    cluster.append(CloseCoupon(rid(), coupon_id(1), "admin", True, NOON + 2, "r"))
    cluster.append(act(last_grant.id, "redeem", NOON + 3, user=last_grant.user_id))
    cluster.drain()
    closed, redeem = cluster.decisions[-2:]
    assert closed.revoked == REVOKE_SEQ_SLICE and closed.coupon and closed.coupon.revoking
    assert (redeem.outcome, redeem.reason) == ("rejected", "revoked")
    slices = [c for c in cluster.emitted if isinstance(c, Revoke)]
    assert [c.after_seq for c in slices] == [REVOKE_SEQ_SLICE, 2 * REVOKE_SEQ_SLICE]
    assert Counter(g.state for g in cluster.grants().values()) == {"revoked": 5_000}
    book = cluster.cores[0].books[coupon_id(1)]
    assert not book.revoking and book.status().closed


# -- bulk distribution --------------------------------------------------------------------


def distribute(strategy: Strategy, users: list[str], **kw: Any) -> Distribute:
    fields = {"per_user": 1, "seed": "s", "dry_run": False, **kw}
    return Distribute(
        rid(), coupon_id(1), "admin", tuple(users), strategy, at_ms=NOON, reply_to="r", **fields
    )


def test_a_dry_run_previews_exactly_what_the_real_run_gives() -> None:
    cluster = Cluster(1)
    send(cluster, coupon(1, 3))
    users = [f"u{i}" for i in range(6)]
    preview = send(cluster, distribute("random", users, dry_run=True))
    assert not cluster.grants()
    real = send(cluster, distribute("random", users))
    assert preview.plan and real.plan and preview.plan.granted == real.plan.granted
    assert sorted(g.user_id for g in cluster.grants().values()) == sorted(
        u for u, _ in real.plan.granted
    )
    fcfs = send(cluster, distribute("fcfs", ["x", "y"]))
    assert fcfs.plan and fcfs.plan.skipped == (("x", "sold_out"), ("y", "sold_out"))


def test_equal_distribution_is_all_or_nothing() -> None:
    cluster = Cluster(1)
    send(cluster, coupon(1, 5, per_user_limit=2))
    refused = send(cluster, distribute("equal", ["a", "b", "c"], per_user=2))
    assert (refused.outcome, refused.reason, cluster.grants()) == (
        "rejected",
        "insufficient_units",
        {},
    )
    done = send(cluster, distribute("equal", ["a", "b"], per_user=2))
    assert done.outcome == "applied"
    assert Counter(g.user_id for g in cluster.grants().values()) == {"a": 2, "b": 2}


# -- properties ---------------------------------------------------------------------------

steps_strategy = st.lists(
    st.tuples(
        st.sampled_from(["claim", "confirm", "cancel", "lock", "redeem", "codes", "assign"]),
        st.integers(0, 7),  # person
        st.integers(0, 15),  # how many ticks to let pass first
    ),
    min_size=1,
    max_size=60,
)


def lifecycle_run(
    steps: list[tuple[str, int, int]], count: int, uploaded: bool, partitions: int
) -> Cluster:
    """Drive one hold coupon through random steps, with the timer ticking every TICK_MS."""
    cluster = Cluster(partitions)
    spec: dict[str, Any] = {"hold_seconds": 1, "lock_seconds": 1, "per_user_limit": 2}
    if uploaded:
        spec["code_source"] = "uploaded"
    send(cluster, coupon(1, count, **spec))
    now = NOON
    uploads = 0
    for action, person, pause in steps:
        for _ in range(pause):
            now += TICK_MS
            cluster.tick(now)
        now += 1
        user = f"p{person}"
        mine = [g for g in cluster.grants().values() if g.user_id == user]
        if action == "claim":
            cluster.append(Claim(rid(), coupon_id(1), user, now, "r"))
        elif action == "codes":
            codes = tuple(f"C{uploads + i}" for i in range(3))
            uploads += 3
            cluster.append(AddCodes(rid(), coupon_id(1), "admin", codes, now, "r"))
        elif action == "assign":
            code = f"C{person}" if uploaded else f"VIP-{person}"
            cluster.append(AssignCode(rid(), coupon_id(1), "admin", user, code, now, "r"))
        elif mine:
            cluster.append(act(mine[-1].id, action, now, user=user))
        cluster.drain()
    # Each step adds at most one hold or lock of one second, and a lapse can pass a unit to the
    # next claim in line, so the last one runs out within a second per step, plus one.
    for _ in range((len(steps) + 1) * 1_000 // TICK_MS + 1):
        now += TICK_MS
        cluster.tick(now)
    return cluster


@settings(max_examples=150, deadline=None)
@given(steps_strategy, st.integers(1, 4), st.booleans(), st.integers(1, 3))
# One unit passed down a line of four one-second holds: the last lapses four seconds later.
@example([("claim", 0, 0)] * 4, 1, False, 1)
def test_lifecycle_properties(
    steps: list[tuple[str, int, int]], count: int, uploaded: bool, partitions: int
) -> None:
    cluster = lifecycle_run(steps, count, uploaded, partitions)
    grants = cluster.grants()
    # No code handed out twice, whatever was released, assigned or uploaded.
    created = [g for batch in cluster.effects for g in batch.new_grants.values()]
    assert len({g.code for g in created}) == len(created)
    # Never more live units than the count.
    live = [g for g in grants.values() if g.state in ("held", "assigned", "locked", "redeemed")]
    assert len(live) <= count
    # No hold or lock outlives its deadline by more than one timer tick.
    deadlines: dict[tuple[str, str], int] = {}
    for batch in cluster.effects:
        for grant in [*batch.new_grants.values(), *batch.grant_changes.values()]:
            if grant.deadline_ms is not None:
                deadlines[(grant.id, grant.state)] = grant.deadline_ms
        for event in batch.events:
            if event.cause in ("hold_lapsed", "lock_lapsed"):
                due = deadlines[
                    (event.grant_id, "held" if event.cause == "hold_lapsed" else "locked")
                ]
                assert due <= event.at_ms <= due + TICK_MS
    assert not [g for g in grants.values() if g.state in ("held", "locked")]
    # The line is served in arrival order: claim grants go to claims in log order.
    claims = [
        c for c in cluster.logs[cluster.partition_of(claim(0, 1, "x"))] if isinstance(c, Claim)
    ]
    order = {c.request_id: i for i, c in enumerate(claims)}
    served = sorted((g for g in created if g.source == "claim"), key=lambda g: g.seq)
    arrival = [order[g.request_id] for g in served]
    assert arrival == sorted(arrival)
    # Every claim got exactly one decision.
    decided = Counter(d.request_id for d in cluster.decisions)
    assert all(decided[c.request_id] == 1 for c in claims)


@settings(max_examples=75, deadline=None)
@given(steps_strategy, st.integers(1, 4), st.booleans(), st.integers(1, 3), st.integers(1, 9))
def test_replaying_a_lifecycle_log_reproduces_it(
    steps: list[tuple[str, int, int]], count: int, uploaded: bool, partitions: int, batch: int
) -> None:
    # Invariant 6 with time in it: ticks, lapses and grant steps are in the log too.
    live = lifecycle_run(steps, count, uploaded, partitions)
    replay = Cluster(partitions, replaying=True)
    replay.logs = [list(log) for log in live.logs]
    replay.drain(batch)
    assert sorted(map(repr, replay.decisions)) == sorted(map(repr, live.decisions))
    assert replay.grants() == live.grants()
    events = [e for batch in live.effects for e in batch.events]
    assert [e for batch in replay.effects for e in batch.events] == events


# -- memory -------------------------------------------------------------------------------


def test_only_settled_state_idle_long_enough_is_forgotten() -> None:
    cluster = Cluster(1)
    cluster.append(coupon(1, 5, hold_seconds=60))
    cluster.append(coupon(2, 5, daily_rule=True))
    cluster.drain()
    granted(cluster, "a")  # coupon 1: a hold, timed until confirmed
    send(cluster, Claim(rid(), coupon_id(2), "b", NOON + 1, "r"))  # coupon 2: assigned
    core = cluster.cores[0]
    assert core.forget_idle(now=0.0, idle_s=10) == 0  # everything named just now
    assert core.forget_idle(now=9.0, idle_s=10) == 0
    assert core.forget_idle(now=11.0, idle_s=10) == 2  # coupon 2 and person b's days
    assert set(core.books) == {coupon_id(1)}  # the held grant keeps coupon 1
    assert core.user_days == {}
    send(cluster, Claim(rid(), coupon_id(1), "c", NOON + 2, "r"))  # named again at 20
    assert core.forget_idle(now=20.0, idle_s=10) == 0
    assert set(core.books) == {coupon_id(1)}
