"""PostgreSQL stopped and the broker frozen under a claim load: clients get 202 or 503,
never a 500 or silence; service resumes by itself; nothing is lost or doubled."""

import asyncio
import os
import signal
import time
from collections.abc import Iterator

import pytest

from deploy.embedded import start_postgres
from deploy.stack import Infra, http_ready, start_broker_of
from tests.support.client import (
    POLL_INTERVAL_S,
    create_coupon,
    grants_of,
    pending_answers_reach,
    post,
    wait_for_grants,
)
from tests.support.client import session as client_session
from tests.support.load import check, report, stored_grants, sustained_load
from tests.support.stack import Stack, broker_kind, running_infra

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def infra(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[Infra]:
    """A broker and a PostgreSQL of this module's own: its tests stop and freeze them."""
    yield from running_infra(tmp_path_factory.mktemp("outages"), broker_kind(pytestconfig))


async def readiness_becomes(url: str, wanted: bool, timeout_s: float = 60) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if await asyncio.to_thread(http_ready, url) == wanted:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(POLL_INTERVAL_S)


async def test_postgres_stopped_and_started_again(infra: Infra, stack: Stack) -> None:
    started = time.monotonic()
    users, count = 1200, 1000
    async with client_session(128, 30) as session:
        coupon = (await create_coupon(session, stack, count))["id"]
        load = sustained_load(session, stack, coupon, "p", users, per_s=200, wait_s=1)
        await wait_for_grants(stack, coupon, count // 10, timeout_s=60)
        infra.postgres.process.stop()
        down_at = time.monotonic()
        allocator = stack.allocators[-1].url
        assert await readiness_becomes(allocator, False), "readiness never reported the outage"
        assert await pending_answers_reach(session, stack, 100)  # claims answered 202 meanwhile
        async with session.get(f"{stack.notifier.url if stack.notifier else ''}/readyz") as r:
            notifier_ready = r.status
        infra.postgres = await asyncio.to_thread(
            start_postgres, infra.root / "postgres", infra.postgres.port
        )
        outage_s = time.monotonic() - down_at
        assert await readiness_becomes(allocator, True), "the allocator did not resume"
        outcomes = await load
    figures = check(outcomes, await stored_grants(stack, coupon), count)
    assert notifier_ready == 503
    report("PostgreSQL stopped", f"for {outage_s:.1f} s, readiness 503 meanwhile", figures,
           started)  # fmt: skip


async def test_the_broker_frozen_then_thawed(infra: Infra, stack: Stack) -> None:
    started = time.monotonic()
    users, count = 600, 500
    broker = infra.broker.process.pid
    async with client_session(128, 30) as session:
        coupon = (await create_coupon(session, stack, count))["id"]
        load = sustained_load(session, stack, coupon, "b", users, per_s=100, wait_s=1)
        await wait_for_grants(stack, coupon, count // 10, timeout_s=60)
        os.kill(broker, signal.SIGSTOP)  # the broker stops answering; nothing is refused
        try:
            frozen_at = (await grants_of(stack, coupon))[0]
            probe = await post(
                session,
                f"{stack.gateway_url}/v1/coupons/{coupon}/claims",
                stack.token("probe"),
                {},
                {"Prefer": "wait=1", "Idempotency-Key": "probe"},
            )
        finally:
            os.kill(broker, signal.SIGCONT)
        outcomes = await load
    stored = await stored_grants(stack, coupon)
    # The probe was told 503: its command may still have reached the log before the freeze
    # and been granted then (its retry would learn so); the clients share the rest.
    probe_granted = stored.pop("probe", None) is not None
    figures = check(outcomes, stored, count - probe_granted)
    assert probe.status == 503 and probe.headers["Retry-After"], probe.body
    assert probe.seconds < 10, f"a 503 should come within the produce timeout: {probe.seconds}"
    report("broker frozen", f"at {frozen_at} grants; a claim meanwhile got 503 in"
           f" {probe.seconds:.1f} s", figures, started)  # fmt: skip


async def test_the_broker_restarted_empty(infra: Infra, stack: Stack) -> None:
    """The embedded broker keeps its logs in memory: a restart loses what no allocator had
    decided yet. Claims accepted into the lost log answer 'lost' on their ticket, clients
    send them again with their key, and the allocator goes on with the new log."""
    started = time.monotonic()
    users = count = 800
    allocators = [part.process.pid for part in stack.allocators]
    port = int(infra.broker.bootstrap_servers.rsplit(":", 1)[1])
    async with client_session(128, 30) as session:
        coupon = (await create_coupon(session, stack, count))["id"]
        load = sustained_load(session, stack, coupon, "e", users, per_s=100, wait_s=1)
        await wait_for_grants(stack, coupon, count // 5, timeout_s=60)
        for pid in allocators:  # commands pile up in the log, accepted and undecided
            os.kill(pid, signal.SIGSTOP)
        try:
            assert await pending_answers_reach(session, stack, 30)
            infra.broker.process.stop()
            infra.broker = await asyncio.to_thread(
                start_broker_of, infra.broker_kind, infra.root / "broker-2", port
            )
        finally:
            for pid in allocators:
                os.kill(pid, signal.SIGCONT)
        outcomes = await load
    figures = check(outcomes, await stored_grants(stack, coupon), count)
    bases = await stack.fetch("SELECT partition, log_base FROM allocator_partitions")
    decided_twice = await stack.fetchval(
        "SELECT count(*) FROM (SELECT request_id FROM decisions GROUP BY request_id"
        " HAVING count(*) > 1) twice"
    )
    assert figures["sent again after a lost ticket"] > 0, "no ticket ever said it was lost"
    assert any(row["log_base"] > 0 for row in bases), "no allocator noticed the new log"
    assert decided_twice == 0
    moved = sorted(r["partition"] for r in bases if r["log_base"] > 0)
    report("broker restarted empty", f"new logs found on partitions {moved}", figures, started)
