"""What-if replays (allocator/tools/whatif.py) on a log made by hand: a change to one coupon
reaches another through the daily rule, and bad changes are refused clearly."""

from datetime import UTC

import pytest

from allocator.core.state import CoreConfig
from allocator.tools.whatif import (
    Logged,
    WhatIfError,
    changed,
    decide,
    describe,
    outcome,
    parse_changes,
    sent,
)
from schemas.messages import Command, DayReserved
from tests.support.simulation import NOON, claim, coupon_id, create

CONFIG = CoreConfig(b"what-if", UTC)
PARTITIONS = 4


def log() -> list[Logged]:
    """Two coupons of 2 with the daily rule; ann and bo get the first, so only cy gets the
    second. Stamped in order, each command on partition 0 (the merge keeps that order)."""
    commands: list[Command] = [
        create(1, 2), create(2, 2),
        claim(10, 1, "ann", NOON + 10), claim(11, 1, "bo", NOON + 11),
        claim(12, 2, "ann", NOON + 12), claim(13, 2, "bo", NOON + 13),
        claim(14, 2, "cy", NOON + 14),
    ]  # fmt: skip
    return [Logged(NOON + n, 0, n, command) for n, command in enumerate(commands)]


def test_a_smaller_first_coupon_frees_a_day_for_the_second() -> None:
    commands = sent(log())
    before = outcome(decide(commands, PARTITIONS, CONFIG), commands)
    altered = changed(commands, coupon_id(1), {"count": 1})
    after = outcome(decide(altered, PARTITIONS, CONFIG), altered)
    assert sorted(before.winners[coupon_id(1)]) == ["ann", "bo"]
    assert sorted(before.winners[coupon_id(2)]) == ["cy"]
    assert sorted(after.winners[coupon_id(1)]) == ["ann"]
    assert sorted(after.winners[coupon_id(2)]) == ["bo", "cy"]  # bo's day is free now
    lines = describe(before, after, coupon_id(1), {"count": 1}, len(commands))
    said = "\n".join(lines)
    assert "had count=1 (was 2)" in said and "would lose 1: bo" in said
    assert "other coupons it changes, through the daily rule: 1" in said
    assert "C2" in said and "would win  1: bo" in said


def test_the_logs_follow_ups_are_made_again_not_replayed() -> None:
    stale = Logged(NOON + 99, 1, 0, DayReserved("r", coupon_id(1), "ann", "2026-11-21", True, 0))
    assert stale.command not in sent([*log(), stale])


@pytest.mark.parametrize(
    ("given", "said"),
    [
        (["colour=red"], "name one of count"),
        (["count=many"], "count is a whole number"),
        (["count=-1"], "cannot be negative"),
        (["daily_limit=maybe"], "daily_limit is true or false"),
        ([], "say what to change"),
    ],
)
def test_a_bad_change_is_refused_clearly(given: list[str], said: str) -> None:
    with pytest.raises(WhatIfError, match=said):
        parse_changes(given)


def test_a_coupon_the_log_never_created_is_refused() -> None:
    with pytest.raises(WhatIfError, match="holds no creation of coupon"):
        changed(sent(log()), coupon_id(7), {"count": 1})
    assert parse_changes(["daily_limit=false", "count=5"]) == {"daily_rule": False, "count": 5}
