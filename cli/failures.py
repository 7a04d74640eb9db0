"""The one failure path of the command line: an error becomes one line on standard error
and an exit status a script can branch on.

Each dependency's failure is named with where the command looked for it and where that
setting came from (the environment, or the local stack's settings file)."""

import errno
import os
import sys
from urllib.parse import urlsplit

import asyncpg
from aiokafka.errors import KafkaConnectionError, KafkaError

from deploy import client, local
from runtime import errors

# Exit statuses; deploy/client.py's, for the commands that call the API, mean the same.
FAILED = 1  # a dependency failed (or a fault of ours): as it is, the command may pass later
BAD_INPUT = client.BAD  # 2: what was given must be corrected (errors.BadInput)
UNAVAILABLE = client.UNAVAILABLE  # 4: the service did not answer: try again later


def fail(error: Exception, faults_in_a_line: bool) -> int:
    """`error` said in one line on standard error; its exit status. A fault of ours (an
    exception runtime/errors.py does not know) keeps its traceback, the finder of it, unless
    `faults_in_a_line` (a command a person runs at a terminal); COUPONS_DEBUG=1 keeps every
    traceback."""
    if os.environ.get("COUPONS_DEBUG") or not (faults_in_a_line or errors.known(error)):
        raise error
    print(f"coupons: {explain(error)}", file=sys.stderr)
    return status(error)


def status(error: BaseException) -> int:
    if isinstance(error, client.Unreachable):
        return UNAVAILABLE
    return BAD_INPUT if isinstance(error, errors.BadInput) else FAILED


def explain(error: BaseException) -> str:
    if isinstance(error, errors.CouponsError) and not isinstance(error, errors.Unavailable):
        return str(error)
    if isinstance(error, KafkaConnectionError) or (
        isinstance(error, KafkaError) and "bootstrap" in str(error).lower()
    ):
        return f"cannot reach the broker at {_broker()}{local.origin()}"
    if isinstance(error, asyncpg.InvalidCatalogNameError):
        return f"PostgreSQL at {_database()} has no such database{local.origin()}"
    if isinstance(error, asyncpg.UndefinedTableError):
        return f"the database at {_database()} has no coupons tables: run `coupons migrate`"
    if isinstance(error, asyncpg.InvalidAuthorizationSpecificationError):
        return f"PostgreSQL at {_database()} refused the login: {error}"
    if isinstance(error, OSError) and error.filename is not None:  # a file it was given
        return f"{error.filename}: {error.strerror or error}"
    if isinstance(error, OSError) and error.errno == errno.EADDRINUSE:  # a part's port
        return str(error.strerror)
    if isinstance(error, OSError | asyncpg.PostgresConnectionError | asyncpg.InterfaceError):
        return f"cannot reach PostgreSQL at {_database()}{local.origin()}: {error}"
    if isinstance(error, KafkaError):
        return f"the broker at {_broker()} failed: {error!r}"
    said = str(error) or "no detail"
    return f"{type(error).__name__}: {said} (COUPONS_DEBUG=1 shows where)"


def _broker() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "(KAFKA_BOOTSTRAP_SERVERS unset)")


def _database() -> str:
    """host:port/name of DATABASE_URL, without its password."""
    url = urlsplit(os.environ.get("DATABASE_URL", ""))
    return f"{url.hostname}:{url.port or 5432}{url.path}" if url.hostname else "DATABASE_URL"
