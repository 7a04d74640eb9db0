"""Failures, and whether they are worth retrying: one root, and a flag on each class, as
aiokafka's errors.py has them.

The libraries raise their own exceptions (asyncpg, aiokafka, the socket layer); `of()`
says, in this one place, which of ours such an exception is. Code that must tell a
failure it waits out from one it must not repeat asks the class, not a tuple of types.
An exception `of()` does not know is a programming error: it is not caught.
"""

import asyncpg
from aiokafka.errors import KafkaError


class CouponsError(Exception):
    """The root of our failures."""

    retriable: bool = False  # the same operation, tried again later, may succeed


class Unavailable(CouponsError):
    """A dependency is away, stopped, restarting or overloaded: wait and try again."""

    retriable = True


class DatabaseUnavailable(Unavailable):
    """PostgreSQL is away, or the connection died (asyncpg#1069: never reuse it)."""


class BrokerUnavailable(Unavailable):
    """The broker did not answer, or refused for now."""


class DatabaseFailed(CouponsError):
    """A statement failed for another reason (a conflict, a lock, a cancelled query):
    nothing was committed, and running it again may pass."""

    retriable = True


class DataRefused(CouponsError):
    """PostgreSQL refuses what a statement holds: a value out of range or not text, a
    broken constraint, a row too big for an index. The same statement gets the same
    answer: it must not be repeated as it is (allocator/isolation.py)."""


DATABASE_AWAY = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)
DATA = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.ProgramLimitExceededError,
)
# asyncpg's COPY encodes values in Python: a value it cannot send raises these, not DataError.
ENCODING = (ValueError, TypeError, OverflowError)


def of(error: BaseException) -> CouponsError | None:
    """Which of our failures `error` is; None for one we do not know (a programming error)."""
    if isinstance(error, CouponsError):
        return error
    if isinstance(error, DATA):
        return DataRefused(str(error))
    if isinstance(error, DATABASE_AWAY):
        return DatabaseUnavailable(str(error))
    if isinstance(error, asyncpg.PostgresError):
        return DatabaseFailed(str(error))
    if isinstance(error, KafkaError):
        return BrokerUnavailable(str(error))
    if isinstance(error, OSError | TimeoutError):
        return Unavailable(str(error))
    return None


def known(error: BaseException) -> bool:
    """A dependency's failure, of whatever kind (not a programming error)."""
    return of(error) is not None


def retriable(error: BaseException) -> bool:
    failure = of(error)
    return failure is not None and failure.retriable


def unavailable(error: BaseException) -> bool:
    return isinstance(of(error), Unavailable)


def data_refused(error: BaseException, encoding: bool = False) -> bool:
    """Whether PostgreSQL (or, with `encoding`, asyncpg encoding a COPY) refused what a
    statement holds."""
    return isinstance(of(error), DataRefused) or (encoding and isinstance(error, ENCODING))
