"""A reader's leaders against the cluster's (runtime/leaders.py): only a difference seen at
two looks in a row is taken to be stuck, and an election under way is not one."""

from aiokafka import TopicPartition

from runtime.leaders import stale

A, B, C = (TopicPartition("t.coupon.commands", p) for p in range(3))


def test_a_leader_that_moved_is_stuck_only_when_it_differed_at_the_look_before() -> None:
    ours = {A: 1, B: 2, C: 3}
    cluster = {A: 2, B: 2, C: 3}
    assert stale(ours, cluster, before=set()) == ({A}, set())  # a refresh may be on its way
    assert stale(ours, cluster, before={A}) == ({A}, {A})
    assert stale(ours, cluster, before={B}) == ({A}, set())  # B differed then, not now


def test_a_partition_without_a_leader_in_the_cluster_is_not_compared() -> None:
    ours = {A: 1, B: 1}
    assert stale(ours, {A: None, B: -1}, before={A, B}) == (set(), set())


def test_agreeing_leaders_are_not_stale() -> None:
    leaders = {A: 1, B: 2, C: 3}
    assert stale(leaders, dict(leaders), before={A, B, C}) == (set(), set())
