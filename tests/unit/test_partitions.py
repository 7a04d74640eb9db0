"""The allocator's table of partitions (allocator/shell/partitions.py): each partition in one
phase, moved only as the table lists, the consumer reading it only while it decides.
Pure: the consumer is a recorder of what the table tells it."""

import time
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from aiokafka import TopicPartition
from prometheus_client import REGISTRY

from allocator.core.decide import PartitionCore
from allocator.core.state import CoreConfig
from allocator.shell.partitions import (
    BATCH,
    DEADLINES,
    LOG,
    OWNED,
    HeldPartition,
    Partitions,
    Phase,
)
from allocator.shell.store import Fenced, PartitionStore

TOPIC = "coupons.commands"
CONFIG = CoreConfig(b"secret")


@dataclass
class Reader:
    """What the consumer was told: its paused partitions and where each reads next. Like
    aiokafka's, it refuses to steer or measure a partition not assigned to it."""

    paused: set[int] = field(default_factory=set)
    at: dict[int, int] = field(default_factory=dict)
    steered: list[int] = field(default_factory=list)
    unassigned: set[int] = field(default_factory=set)  # taken back by the group
    highwaters: dict[int, int] = field(default_factory=dict)

    def pause(self, *tps: TopicPartition) -> None:
        self.paused |= {self._assigned(tp) for tp in tps}
        self.steered += [tp.partition for tp in tps]

    def resume(self, *tps: TopicPartition) -> None:
        self.paused -= {self._assigned(tp) for tp in tps}
        self.steered += [tp.partition for tp in tps]

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.at[self._assigned(tp)] = offset

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.highwaters.get(self._assigned(tp))

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0, 1, 2, 3}

    def _assigned(self, tp: TopicPartition) -> int:
        assert tp.partition not in self.unassigned, f"{tp}: not assigned"
        return int(tp.partition)


def tp(n: int) -> TopicPartition:
    return TopicPartition(TOPIC, n)


def taken(table: Partitions, n: int, epoch: int = 1) -> HeldPartition:
    """Partition `n` held at `epoch`, as the handover takes it."""
    table.taking(tp(n))
    store = cast(PartitionStore, object())  # never called: the table does no IO
    held = HeldPartition(tp(n), store, PartitionCore(CONFIG), epoch, next_offset=10)
    table.taken(held)
    return held


def owned(n: int) -> float | None:
    return REGISTRY.get_sample_value("coupons_allocator_partition_owned", {"partition": str(n)})


@pytest.fixture(autouse=True)
def no_partition_owned() -> None:
    """The gauge is the process's: each test starts with no partition in it."""
    for n in range(4):
        OWNED.remove(str(n))


def test_a_partition_is_read_only_while_it_decides() -> None:
    reader = Reader()
    table = Partitions(reader, fenced_again_after_s=None)
    held = taken(table, 2)
    assert (table.phase(held), reader.paused, owned(2)) == (Phase.UNSURE, {2}, 1.0)
    table.known(held)
    assert (table.phase(held), reader.paused, table.deciding(held)) == (Phase.COLD, set(), True)
    table.warmed(held)
    table.reset(held, fresh := PartitionCore(CONFIG))  # the core forgot: deadlines again
    assert (table.phase(held), held.core) == (Phase.COLD, fresh)
    table.suspect(held)  # its log may be new
    assert (table.phase(held), reader.paused, table.deciding(held)) == (Phase.UNSURE, {2}, False)
    table.seek(held, 7)
    assert (reader.at, held.seeks) == ({2: 7}, 1)
    reader.highwaters[2] = 25  # positions 10 to 24 not decided yet
    assert table.lag(held) == 15


def test_a_move_the_table_does_not_list_is_refused() -> None:
    table = Partitions(Reader(), fenced_again_after_s=None)
    table.taking(tp(0))
    table.wait(tp(0), 1.0, "not taken: the database is down")
    store = cast(PartitionStore, object())
    with pytest.raises(AssertionError, match="no move from Phase.WAITING to Phase.UNSURE"):
        table.taken(HeldPartition(tp(0), store, PartitionCore(CONFIG), 1, 0))  # no fence raised
    held = taken(table, 1)
    with pytest.raises(AssertionError, match="no move from Phase.UNSURE to Phase.TAKING"):
        table.taking(tp(1))  # taken twice
    assert table.phase(held) is Phase.UNSURE


def test_a_partition_not_taken_waits_says_why_and_is_due_again() -> None:
    table = Partitions(Reader(), fenced_again_after_s=None)
    table.taking(tp(3))
    table.wait(tp(3), 60.0, "not taken: the database is down")
    assert table.unready() == "partition 3: not taken: the database is down"
    assert table.due(time.monotonic()) == []
    assert table.due(time.monotonic() + 61) == [tp(3)]
    assert (table.holding(tp(3)), owned(3)) == (None, None)
    held = taken(table, 3)  # its turn came: the fence is raised
    assert (table.unready(), table.holding(tp(3))) == (None, held)


def test_each_trouble_is_kept_until_what_ends_it() -> None:
    table = Partitions(Reader(), fenced_again_after_s=None)
    held = taken(table, 1)
    table.trouble(held, LOG, "broker: cannot tell which log it holds")
    assert table.unready() == "partition 1: broker: cannot tell which log it holds"
    table.known(held)
    table.trouble(held, DEADLINES, "database: connection refused")
    assert table.unready() == "partition 1: database: connection refused"
    table.warmed(held)  # they loaded, next tick
    assert table.unready() is None
    table.reset(held, PartitionCore(CONFIG))  # a batch failed: its core forgot
    table.trouble(held, BATCH, "database: statement timeout (batch at 10, 1 in a row)")
    table.warmed(held)  # deadlines loaded again between tries: the batch still fails
    assert table.unready() == "partition 1: database: statement timeout (batch at 10, 1 in a row)"
    table.trouble(held, BATCH, None)  # a batch committed
    assert table.unready() is None


def test_a_partition_not_taken_keeps_saying_why_while_it_is_tried_again() -> None:
    table = Partitions(Reader(), fenced_again_after_s=None)
    table.taking(tp(2))
    table.wait(tp(2), 0.0, "not taken: the database is down")
    table.taking(tp(2))  # its turn: the database may hang
    assert table.unready() == "partition 2: not taken: the database is down"


def test_a_holding_that_is_over_moves_nothing() -> None:
    """Whatever ended it (a fence, the group, a new taking) moved the partition on: a check
    or a load that finishes afterwards says nothing of it."""
    reader = Reader()
    table = Partitions(reader, fenced_again_after_s=30.0)
    stale = taken(table, 1)
    table.known(stale)
    table.fenced(stale, Fenced("coupons.commands[1] epoch 1 is no longer ours"))
    before = (table.listed(), set(reader.paused), table.unready())
    table.known(stale)
    table.warmed(stale)
    table.suspect(stale)
    table.reset(stale, PartitionCore(CONFIG))
    table.trouble(stale, LOG, "broker: cannot tell which log it holds")
    table.fenced(stale, Fenced("coupons.commands[1] epoch 1 is no longer ours"))
    assert (table.listed(), reader.paused, table.unready()) == before
    assert table.phase(stale) is None
    fresh = taken(table, 1, epoch=3)  # taken anew: the old holding still says nothing
    table.known(stale)
    assert (table.phase(fresh), table.phase(stale)) == (Phase.UNSURE, None)


def test_deadlines_loaded_for_a_log_suspected_meanwhile_do_not_start_timers() -> None:
    table = Partitions(Reader(), fenced_again_after_s=None)
    held = taken(table, 0)
    table.known(held)
    table.suspect(held)  # the mark is gone, found beside the load of deadlines
    table.warmed(held)
    assert table.phase(held) is Phase.UNSURE


def test_fenced_out_in_a_group_it_is_taken_again_after_a_session() -> None:
    reader = Reader()
    table = Partitions(reader, fenced_again_after_s=30.0)
    held = taken(table, 1)
    table.known(held)
    table.fenced(held, Fenced("partition 1 is at epoch 2"))
    assert (table.holding(tp(1)), table.phase(held), reader.paused) == (None, None, {1})
    assert table.unready() == "partition 1: fenced out: partition 1 is at epoch 2"
    assert table.due(time.monotonic() + 29) == []
    assert table.due(time.monotonic() + 31) == [tp(1)]


def test_fenced_out_of_a_given_partition_it_stays_out_and_is_unready_once_all_are() -> None:
    table = Partitions(Reader(), fenced_again_after_s=None)
    first, second = taken(table, 0), taken(table, 1)
    table.known(second)
    table.fenced(first, Fenced("partition 0 is at epoch 2"))
    assert [g.phase for g in table.listed()] == [Phase.FENCED, Phase.COLD]
    assert (table.unready(), table.held(), owned(0)) == (None, [second], None)  # 1 decides on
    table.fenced(second, Fenced("partition 1 is at epoch 2"))
    assert table.unready() == "fenced out of every partition it was given"
    with pytest.raises(AssertionError):
        table.taking(tp(0))  # never taken again


def test_taken_back_and_given_straight_back_it_is_kept_where_it_was() -> None:
    reader = Reader()
    table = Partitions(reader, fenced_again_after_s=30.0)
    kept, gone = taken(table, 0), taken(table, 1)
    table.known(kept)
    table.warmed(kept)
    table.taking(tp(2))
    table.wait(tp(2), 1.0, "not taken: the database is down")
    reader.steered.clear()
    reader.unassigned = {0, 1, 2}  # the group takes every partition back
    for n in (0, 1, 2):
        table.leave(tp(n))
    assert reader.steered == []  # no longer assigned: nothing to tell the consumer
    assert (table.leaving(tp(0)), table.leaving(tp(2)), table.held()) == (kept, None, [])
    assert (table.lag(kept), [g.phase for g in table.listed()]) == (None, [Phase.LEAVING] * 2)
    reader.unassigned, reader.paused = {1, 2}, set()  # and gives 0 back, forgetting pauses
    table.keep(tp(0))  # it decides, so it reads
    table.forget_leaving()
    assert [(g.tp.partition, g.phase) for g in table.listed()] == [(0, Phase.WARM)]
    assert (table.holding(tp(0)), reader.steered, owned(0)) == (kept, [0], 1.0)
    assert (tp(1) in table.given, table.phase(gone), owned(1)) == (False, None, None)


def test_kept_while_its_log_is_unsure_it_is_paused_again() -> None:
    reader = Reader()
    table = Partitions(reader, fenced_again_after_s=30.0)
    held = taken(table, 3)
    reader.unassigned = {3}
    table.leave(tp(3))
    reader.unassigned, reader.paused = set(), set()  # given back; pauses forgotten
    table.keep(tp(3))
    assert (table.phase(held), reader.paused) == (Phase.UNSURE, {3})


def test_which_coupons_a_partition_decides_follows_the_topic() -> None:
    table = Partitions(Reader(), fenced_again_after_s=None)
    owns = [table.owns(tp(n)) for n in range(4)]
    coupons: list[Any] = [f"00000000-0000-4000-8000-{n:012d}" for n in range(40)]
    assert all(sum(o(c) for o in owns) == 1 for c in coupons)
    assert all(any(o(c) for c in coupons) for o in owns)
