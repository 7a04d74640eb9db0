"""What went wrong, in one line, for a person at a terminal (cli/main.py prints it).

Each dependency's failure is named with where the command looked for it and where that
setting came from (the environment, or the local stack's settings file)."""

import os
from urllib.parse import urlsplit

import asyncpg
from aiokafka.errors import KafkaConnectionError, KafkaError

from deploy import local
from runtime import errors
from runtime.settings import SettingsError


def explain(error: BaseException) -> str:
    if isinstance(error, SettingsError | errors.CouponsError) and not isinstance(
        error, errors.Unavailable
    ):
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
