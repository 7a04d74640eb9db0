"""The pure parts of the grant feed: which event a transition is, when a hold is warned
about, and how the cursor waits for ids committed out of order."""

from dataclasses import replace

from notifier.grant_events import GAP_WAIT_S, Cursor, event_name, warn_at_ms
from schemas.messages import Grant

HOLD = Grant("g1", "c1", "alice", 1, "CODE", "held", 1_000_000, deadline_ms=1_120_000)


def test_each_transition_has_its_event() -> None:
    assert event_name(None, "held") == event_name(None, "assigned") == "granted"
    assert event_name("held", "released") == "hold_released"
    assert event_name("assigned", "redeemed") == event_name("locked", "redeemed") == "redeemed"
    assert event_name("held", "assigned") == event_name("assigned", "revoked") == "grant_changed"


def test_a_hold_is_warned_about_thirty_seconds_ahead_or_halfway_when_short() -> None:
    assert warn_at_ms(HOLD) == 1_090_000  # a 120 s hold: 30 s before its deadline
    short = replace(HOLD, deadline_ms=1_010_000)
    assert warn_at_ms(short) == 1_005_000  # a 10 s hold: at half time
    assert warn_at_ms(replace(HOLD, state="assigned", deadline_ms=None)) is None
    assert warn_at_ms(replace(HOLD, state="locked")) is None  # a lock is the person's own doing


def test_the_cursor_reads_each_id_once_and_moves_over_what_is_contiguous() -> None:
    cursor = Cursor(floor=10, seen=set())
    assert [cursor.take(i) for i in (11, 12, 12, 9)] == [True, True, False, False]
    cursor.advance(now=0.0)
    assert (cursor.floor, cursor.seen) == (12, set())


def test_the_cursor_waits_for_a_slow_commit_then_gives_it_up() -> None:
    cursor = Cursor(floor=10, seen=set())
    cursor.take(12)  # 11 is still committing (or rolled back)
    cursor.advance(now=100.0)
    assert cursor.floor == 10  # read again from 10: 11 may still come
    assert cursor.take(11)  # it came
    cursor.advance(now=101.0)
    assert (cursor.floor, cursor.seen) == (12, set())
    cursor.take(14)
    cursor.advance(now=200.0)
    cursor.advance(now=200.0 + GAP_WAIT_S - 0.1)
    assert cursor.floor == 12
    cursor.advance(now=200.0 + GAP_WAIT_S)
    assert (cursor.floor, cursor.seen) == (14, set())  # 13 never committed
