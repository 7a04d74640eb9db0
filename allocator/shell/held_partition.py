"""A partition this allocator holds, and where it is in its life.

    UNSURE ──(its log is the position's)──▶ COLD ──(deadlines loaded)──▶ WARM
       ▲                                     │ ▲                            │
       └──────(the log may be new)───────────┘ └──(the core forgot: reset)──┘

UNSURE: paused; not one record is decided until the log is known to be the one the stored
position belongs to (allocator/shell/which_log.py). A partition starts here. COLD: deciding, but
the coupons with deadlines are not loaded into the core yet, so no timer runs. WARM:
deciding, timers running.
"""

import asyncio
import enum
from dataclasses import dataclass, field

from aiokafka import TopicPartition

from allocator.core.decide import PartitionCore
from allocator.shell.store import PartitionStore


class Phase(enum.Enum):
    UNSURE = "unsure"
    COLD = "cold"
    WARM = "warm"


MOVES = {
    (Phase.UNSURE, Phase.COLD),
    (Phase.COLD, Phase.WARM),
    (Phase.COLD, Phase.UNSURE),
    (Phase.WARM, Phase.UNSURE),
    (Phase.WARM, Phase.COLD),
}


@dataclass(slots=True)
class HeldPartition:
    """A partition this allocator holds: its core, store, epoch and committed position."""

    tp: TopicPartition
    store: PartitionStore
    core: PartitionCore
    epoch: int
    next_offset: int  # a position: log offset + base
    base: int = 0  # added to this log's offsets to make positions (allocator/shell/which_log.py)
    log_id: str | None = None
    log_mark: int | None = None
    checked_at: float = 0.0  # when its log was last looked at, while UNSURE
    phase: Phase = Phase.UNSURE
    # Held while a batch of this partition is in hand, and by whatever else changes its
    # core or its position: each partition is decided beside the others, never with them.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    seeks: int = 0  # positions set so far: records read before the last one are stale
    failures: int = 0  # batches failed in a row at `next_offset`
    problem: str | None = None  # why it is not deciding, while it is not

    def move(self, to: Phase) -> None:
        assert (self.phase, to) in MOVES, f"{self.tp}: no move from {self.phase} to {to}"
        self.phase = to

    @property
    def deciding(self) -> bool:
        return self.phase is not Phase.UNSURE

    def reset(self, core: PartitionCore) -> None:
        """The core forgot what it held (a failed batch, a new log, a resume): a fresh one,
        which loads its deadlines again before timers run."""
        self.core = core
        if self.phase is Phase.WARM:
            self.move(Phase.COLD)
