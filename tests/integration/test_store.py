"""The partition row's fence against a real PostgreSQL: a stale owner is fenced out, but
our own commit that landed unheard is recognised as ours."""

import asyncio
import uuid

import asyncpg
import pytest

from allocator.core.effects import Effects
from allocator.shell.store import Fenced, Landed, PartitionStore
from deploy.stack import Infra
from runtime.db import create_database

pytestmark = pytest.mark.integration


def test_a_commit_that_landed_unheard_is_ours_and_a_stale_owner_is_fenced(infra: Infra) -> None:
    async def scenario() -> None:
        url = await create_database(infra.postgres.url, f"store_{uuid.uuid4().hex[:12]}")
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        try:
            mine = PartitionStore(pool, "commands", 0, "a")
            taken = await mine.acquire()
            assert (
                await mine.commit(taken.epoch, taken.next_offset, Effects(10), b"batch-1") is None
            )
            # The same batch again, as after a commit whose answer was lost: not fenced.
            landed = await mine.commit(taken.epoch, taken.next_offset, Effects(10), b"batch-1")
            assert isinstance(landed, Landed), landed
            assert (landed.row.next_offset, landed.row.outbox) == (10, b"batch-1")
            usurper = PartitionStore(pool, "commands", 0, "b")
            newer = await usurper.acquire()
            with pytest.raises(Fenced):
                await mine.commit(taken.epoch, 10, Effects(20), b"stale")
            await usurper.commit(newer.epoch, newer.next_offset, Effects(20), b"batch-2")
        finally:
            await pool.close()

    asyncio.run(scenario())
