"""Every partition given to this allocator, each in one phase: where a partition's state
lives, and the one writer of it. Every change is a move of the table below, made without
`await`, and a move the table does not list is a bug, asserted. Callers await between what
they read and the move they make (a load, a look at the broker): so each move checks, in
the same step, that it still applies. A move of a holding that is over (fenced out, taken
back, taken anew) says nothing: whatever ended it moved the partition on. The consumer's
pause flags follow the phase: a partition is read only while it decides (COLD, WARM). Its
troubles are kept by source, each cleared by what ends it (taken, its log known, its
deadlines loaded, a batch committed).

    WAITING ──▶ TAKING ──▶ UNSURE ──▶ COLD ──▶ WARM
       ▲          │          ▲         │ ▲      │
       └──────────┘          └─────────┘ └──────┘
    held (UNSURE, COLD, WARM) ──▶ LEAVING: taken back; back where it was if kept
                              ──▶ WAITING (fenced out, in a group) or FENCED (given)

WAITING   given, not taken: the database refused, or (in a group) it was fenced out and is
          taken again after a session's time. Tried again at `retry_at`.
TAKING    its row's epoch being raised (the fence: whoever had it never commits again), its
          outbox published, its position sought.
UNSURE    held, and not one record decided until its log is known to be the one the stored
          position belongs to (allocator/shell/which_log.py).
COLD      deciding; the coupons with deadlines are not loaded into the core yet: no timer runs.
WARM      deciding, timers running.
LEAVING   the group took it back; kept, core and all, if it is given straight back while its
          row still holds our epoch (it goes back to the phase it left), dropped otherwise.
FENCED    given (ALLOCATOR_PARTITIONS), and another allocator took it: never decided here again.
"""

import asyncio
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from aiokafka import TopicPartition
from prometheus_client import Gauge

from allocator.core.decide import PartitionCore
from allocator.shell.readiness import Unready
from allocator.shell.store import FENCED, Fenced, PartitionStore
from schemas.topics import partition_of

log = logging.getLogger(__name__)

OWNED = Gauge("coupons_allocator_partition_owned", "1 for each partition it holds", ["partition"])
LAG = Gauge("coupons_allocator_lag_records", "Records not decided yet", ["partition"])

# What troubles a partition, by source: each cleared by what ends it.
NOT_TAKEN = "not taken"  # cleared when taken
LOG = "log"  # which log it holds, not known yet: cleared when known
DEADLINES = "deadlines"  # its timed coupons not loaded: cleared when loaded
BATCH = "batch"  # its batch failed: cleared by the next one committed


class Phase(enum.Enum):
    WAITING = "waiting"
    TAKING = "taking"
    UNSURE = "unsure"
    COLD = "cold"
    WARM = "warm"
    LEAVING = "leaving"
    FENCED = "fenced"


HELD = frozenset({Phase.UNSURE, Phase.COLD, Phase.WARM})  # its epoch is ours, as far as we know
DECIDING = frozenset({Phase.COLD, Phase.WARM})  # its records are read and decided
_LET_GO = {Phase.LEAVING, Phase.WAITING, Phase.FENCED}  # what a held one may turn into
MOVES = {
    (Phase.WAITING, Phase.TAKING),
    (Phase.LEAVING, Phase.TAKING),  # given back, and no longer ours: taken anew
    (Phase.LEAVING, Phase.WAITING),  # given back, and the database did not say whose
    (Phase.TAKING, Phase.WAITING),
    (Phase.TAKING, Phase.UNSURE),
    (Phase.UNSURE, Phase.COLD),
    (Phase.COLD, Phase.WARM),
    (Phase.WARM, Phase.COLD),
    *((held, Phase.UNSURE) for held in DECIDING),
    *((held, let_go) for held in HELD for let_go in _LET_GO),
    *((Phase.LEAVING, held) for held in HELD),  # kept: back where it was
}


@dataclass(slots=True)
class HeldPartition:
    """What holding a partition takes: its core, its store, the epoch it is held at and the
    position committed. Lives as long as one holding (a partition taken again gets a new one)."""

    tp: TopicPartition
    store: PartitionStore
    core: PartitionCore
    epoch: int
    next_offset: int  # a position: log offset + base
    base: int = 0  # added to this log's offsets to make positions (allocator/shell/which_log.py)
    log_id: str | None = None
    log_mark: int | None = None
    checked_at: float = 0.0  # when its log was last looked at, while UNSURE
    # Held while a batch of this partition is in hand, and by whatever else changes its
    # core or its position: each partition is decided beside the others, never with them.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    seeks: int = 0  # positions set so far: records read before the last one are stale
    failures: int = 0  # batches failed in a row at `next_offset`


@dataclass(slots=True)
class Given:
    """One partition in the table."""

    tp: TopicPartition
    phase: Phase
    held: HeldPartition | None = None  # while HELD or LEAVING
    troubles: Unready = field(default_factory=Unready)  # why it is not deciding (or badly)
    retry_at: float = 0.0  # WAITING: when to try to take it again (monotonic)
    left: Phase | None = None  # LEAVING: the phase it goes back to if kept


class Reader(Protocol):
    """The consumer, as far as the table steers it."""

    def pause(self, *partitions: TopicPartition) -> None: ...
    def resume(self, *partitions: TopicPartition) -> None: ...
    def seek(self, partition: TopicPartition, offset: int) -> None: ...
    def highwater(self, partition: TopicPartition) -> int | None: ...
    def partitions_for_topic(self, topic: str) -> set[int] | None: ...


class Partitions:
    def __init__(self, reader: Reader, fenced_again_after_s: float | None) -> None:
        self.reader = reader
        # In a group, a partition fenced out is taken again after this (a session's time,
        # when the group has dropped the member that fenced us); given, never (None).
        self.fenced_again_after_s = fenced_again_after_s
        self.given: dict[TopicPartition, Given] = {}

    # What is where.

    def listed(self) -> list[Given]:
        return sorted(self.given.values(), key=lambda g: g.tp.partition)

    def held(self) -> list[HeldPartition]:
        """The partitions held now, in partition order."""
        return [g.held for g in self.listed() if g.phase in HELD and g.held is not None]

    def holding(self, tp: TopicPartition) -> HeldPartition | None:
        given = self.given.get(tp)
        return given.held if given is not None and given.phase in HELD else None

    def phase(self, held: HeldPartition) -> Phase | None:
        """Its phase, or None once this holding is over (let go, fenced, taken anew)."""
        given = self._holding(held)
        return given.phase if given is not None else None

    def deciding(self, held: HeldPartition) -> bool:
        return self.phase(held) in DECIDING

    def due(self, now: float) -> list[TopicPartition]:
        """The waiting partitions whose time to be taken again has come."""
        return [g.tp for g in self.listed() if g.phase is Phase.WAITING and now >= g.retry_at]

    def unready(self) -> str | None:
        """Why the first partition in trouble is, or None. A fenced one counts only when
        every partition is fenced: the others go on deciding."""
        listed = self.listed()
        if listed and all(g.phase is Phase.FENCED for g in listed):
            return "fenced out of every partition it was given"
        for given in listed:
            trouble = given.troubles.first()
            if trouble is not None and given.phase is not Phase.FENCED:
                return f"partition {given.tp.partition}: {trouble}"
        return None

    def lag(self, held: HeldPartition) -> int | None:
        """Records of this partition not decided yet, as far as the broker last said; None
        unless held (one set aside while the group decides is assigned to no one)."""
        highwater = self.reader.highwater(held.tp) if self.phase(held) is not None else None
        return None if highwater is None else max(highwater + held.base - held.next_offset, 0)

    def owns(self, tp: TopicPartition) -> Callable[[str], bool]:
        """Whether a coupon's commands go to this partition."""
        partitions = len(self.reader.partitions_for_topic(tp.topic) or {0})
        return lambda coupon_id: partition_of(coupon_id, partitions) == tp.partition

    # Moves: each says what it does, none awaits.

    def taking(self, tp: TopicPartition) -> None:
        """Given (or its time to be taken again came): its fence is being raised."""
        if tp in self.given:
            self._move(self.given[tp], Phase.TAKING)  # why it was not taken stays, till it is
        else:
            self.given[tp] = given = Given(tp, Phase.TAKING)
            self._steer(given)

    def taken(self, held: HeldPartition) -> None:
        given = self.given[held.tp]
        given.held = held
        self._move(given, Phase.UNSURE)
        given.troubles.clear(NOT_TAKEN)

    def wait(self, tp: TopicPartition, after_s: float, why: str) -> None:
        """Not taken (or fenced out, in a group): taken again `after_s` from now."""
        given = self.given[tp]
        self._move(given, Phase.WAITING)
        given.held, given.retry_at = None, time.monotonic() + after_s
        given.troubles = Unready({NOT_TAKEN: why})  # a holding's own troubles end with it

    def suspect(self, held: HeldPartition) -> None:
        """Decide nothing more until its log is known to be the position's."""
        given = self._holding(held)
        if given is not None and given.phase in DECIDING:
            self._move(given, Phase.UNSURE)

    def known(self, held: HeldPartition) -> None:
        """Its log is the position's: decide on."""
        given = self._holding(held)
        if given is not None:
            self._move(given, Phase.COLD)
            given.troubles.clear(LOG)

    def warmed(self, held: HeldPartition) -> None:
        """Its coupons with deadlines are loaded: timers run. Unless its log became suspect
        while they loaded: they are loaded again once it is known."""
        given = self._holding(held)
        if given is not None and given.phase is Phase.COLD:
            self._move(given, Phase.WARM)
            given.troubles.clear(DEADLINES)

    def reset(self, held: HeldPartition, core: PartitionCore) -> None:
        """The core forgot what it held (a failed batch, a new log, a resume): a fresh one,
        which loads its deadlines again before timers run."""
        held.core = core
        given = self._holding(held)
        if given is not None and given.phase is Phase.WARM:
            self._move(given, Phase.COLD)

    def trouble(self, held: HeldPartition, source: str, why: str | None) -> None:
        """What troubles it from `source` (LOG, DEADLINES, BATCH), or None: cleared."""
        given = self._holding(held)
        if given is None:
            return
        if why is None:
            given.troubles.clear(source)
        else:
            given.troubles.say(source, why)

    def fenced(self, held: HeldPartition, fenced: Fenced) -> None:
        """Another allocator holds it at a later epoch: never write to it again at ours.
        In a group it is taken again after a while if the group still gives it (the other
        was a member the group had dropped, and now knows it)."""
        given = self._holding(held)
        if given is None:
            return
        FENCED.inc()
        log.warning("%s: stopping work on this partition", fenced)
        why = f"fenced out: {fenced}"
        if self.fenced_again_after_s is not None:
            self.wait(held.tp, self.fenced_again_after_s, why)
            return
        self._move(given, Phase.FENCED)
        given.held, given.troubles = None, Unready({"fenced": why})

    def leave(self, tp: TopicPartition) -> None:
        """The group takes it back: kept aside (LEAVING) if held, forgotten otherwise."""
        given = self.given.get(tp)
        if given is not None and given.phase in HELD:
            given.left = given.phase
            self._move(given, Phase.LEAVING)
        elif given is not None:
            del self.given[tp]

    def leaving(self, tp: TopicPartition) -> HeldPartition | None:
        given = self.given.get(tp)
        return given.held if given is not None and given.phase is Phase.LEAVING else None

    def keep(self, tp: TopicPartition) -> None:
        """Given straight back and still ours: back where it was, core and all."""
        given = self.given[tp]
        assert given.left is not None
        self._move(given, given.left)

    def forget_leaving(self) -> None:
        """The group's new share is given: what it did not give back is its next owner's."""
        for tp in [g.tp for g in self.given.values() if g.phase is Phase.LEAVING]:
            del self.given[tp]

    def seek(self, held: HeldPartition, offset: int) -> None:
        """Read the partition on from log offset `offset`: records read before are stale."""
        held.seeks += 1
        self.reader.seek(held.tp, offset)

    def _holding(self, held: HeldPartition) -> Given | None:
        """Its entry while this holding lasts; None once it is over (or set aside, LEAVING)."""
        given = self.given.get(held.tp)
        held_now = given is not None and given.held is held and given.phase in HELD
        return given if held_now else None

    def _move(self, given: Given, to: Phase) -> None:
        was = given.phase
        assert (was, to) in MOVES, f"{given.tp}: no move from {was} to {to}"
        given.phase = to
        label = str(given.tp.partition)
        if to in HELD and was not in HELD:
            OWNED.labels(label).set(1)
        elif was in HELD and to not in HELD:
            OWNED.remove(label)
            LAG.remove(label)
        self._steer(given)

    def _steer(self, given: Given) -> None:
        """The consumer reads a partition while it decides it, and only then."""
        if given.phase is Phase.LEAVING:
            return  # no longer assigned: nothing to steer
        if given.phase in DECIDING:
            self.reader.resume(given.tp)
        else:
            self.reader.pause(given.tp)
