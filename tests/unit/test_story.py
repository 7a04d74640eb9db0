"""A coupon's story from its log and decisions (deploy/story.py): the fairness check finds
a grant that jumped the queue, forgives one a returned unit explains, and the clock skew
between gateways is read from log order."""

from deploy.story import Decided, LoggedClaim, Story, clock_skew, fairness


def claims(*users: str, gateways: str = "a") -> list[LoggedClaim]:
    return [
        LoggedClaim(offset, f"r{offset}", user, 1_000 + offset, gateways[offset % len(gateways)])
        for offset, user in enumerate(users)
    ]


def decided(*outcomes: str) -> dict[str, Decided]:
    """granted, or a refusal's reason, per claim in log order."""
    return {
        f"r{n}": Decided(f"r{n}", "granted" if o == "granted" else "rejected",
                         None if o == "granted" else o, 2_000 + n,
                         grants=int(o == "granted"), source="claim" if o == "granted" else None)
        for n, o in enumerate(outcomes)
    }  # fmt: skip


def test_grants_to_the_first_eligible_claims_are_verified() -> None:
    logged = claims("ann", "bo", "ann", "cy", "di")
    # ann's second claim is refused for a reason of her own: it does not count.
    verdict = fairness(logged, decided("granted", "granted", "already_claimed", "sold_out",
                                       "sold_out"), [])  # fmt: skip
    assert verdict == {"verified": True, "checked": 5, "counter_example": None}


def test_a_grant_after_a_refusal_is_a_counter_example_unless_a_unit_came_back() -> None:
    logged = claims("ann", "bo", "cy")
    outcomes = decided("granted", "sold_out", "granted")
    unfair = fairness(logged, outcomes, [])
    assert unfair["verified"] is False
    assert "bo's claim at offset 1 was refused sold_out, but cy's" in str(unfair["counter_example"])
    # ann gave her unit back (a log offset between bo's and cy's claims): cy's grant is fair.
    assert fairness(logged, outcomes, [1])["verified"] is True
    # Given back before bo's claim, it does not explain cy's grant.
    assert fairness(logged, outcomes, [0])["verified"] is False


def test_clock_skew_is_how_far_a_gateway_stamps_behind_log_order() -> None:
    logged = [
        LoggedClaim(0, "r0", "u", 1_000, "a"),
        LoggedClaim(1, "r1", "u", 1_010, "b"),
        LoggedClaim(2, "r2", "u", 995, "a"),  # logged after b's, stamped 15 ms before it
        LoggedClaim(3, "r3", "u", 1_020, "b"),
    ]
    assert clock_skew(logged) == {
        "gateways": 2,
        "largest_ms": 15,
        "by_gateway_ms": {"a": 15, "b": 0},
    }
    assert clock_skew(logged[:1])["largest_ms"] == 0


def test_the_summary_counts_the_edge_and_finds_the_sell_out() -> None:
    logged = claims("ann", "bo", "cy")
    story = Story("FREE", 2, 900, logged, decided("granted", "granted", "sold_out"), [])
    story.edge.update({"sold_out": 40, "retry": 2})
    summary = story.summary()
    assert summary["claims"] == 3 + 42 and summary["answered_at_edge"] == 42
    assert summary["refused"] == {"sold_out": 41}
    assert (summary["granted"], summary["sold_out_ms"], summary["sold_out_after_ms"]) == (
        2,
        2001,
        1101,
    )
    assert summary["winners_latency_p50_ms"] == 1000  # decided at 2,000 + n, received 1,000 + n


def test_every_grant_counts_whatever_made_it() -> None:
    """Issue 23: a coupon filled by a distribution reported "granted 0", as only claims'
    decisions were counted. A distribution is one decision (`applied`) making many grants."""
    logged = claims("ann", "bo")
    by_claims = decided("granted", "sold_out")
    made = {
        "d": Decided("d", "applied", None, 1_500, grants=6, source="distribution"),
        "a": Decided("a", "granted", None, 1_600, grants=1, source="assign"),
        "p": Decided("p", "applied", None, 1_700),  # a dry run: grants nothing
    }
    story = Story("FILLED", 8, 900, logged, {**by_claims, **made}, [])
    summary = story.summary()
    assert summary["granted"] == 8
    assert summary["granted_by"] == {"claims": 1, "distribution": 6, "assignment": 1}
    assert summary["sold_out_ms"] == 2_000  # ann's claim took the eighth unit
    assert summary["winners_latency_p50_ms"] == 1_000  # claims only: they have a receipt
    assert fairness(logged, story.decided, [])["verified"] is True
    filled = Story("BULK", 6, 900, [], {"d": made["d"]}, []).summary()
    assert (filled["granted"], filled["sold_out_ms"]) == (6, 1_500)
