"""A batch PostgreSQL refuses for what it holds: find the records at fault, refuse them,
commit the rest.

A database that is away is waited for (the shell retries the batch). A database that
refuses a batch because of a value in it would refuse the same batch forever, and every
command behind it on the partition would wait forever: the poison message. So the batch is
split instead. Prefixes of it are decided and written in transactions that are rolled back,
halving until the first record whose addition makes PostgreSQL refuse is found; that
record is marked at fault (the core refuses it, with a decision when it names a request),
and the whole batch is decided again. Each round marks one more record, so it ends.

The refusals are stored with the batch (`refused_commands`), so a replay makes them again.
"""

import logging
from collections.abc import Awaitable, Callable

from prometheus_client import Counter

from allocator.core.effects import Effects, Record
from allocator.shell.store import Landed
from runtime import errors
from runtime.produce import Message

log = logging.getLogger(__name__)

POISONED = Counter(
    "coupons_allocator_poisoned_total",
    "Commands PostgreSQL refused to store, found by splitting their batch, and refused",
)
TRIALS = Counter(
    "coupons_allocator_isolation_trials_total", "Rolled-back trial commits made to find them"
)

# Decide `records` afresh from what PostgreSQL holds, and write them: committed, or with
# `trial` rolled back. Raises what the database raised.
Batch = tuple[Effects, list[Message]]  # a batch committed: its effects, its messages
# A batch committed (or tried, and rolled back) without what it is told; Landed when the
# row had moved on: an earlier commit of ours landed unheard (allocator/shell/store.py).
Attempt = Callable[[list[Record], bool], Awaitable[Batch | Landed]]


Refuses = Callable[[BaseException], bool]  # whether a failure is the batch's own fault


def refusing(error: BaseException) -> bool:
    """PostgreSQL (or asyncpg encoding a COPY) refuses what the batch holds."""
    return errors.data_refused(error, encoding=True)


def repeating(error: BaseException) -> bool:
    """A refusal, or a failure that came again and again while the database answered: a
    statement cancelled (its timeout), a conflict. Not a connection lost."""
    return (
        refusing(error)
        or isinstance(errors.of(error), errors.DatabaseFailed)
        or (isinstance(error, TimeoutError))
    )


class Unisolable(errors.CouponsError):
    """The batch is refused even with the record found at fault refused: the fault is not
    in one record. Treated as a failing database: retried later."""

    retriable = True


async def isolate(
    records: list[Record], attempt: Attempt, error: BaseException, refuses: Refuses = refusing
) -> Batch | Landed:
    """Commit `records`, which PostgreSQL refused with `error`, minus the records at fault:
    those that `refuses` the failure of."""
    faults: dict[int, str] = {}
    while True:
        marked = [_marked(r, faults) for r in records]
        found = await _first_at_fault(marked, attempt, error, refuses)
        if isinstance(found, Landed):
            return found
        culprit, why = found
        if culprit.fault is not None:
            raise Unisolable(f"refused even without the record at {culprit.offset}: {why}")
        faults[culprit.offset] = f"PostgreSQL refused it: {errors.said(why)}"
        POISONED.inc()
        log.error(
            "record at %d refused: PostgreSQL will not store it (%s)", culprit.offset,
            errors.said(why),
        )  # fmt: skip
        try:
            return await attempt([_marked(r, faults) for r in records], False)
        except Exception as again:
            if not refuses(again):
                raise
            error = again


async def _first_at_fault(
    marked: list[Record], attempt: Attempt, error: BaseException, refuses: Refuses
) -> tuple[Record, BaseException] | Landed:
    """The first record whose addition to the ones before it makes PostgreSQL refuse.
    `marked` as a whole is refused with `error`; nothing is refused before its first."""
    passes, fails = 0, len(marked)  # marked[:passes] is stored; marked[:fails] is refused
    while fails - passes > 1:
        middle = (passes + fails) // 2
        TRIALS.inc()
        try:
            tried = await attempt(marked[:middle], True)
        except Exception as refused:
            if not refuses(refused):
                raise
            fails, error = middle, refused
        else:
            if isinstance(tried, Landed):
                return tried
            passes = middle
    return marked[fails - 1], error


def _marked(record: Record, faults: dict[int, str]) -> Record:
    fault = faults.get(record.offset)
    return record if fault is None else Record(record.offset, record.command, fault)
