"""PostgreSQL: connection pools and the migration runner (schemas/migrations/*.sql)."""

import importlib.resources
import logging

import asyncpg

log = logging.getLogger(__name__)


async def forget_connections(pool: asyncpg.Pool) -> None:
    """After a database failure: open fresh connections rather than reuse broken ones."""
    await pool.expire_connections()


MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)"""


def migrations() -> list[tuple[int, str, str, str]]:
    """(version, name, up, down) for every migration file, in order."""
    found = []
    for entry in importlib.resources.files("schemas").joinpath("migrations").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        text = entry.read_text()
        up, _, down = text.partition("-- down")
        found.append((int(entry.name.split("_", 1)[0]), entry.name, up, down))
    return sorted(found)


async def migrate(url: str, target: int | None = None) -> list[str]:
    """Move the schema up (or down) to `target` (default: newest). Returns what ran."""
    ran: list[str] = []
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(MIGRATIONS_TABLE)
        async with conn.transaction():
            await conn.execute("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")
            applied = {
                r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")
            }
            steps = migrations()
            goal = target if target is not None else max((v for v, *_ in steps), default=0)
            for version, name, up, _down in steps:
                if version <= goal and version not in applied:
                    await conn.execute(up)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        version,
                        name,
                    )
                    ran.append(f"up {name}")
            for version, name, _up, down in reversed(steps):
                if version > goal and version in applied:
                    await conn.execute(down)
                    await conn.execute("DELETE FROM schema_migrations WHERE version = $1", version)
                    ran.append(f"down {name}")
    finally:
        await conn.close()
    for step in ran:
        log.info("migration %s", step)
    return ran


async def create_database(admin_url: str, name: str) -> str:
    """A new, migrated database next to the one `admin_url` names; returns its URL."""
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    await migrate(url)
    return url


async def create_pool(url: str, size_max: int) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        url, min_size=1, max_size=size_max, command_timeout=10, timeout=5
    )
    assert pool is not None
    return pool


async def unreachable(pool: asyncpg.Pool) -> str | None:
    """Why the database cannot serve us now, or None when it answers."""
    try:
        await pool.fetchval("SELECT 1")
    except Exception as error:  # noqa: BLE001 - any failure means not ready
        return f"database: {error}"
    return None
