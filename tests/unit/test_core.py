"""The decision core, by example and by property (invariants 1, 2, 3 and 6)."""

from collections import Counter, defaultdict
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from allocator.core.decide import PartitionCore
from allocator.core.effects import Record
from allocator.core.state import CoreConfig, day_of
from schemas.messages import Claim, Command, DayReserved, ReserveDay
from schemas.views import really_gone
from tests.support.simulation import (
    DAY_MS,
    NOON,
    SECRET,
    Cluster,
    claim,
    coupon_id,
    create,
    outcomes,
    request_id,
    run,
)


def test_exactly_count_grants_first_come_first_served() -> None:
    claims = [claim(i, 1, f"u{i}") for i in range(40)]
    cluster = run([create(1, 25), *claims])
    result = outcomes(cluster)
    assert [result[c.request_id][0] for c in claims] == ["granted"] * 25 + ["rejected"] * 15
    assert {result[c.request_id][1] for c in claims[25:]} == {"sold_out"}
    codes = [d.grant.code for d in cluster.decisions if d.grant]
    assert len(set(codes)) == 25


def test_a_day_later_the_daily_rule_lets_a_person_win_again() -> None:
    # The rule within one day is the behaviour suite's; only virtual time reaches the next.
    today: list[Command] = [create(1, 5), create(3, 1), claim(1, 1, "alice"), claim(2, 3, "alice")]
    cluster = run([*today, claim(3, 3, "alice", at=NOON + DAY_MS)], partitions=3)
    result = outcomes(cluster)
    assert [result[request_id(n)] for n in (1, 2, 3)] == [
        ("granted", None),
        ("rejected", "daily_limit"),
        ("granted", None),
    ]


def test_a_retry_through_another_gateway_is_answered_there() -> None:
    # The behaviour suite's retries go through one gateway; the first decision goes back
    # to whichever gateway the retry came through, in the same batch or a later one.
    first = claim(1, 1, "alice")
    cluster = run([create(1, 5, daily=False), first, replace(first, reply_to="other-gateway")])
    cluster.append(replace(first, at_ms=first.at_ms + 5, reply_to="third-gateway"))
    cluster.drain()
    echoes = [echo for batch in cluster.effects for echo in batch.echoes]
    assert [(e.outcome, e.reply_to) for e in echoes] == [
        ("granted", "other-gateway"),
        ("granted", "third-gateway"),
    ]


def test_answers_to_a_reservation_seen_twice_change_nothing() -> None:
    core = PartitionCore(CoreConfig(SECRET))
    first = claim(1, 1, "alice")
    batch = core.decide([Record(0, create(1, 1)), Record(1, first)], {})
    (ask,) = batch.commands
    assert isinstance(ask, ReserveDay)
    answer = DayReserved(ask.request_id, ask.coupon_id, "alice", ask.day, True, ask.at_ms)
    batch = core.decide([Record(2, answer), Record(3, answer)], {})
    assert [d.decision.outcome for d in batch.decisions] == ["granted"]


def test_day_is_taken_in_the_configured_zone() -> None:
    from zoneinfo import ZoneInfo

    late_evening_utc = NOON + 11 * 3_600_000  # 23:00 UTC is 08:00 next day in Seoul
    assert day_of(late_evening_utc, ZoneInfo("UTC")) == "2026-11-21"
    assert day_of(late_evening_utc, ZoneInfo("Asia/Seoul")) == "2026-11-22"


# -- properties ---------------------------------------------------------------------------

commands_strategy = st.lists(
    st.tuples(
        st.integers(0, 2),  # coupon
        st.integers(0, 11),  # user
        st.integers(-1, 3),  # day offset from the coupon's start (-1: before start)
    ),
    min_size=1,
    max_size=120,
)
coupons_strategy = st.lists(st.tuples(st.integers(0, 6), st.booleans()), min_size=3, max_size=3)


def build(coupons: list[tuple[int, bool]], claims: list[tuple[int, int, int]]) -> list[Command]:
    commands: list[Command] = [
        create(n, count, daily, days=3) for n, (count, daily) in enumerate(coupons)
    ]
    for i, (coupon, user, day) in enumerate(claims):
        commands.append(claim(i, coupon, f"u{user}", at=NOON + day * DAY_MS + i))
    return commands


@settings(max_examples=300, deadline=None)
@given(coupons_strategy, commands_strategy, st.integers(1, 4), st.integers(1, 9))
def test_invariants_hold_for_any_sequence(
    coupons: list[tuple[int, bool]],
    claims: list[tuple[int, int, int]],
    partitions: int,
    batch_max: int,
) -> None:
    commands = build(coupons, claims)
    cluster = run(commands, partitions, batch_max)
    by_request = {d.request_id: d for d in cluster.decisions}
    claim_commands = [c for c in commands if isinstance(c, Claim)]
    # Invariant 4 (in the core): every claim has exactly one decision.
    assert len(by_request) == len(cluster.decisions) == len(commands)
    grants = [d.grant for d in cluster.decisions if d.grant]
    per_coupon = Counter(g.coupon_id for g in grants)
    for n, (count, _) in enumerate(coupons):
        # Invariant 1: never more than the count; codes and sequence numbers unique.
        assert per_coupon[coupon_id(n)] <= count
        mine = [g for g in grants if g.coupon_id == coupon_id(n)]
        assert len({g.code for g in mine}) == len({g.seq for g in mine}) == len(mine)
    # Invariant 2: one per person per coupon; one per person per day on daily coupons.
    assert len({(g.coupon_id, g.user_id) for g in grants}) == len(grants)
    daily = {coupon_id(n) for n, (_, d) in enumerate(coupons) if d}
    claimed_at = {c.request_id: c.at_ms for c in claim_commands}
    zone = CoreConfig(b"").day_zone
    days = [(g.user_id, day_of(claimed_at[g.request_id], zone)) for g in grants]
    daily_days = [day for g, day in zip(grants, days, strict=True) if g.coupon_id in daily]
    assert len(set(daily_days)) == len(daily_days)
    # Invariant 3: nobody refused as sold out came before someone who won.
    order = {c.request_id: i for i, c in enumerate(claim_commands)}
    won: defaultdict[str, list[int]] = defaultdict(list)
    sold_out: defaultdict[str, list[int]] = defaultdict(list)
    for c in claim_commands:
        d = by_request[c.request_id]
        if d.outcome == "granted":
            won[c.coupon_id].append(order[c.request_id])
        elif d.reason == "sold_out":
            sold_out[c.coupon_id].append(order[c.request_id])
    for cid, refused in sold_out.items():
        assert per_coupon[cid] == dict(coupons_by_id(coupons))[cid]
        assert max(won[cid], default=-1) < min(refused)
    assert_numbered_and_final(cluster)


def assert_numbered_and_final(cluster: Cluster) -> None:
    """What the gateway's answers to retries rely on (gateway/retries.py): a coupon's
    decisions are numbered 1, 2, … in the order made, every status counts the ones made
    before it, and once a status says a coupon is sold out or closed no grant follows."""
    numbered: defaultdict[str, list[int]] = defaultdict(list)
    over: set[str] = set()
    for batch in cluster.effects:
        for row in batch.decisions:
            decision = row.decision
            assert row.seq is not None
            numbered[decision.coupon_id].append(row.seq)
            assert decision.grant is None or decision.coupon_id not in over
            if decision.coupon is not None:
                assert decision.coupon.decided == row.seq - 1
        for status in batch.changed.values():
            assert status.decided == len(numbered[status.coupon_id])
            if status.closed or really_gone(status):
                over.add(status.coupon_id)
    for seqs in numbered.values():
        assert seqs == list(range(1, len(seqs) + 1))


def coupons_by_id(coupons: list[tuple[int, bool]]) -> list[tuple[str, int]]:
    return [(coupon_id(n), count) for n, (count, _) in enumerate(coupons)]


@settings(max_examples=150, deadline=None)
@given(coupons_strategy, commands_strategy, st.integers(1, 4), st.integers(1, 9), st.integers(1, 9))
def test_replaying_the_log_reproduces_every_decision(
    coupons: list[tuple[int, bool]],
    claims: list[tuple[int, int, int]],
    partitions: int,
    b1: int,
    b2: int,
) -> None:
    # Invariant 6: the log, as it was written, decided again with other batch sizes.
    live = run(build(coupons, claims), partitions, b1)
    replay = Cluster(partitions, replaying=True)
    replay.logs = [list(log) for log in live.logs]
    replay.drain(b2)
    assert sorted(map(repr, replay.decisions)) == sorted(map(repr, live.decisions))
    assert sorted(map(repr, replay.emitted)) == sorted(map(repr, live.emitted))
