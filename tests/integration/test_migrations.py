"""Migrations go up, down and up again on a real PostgreSQL."""

import uuid

import asyncpg
import pytest

from deploy.stack import Infra
from runtime.db import migrate, migrations

pytestmark = pytest.mark.integration


async def tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename <> 'schema_migrations'"
        )
    finally:
        await conn.close()
    return {r["tablename"] for r in rows}


async def test_upgrade_downgrade_upgrade(infra: Infra) -> None:
    name = f"m_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(infra.postgres.url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = infra.postgres.url.rsplit("/", 1)[0] + f"/{name}"
    newest = [f"up {n}" for _, n, _, _ in migrations()]
    assert await migrate(url) == newest
    created = await tables(url)
    assert {"coupons", "grants", "decisions", "allocator_partitions"} <= created
    assert await migrate(url) == []
    assert await migrate(url, target=0) == [f"down {n}" for _, n, _, _ in reversed(migrations())]
    assert await tables(url) == set()
    assert await migrate(url) == newest
    assert await tables(url) == created
