"""The scenarios, each written once: a subclass of `Behaviour` with a `driver` fixture runs
every one on its backend (tests/unit/test_behaviour.py, tests/integration/test_behaviour.py).
A check that holds on one backend only stays in that backend's own test files."""

import uuid
from collections import Counter

from tests.behaviour.driver import (
    DAY_MS,
    HOUR_MS,
    Answer,
    Claim,
    Coupon,
    Driver,
    Grant,
    Stock,
    Terms,
)

PEOPLE = 40  # at once, on the daily rule's coupons
DAILY_PER_PARTITION = 2  # of those coupons
PARTITION_TRIES_MAX = 64  # coupons made to find one on each partition (ids are made, not chosen)


def grant_of(answer: Answer) -> Grant:
    assert answer.grant is not None, answer
    return answer.grant


async def on_every_partition(driver: Driver, count: int) -> list[Coupon]:
    """A daily coupon of `count` on each partition; those made beside them stay unclaimed."""
    found: dict[int, Coupon] = {}
    for _ in range(PARTITION_TRIES_MAX):
        coupon = await driver.create_coupon(Terms(count, daily=True))
        found.setdefault(driver.partition_of(coupon), coupon)
        if len(found) == driver.partitions:
            return [found[p] for p in range(driver.partitions)]
    raise AssertionError(f"coupons landed on partitions {sorted(found)} only")


class Behaviour:
    async def test_holds_lapse_and_pass_down_the_line_in_arrival_order(
        self, driver: Driver
    ) -> None:
        # Count 2, hold 2 s, five people; the first two hold and never confirm.
        coupon = await driver.create_coupon(Terms(2, hold_seconds=2))
        first = [await driver.claim(coupon, f"p{i}") for i in range(2)]
        waiting = [await driver.join(coupon, f"p{i}") for i in (2, 3, 4)]
        assert [a.outcome for a in first] == ["granted", "granted"], first
        assert {grant_of(a).state for a in first} == {"held"}
        assert [(a.outcome, a.position) for a in waiting] == [("waiting", n) for n in (1, 2, 3)]
        third, fourth = [await driver.outcome(a) for a in waiting[:2]]
        fifth = await driver.look(waiting[2])
        late = await driver.step(grant_of(first[0]), "confirm", "p0")
        assert (third.outcome, grant_of(third).person, grant_of(third).state) == (
            "granted",
            "p2",
            "held",
        )
        assert (fourth.outcome, grant_of(fourth).person) == ("granted", "p3")
        assert (fifth.outcome, fifth.position) == ("waiting", 1)
        assert (late.outcome, late.reason) == ("rejected", "hold_expired")
        lateness = [
            grant_of(passed).granted_at_ms - (grant_of(held).deadline_ms or 0)
            for passed, held in zip((third, fourth), first, strict=True)
        ]
        print(f"\nholds: passed on {lateness[0]} ms and {lateness[1]} ms after their deadlines")
        assert all(0 <= late_ms <= driver.lapse_late_ms_max for late_ms in lateness), lateness
        assert await driver.holders(coupon) == [
            ("p0", "released"),
            ("p1", "released"),
            ("p2", "held"),
            ("p3", "held"),
        ]

    async def test_cancelling_a_hold_passes_it_on_at_once_and_gives_the_day_back(
        self, driver: Driver
    ) -> None:
        coupon = await driver.create_coupon(Terms(1, daily=True, hold_seconds=600))
        other = await driver.create_coupon(Terms(1, daily=True))
        alice = await driver.claim(coupon, "alice")
        bob = await driver.join(coupon, "bob")
        assert (alice.outcome, grant_of(alice).state, bob.outcome) == ("granted", "held", "waiting")
        cancelled = await driver.step(grant_of(alice), "cancel", "alice")
        passed = await driver.outcome(bob)
        again = await driver.claim(other, "alice")
        assert (cancelled.outcome, grant_of(cancelled).state) == ("applied", "released")
        assert (passed.outcome, grant_of(passed).person) == ("granted", "bob")
        # At once: long before alice's hold would have lapsed.
        assert grant_of(passed).granted_at_ms < (grant_of(alice).deadline_ms or 0)
        assert await driver.holders(coupon) == [("alice", "released"), ("bob", "held")]
        assert again.outcome == "granted", again  # her day came back with the hold

    async def test_redemption_limits_per_grant_and_per_person(self, driver: Driver) -> None:
        coupon = await driver.create_coupon(
            Terms(5, per_user_limit=2, redemptions_per_grant=2, redemptions_per_user=3)
        )
        claims = [await driver.claim(coupon, "alice") for _ in range(3)]
        grants = [grant_of(a) for a in claims[:2]]
        first = [await driver.step(grants[0], "redeem", "alice") for _ in range(3)]
        second = [await driver.step(grants[1], "redeem", "alice") for _ in range(2)]
        assert [a.outcome for a in claims] == ["granted", "granted", "rejected"]
        assert claims[2].reason == "already_claimed"  # a third is over per_user_limit
        assert [(a.outcome, a.grant and a.grant.state, a.reason) for a in first] == [
            ("applied", "assigned", None),
            ("applied", "redeemed", None),
            ("rejected", None, "already_redeemed"),
        ]
        assert [(a.outcome, a.reason) for a in second] == [
            ("applied", None),
            ("rejected", "redemption_limit"),
        ]

    async def test_the_line_is_refused_once_the_last_hold_is_confirmed(
        self, driver: Driver
    ) -> None:
        coupon = await driver.create_coupon(Terms(1, hold_seconds=600))
        alice = await driver.claim(coupon, "alice")
        bob = await driver.join(coupon, "bob")
        stock = await driver.stock(coupon)
        confirmed = await driver.step(grant_of(alice), "confirm", "alice")
        refused = await driver.outcome(bob)
        carol = await driver.claim(coupon, "carol")
        assert (grant_of(alice).state, bob.outcome) == ("held", "waiting")
        assert stock == Stock(held=1, line=1, remaining=0)
        assert (confirmed.outcome, grant_of(confirmed).state) == ("applied", "assigned")
        assert (refused.outcome, refused.reason) == ("rejected", "sold_out")
        assert (carol.outcome, carol.reason) == ("rejected", "sold_out")

    async def test_a_retried_request_gets_the_first_decision_and_no_second_effect(
        self, driver: Driver
    ) -> None:
        coupon = await driver.create_coupon(Terms(5, daily=True))
        # Five taps at once, then one more once the first is decided.
        taps = await driver.claims_at_once([Claim(coupon, "dave", key="tap-1")] * 5)
        taps.append(await driver.claim(coupon, "dave", key="tap-1"))
        other = await driver.claim(coupon, "erin", key="tap-1")
        tickets = {a.ticket for a in taps}
        assert len(tickets) == 1
        assert {a.outcome for a in taps} == {"granted"}, taps
        assert len({grant_of(a).id for a in taps}) == 1
        assert other.outcome == "granted" and other.ticket not in tickets
        assert await driver.holders(coupon) == [("dave", "assigned"), ("erin", "assigned")]

    async def test_a_claim_is_granted_within_the_window_once_a_person(self, driver: Driver) -> None:
        # Each edge of the window as near to now as the driver's clock allows.
        now, slack = driver.now_ms(), driver.clock_slack_ms
        later = await driver.create_coupon(Terms(5, start_ms=now + slack + 1))
        live = await driver.create_coupon(Terms(5))
        gone = await driver.create_coupon(
            Terms(5, start_ms=now - slack - HOUR_MS, expiry_ms=now - slack)
        )
        early = await driver.claim(later, "bob")
        alice = [await driver.claim(live, "alice") for _ in range(2)]
        late = await driver.claim(gone, "bob")
        nowhere = await driver.claim(Coupon(str(uuid.uuid4()), "", now + DAY_MS), "bob")
        assert [c.state for c in (later, live, gone)] == ["scheduled", "live", "expired"]
        assert (early.outcome, early.reason) == ("rejected", "not_started")
        assert [(a.outcome, a.reason) for a in alice] == [
            ("granted", None),
            ("rejected", "already_claimed"),
        ]
        assert (late.outcome, late.reason) == ("rejected", "expired")
        assert (nowhere.outcome, nowhere.reason) == ("rejected", "unknown_coupon")

    async def test_one_grant_per_person_per_day_across_partitions(self, driver: Driver) -> None:
        # alice wins one coupon, then is first in line for another the same day: refused,
        # and its single unit passes to bob. Both coupons are on partitions other than
        # the one that keeps alice's days.
        singles = await on_every_partition(driver, 1)
        home = driver.days_partition("alice")
        won_on, refused_on = [c for c in singles if driver.partition_of(c) != home][:2]
        won = await driver.claim(won_on, "alice")
        refused, passed = await driver.claims_in_order(
            [Claim(refused_on, "alice"), Claim(refused_on, "bob")]
        )
        assert won.outcome == "granted", won
        assert (refused.outcome, refused.reason) == ("rejected", "daily_limit")
        assert (passed.outcome, grant_of(passed).person) == ("granted", "bob")
        # Then many people at once, on daily coupons decided in more than one place, and
        # on a coupon without the rule.
        daily = [
            c for _ in range(DAILY_PER_PARTITION) for c in await on_every_partition(driver, 100)
        ]
        free = await driver.create_coupon(Terms(100))
        assert len({driver.decider_of(driver.partition_of(c)) for c in daily}) > 1
        people = [f"person{p}" for p in range(PEOPLE)]
        answers = await driver.claims_at_once(
            [Claim(c, person) for person in people for c in [*daily, free]]
        )
        granted = Counter(grant_of(a).person for a in answers if a.outcome == "granted")
        refusals = Counter(a.reason for a in answers if a.outcome == "rejected")
        # Each person: one daily coupon and the coupon without the daily rule.
        assert granted == {person: 2 for person in people}
        assert refusals == {"daily_limit": PEOPLE * (len(daily) - 1)}
        holders = [holder for c in daily for holder, _ in await driver.holders(c)]
        assert Counter(holders) == {person: 1 for person in people}

    async def test_a_lock_holds_a_grant_until_it_is_unlocked_used_or_lapses(
        self, driver: Driver
    ) -> None:
        coupon = await driver.create_coupon(Terms(5, lock_seconds=1))
        grant = grant_of(await driver.claim(coupon, "alice"))
        lock = await driver.step(grant, "lock", "alice")
        refused = [
            await driver.step(grant, "lock", "alice"),
            await driver.step(grant, "redeem", "alice"),
            await driver.step(grant, "unlock", "alice", lock_id="not-the-key"),
        ]
        unlocked = await driver.step(grant, "unlock", "alice", lock_id=grant_of(lock).lock_id)
        relock = await driver.step(grant, "lock", "alice")
        lapsed = await driver.after_deadline(grant_of(relock))
        last = await driver.step(grant, "lock", "alice")
        redeemed = await driver.step(grant, "redeem", "alice", lock_id=grant_of(last).lock_id)
        after = [await driver.step(grant, step, "alice") for step in ("redeem", "lock", "unlock")]
        assert (lock.outcome, grant_of(lock).state) == ("applied", "locked")
        assert [(a.outcome, a.reason) for a in refused] == [("rejected", "locked")] * 3
        assert (unlocked.outcome, grant_of(unlocked).state) == ("applied", "assigned")
        assert (relock.outcome, lapsed.state) == ("applied", "assigned")
        assert (redeemed.outcome, grant_of(redeemed).state) == ("applied", "redeemed")
        assert [(a.outcome, a.reason) for a in after] == [("rejected", "already_redeemed")] * 3
        assert await driver.events(grant) == [
            (None, "assigned", "claim"),
            ("assigned", "locked", "lock"),
            ("locked", "assigned", "unlock"),
            ("assigned", "locked", "lock"),
            ("locked", "assigned", "lock_lapsed"),
            ("assigned", "locked", "lock"),
            ("locked", "redeemed", "redeem"),
        ]

    async def test_no_redemption_after_the_coupon_expires(self, driver: Driver) -> None:
        now = driver.now_ms()
        coupon = await driver.create_coupon(Terms(5, start_ms=now - 1_000, expiry_ms=now + 2_000))
        grant = grant_of(await driver.claim(coupon, "nora"))
        await driver.until_expired(coupon)
        late = await driver.step(grant, "redeem", "nora")
        assert (late.outcome, late.reason) == ("rejected", "expired")
