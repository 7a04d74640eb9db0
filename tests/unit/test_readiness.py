"""The allocator's reasons for not being ready are kept by source: one source clearing its
own never clears another's (issue 27: one string, cleared by what it began with)."""

from allocator.shell import readiness
from allocator.shell.readiness import Unready


def test_each_source_clears_only_its_own_and_the_first_said_is_shown() -> None:
    unready = Unready()
    unready.say(readiness.taking(2), "taking partition 2: the database is down")
    unready.say(readiness.BROKER, "broker: no leader")
    assert unready.first() == "taking partition 2: the database is down"
    unready.clear(readiness.taking(3))  # another partition taken: says nothing of 2's
    assert unready.first() == "taking partition 2: the database is down"
    unready.clear(readiness.taking(2))
    assert unready.first() == "broker: no leader"
    unready.clear(readiness.BROKER, readiness.GROUP)
    assert unready.first() is None
