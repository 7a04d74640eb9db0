"""Failures, and whether they are worth retrying: one root, and a flag on each class, as
aiokafka's errors.py has them.

The libraries raise their own exceptions (asyncpg, aiokafka, the socket layer); `of()`
says, in this one place, which of ours such an exception is. Code that must tell a
failure it waits out from one it must not repeat asks the class, not a tuple of types.
An exception `of()` does not know is a programming error: it is not caught.
"""

import asyncpg
from aiokafka import errors as kafka
from aiokafka.errors import KafkaError

# The root, and what a person must correct, live in schemas/ (the lowest layer raises them too).
from schemas.errors import BadInput as BadInput
from schemas.errors import CouponsError as CouponsError


class Unavailable(CouponsError):
    """A dependency is away, stopped, restarting or overloaded: wait and try again."""

    retriable = True


class DatabaseUnavailable(Unavailable):
    """PostgreSQL is away, or the connection died (asyncpg#1069: never reuse it)."""


class BrokerUnavailable(Unavailable):
    """The broker did not answer, or refused for now."""


class BrokerRefused(CouponsError):
    """The broker refuses the request for what it is (too large, a topic it will not take,
    not authorised): the same request gets the same answer, so it is never waited out."""


class DatabaseFailed(CouponsError):
    """A statement failed for another reason (a conflict, a lock, a cancelled query):
    nothing was committed, and running it again may pass."""

    retriable = True


class DataRefused(CouponsError):
    """PostgreSQL refuses what a statement holds: a value out of range or not text, a
    broken constraint, a row too big for an index. The same statement gets the same
    answer: it must not be repeated as it is (allocator/shell/isolation.py)."""


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
# What the broker says of a request itself, not of its own state: sent again, it is
# refused again (aiokafka's own `retriable` flag says False of outages too, such as
# KafkaTimeoutError and BrokerNotAvailableError, so it is not asked).
BROKER_REFUSALS = (
    kafka.MessageSizeTooLargeError,
    kafka.RecordTooLargeError,
    kafka.RecordListTooLargeError,
    kafka.InvalidMessageError,
    kafka.InvalidTimestampError,
    kafka.InvalidTopicError,
    kafka.InvalidRequestError,
    kafka.InvalidRequiredAcksError,
    kafka.PolicyViolationError,
    kafka.TopicAuthorizationFailedError,
    kafka.ClusterAuthorizationFailedError,
    kafka.GroupAuthorizationFailedError,
    kafka.AuthenticationFailedError,
    kafka.SaslAuthenticationFailed,
    kafka.UnsupportedVersionError,
    kafka.UnsupportedForMessageFormatError,
    kafka.UnsupportedCodecError,
    kafka.KafkaConfigurationError,
    kafka.IllegalArgumentError,
)
# asyncpg's COPY encodes values in Python: a value it cannot send raises these, not DataError.
ENCODING = (ValueError, TypeError, OverflowError)


def of(error: BaseException) -> CouponsError | None:
    """Which of our failures `error` is; None for one we do not know (a programming error)."""
    if isinstance(error, CouponsError):
        return error
    if isinstance(error, DATA):
        return DataRefused(said(error))
    if isinstance(error, DATABASE_AWAY):
        return DatabaseUnavailable(said(error))
    if isinstance(error, asyncpg.PostgresError):
        return DatabaseFailed(said(error))
    if isinstance(error, BROKER_REFUSALS):
        return BrokerRefused(said(error))
    if isinstance(error, KafkaError):
        return BrokerUnavailable(said(error))
    if isinstance(error, OSError | TimeoutError):
        return Unavailable(said(error))
    return None


def said(error: BaseException) -> str:
    """An error in words, never empty: some (a cancelled statement, a broker's refusal)
    carry no text of their own, and a log line of "()" tells nobody anything."""
    try:
        text = str(error).strip()
    except Exception:  # noqa: BLE001 - a library's __str__ that breaks on its own args
        text = ""
    name = type(error).__name__
    return f"{name}: {text}" if text and name not in text else text or name


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
