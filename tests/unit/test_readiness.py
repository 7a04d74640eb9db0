"""The allocator's reasons for not being ready are kept by source: one source clearing its
own never clears another's (issue 27: one string, cleared by what it began with)."""

from allocator.shell import readiness
from allocator.shell.readiness import Unready


def test_each_source_clears_only_its_own_and_the_first_said_is_shown() -> None:
    unready = Unready()
    unready.say(readiness.GROUP, "joining the allocators' group g")
    unready.say(readiness.BROKER, "broker: no leader")
    assert unready.first() == "joining the allocators' group g"
    unready.clear(readiness.STARTING)  # started: says nothing of the group
    assert unready.first() == "joining the allocators' group g"
    unready.clear(readiness.GROUP)
    assert unready.first() == "broker: no leader"
    unready.clear(readiness.BROKER, readiness.GROUP)
    assert unready.first() is None
