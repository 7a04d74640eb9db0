"""A ticket polled while its request moves from the line to its decision: the allocator
commits both at once, and the ticket must see one or the other, never neither (which it
would answer as 'lost': told to send again a request that was granted)."""

import asyncio
import time
import uuid

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from deploy.stack import Infra
from runtime import kafka
from runtime.settings import Settings
from schemas.tickets import mint
from tests.support.client import create_coupon
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

BLOCKED_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.02


async def test_a_ticket_read_across_the_commit_that_decides_it_is_never_lost(
    stack: Stack,
) -> None:
    async with aiohttp.ClientSession() as session:
        coupon_id = (await create_coupon(session, stack, 10))["id"]
    request_id = str(uuid.uuid4())
    ticket = mint(Settings.from_env(stack.env).ticket_secret, coupon_id, request_id)
    assert stack.notifier is not None
    url = f"{stack.notifier.url}/v1/tickets/{ticket}"
    # The claim waits in line, below the partition's position (the allocator has read it).
    await stack.fetch(
        "INSERT INTO claim_line (request_id, coupon_id, user_id, at, reply_to, log_offset,"
        " reserving) VALUES ($1, $2, 'waiter', 0, '', 0, false)",
        request_id,
        coupon_id,
    )
    mover = await stack.db()
    try:
        # The allocator's commit, held open: the ticket's read of the line waits for it.
        transaction = mover.transaction()
        await transaction.start()
        await mover.execute("LOCK TABLE claim_line IN ACCESS EXCLUSIVE MODE")
        async with aiohttp.ClientSession() as session:
            polled = asyncio.create_task(_get(session, url))
            await _until_blocked(stack)
            await mover.execute("DELETE FROM claim_line WHERE request_id = $1", request_id)
            await mover.execute(
                "INSERT INTO decisions (request_id, coupon_id, user_id, outcome, reason,"
                " decided_at, log_partition, log_offset) VALUES ($1, $2, 'waiter', 'rejected',"
                " 'sold_out', now(), 0, 0)",
                request_id,
                coupon_id,
            )
            await transaction.commit()
            answer = await polled
    finally:
        await mover.close()
    # Read before the commit: still in line. (After it, the decision.) Never 'lost'.
    assert answer.get("reason") != "lost", answer
    assert answer["status"] in ("pending", "rejected"), answer


async def _get(session: aiohttp.ClientSession, url: str) -> dict[str, object]:
    async with session.get(url) as response:
        body: dict[str, object] = await response.json(content_type=None)
        assert response.status == 200, body
        return body


async def _until_blocked(stack: Stack) -> None:
    """Until some session waits for the lock on claim_line (the ticket's read)."""
    deadline = time.monotonic() + BLOCKED_TIMEOUT_S
    while not await stack.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        " AND query LIKE '%claim_line%'"
    ):
        assert time.monotonic() < deadline, "the ticket never read the line"
        await asyncio.sleep(POLL_INTERVAL_S)


async def test_a_topic_missing_when_first_asked_about_is_found_once_made(infra: Infra) -> None:
    """The notifier learns a commands topic's partitions from its reader's metadata. After a
    broker restarted empty it may ask before the topic is made again; the client keeps the
    topic's absence until its metadata ages out (5 minutes), every ticket answered 503
    meanwhile (seen in the fault test of that restart)."""
    bootstrap = infra.broker.bootstrap_servers
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    topic = f"missing-{uuid.uuid4().hex[:8]}.coupon.commands"
    await reader.start()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        first = await kafka.partitions_for(reader, topic)
        if infra.broker_kind != "kafka":
            # Tansu makes a topic it is asked about (with partitions of its choosing): the
            # case cannot arise there.
            assert first, first
            return
        assert first is None
        await admin.create_topics([NewTopic(topic, 3, 1)])
        deadline = time.monotonic() + BLOCKED_TIMEOUT_S
        while (found := await kafka.partitions_for(reader, topic)) is None:
            assert time.monotonic() < deadline, "the topic made was never seen"
            await asyncio.sleep(POLL_INTERVAL_S)
        assert found == {0, 1, 2}
    finally:
        await admin.close()
        await reader.stop()
