"""`coupons gateway --workers N`: processes sharing one port, restarted when they die."""

import asyncio
import os
import signal
from pathlib import Path

import aiohttp
import pytest

from deploy.embedded import free_port
from deploy.stack import start_part, wait_listening, wait_until
from tests.support.client import create_coupon, metric, post
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

WAIT_S = 30.0


def children(pid: int) -> set[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(p) for p in text.split()}


def wait_for_children(pid: int, count: int, other_than: frozenset[int] = frozenset()) -> set[int]:
    def found() -> set[int] | None:
        now = children(pid)
        return now if len(now) == count and not now & other_than else None

    return wait_until(found, WAIT_S, lambda: f"supervisor {pid} has children {children(pid)}")


async def claims(stack: Stack, url: str, coupon: str, users: list[str]) -> list[int]:
    """One fresh connection per claim, so the kernel spreads them over the workers."""
    answers = []
    for user in users:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True)
        ) as session:
            target = f"{url}/v1/coupons/{coupon}/claims"
            answer = await post(session, target, stack.token(user), {}, {"Prefer": "wait=10"})
            answers.append(answer.status)
    return answers


def test_workers_share_the_port_and_one_that_dies_is_replaced(stack: Stack) -> None:
    port = free_port()
    env = {**stack.env, "GATEWAY_PORT": str(port), "GATEWAY_WORKERS": "2"}
    part = start_part("gateway", env, port, stack.log_dir, label="gateway-workers")
    try:
        first = wait_for_children(part.process.pid, 2)
        wait_listening(port, 2)

        async def scenario() -> None:
            async with aiohttp.ClientSession() as session:
                coupon = (await create_coupon(session, stack, 100))["id"]
            before = await claims(stack, part.url, coupon, [f"w{i}" for i in range(30)])
            assert before == [201] * 30
            victim = min(first)
            os.kill(victim, signal.SIGKILL)
            # Connections the kernel queued on the victim's socket before it closed are reset
            # (clients retry those with their Idempotency-Key); once its socket is gone, the
            # other worker answers every new one while the supervisor starts a replacement.
            await asyncio.to_thread(wait_listening, port, 1)
            during = await claims(stack, part.url, coupon, [f"x{i}" for i in range(10)])
            assert during == [201] * 10
            replaced = await asyncio.to_thread(
                wait_for_children, part.process.pid, 2, frozenset({victim})
            )
            after = await claims(stack, part.url, coupon, [f"y{i}" for i in range(30)])
            assert after == [201] * 30
            print(f"workers: {sorted(first)} → {sorted(replaced)}; 70 claims, 70 granted")

        asyncio.run(scenario())
    finally:
        workers = children(part.process.pid) if part.process.popen.poll() is None else set()
        part.process.stop()
    assert part.process.popen.returncode == 0
    assert not [p for p in workers if Path(f"/proc/{p}").exists()]  # SIGTERM stopped them all


def test_metrics_are_the_sums_over_the_workers_whichever_answers(stack: Stack) -> None:
    port = free_port()
    env = {**stack.env, "GATEWAY_PORT": str(port), "GATEWAY_WORKERS": "2"}
    part = start_part("gateway", env, port, stack.log_dir, label="gateway-metrics")
    try:
        wait_for_children(part.process.pid, 2)
        wait_listening(port, 2)

        async def scenario() -> list[float]:
            async with aiohttp.ClientSession() as session:
                coupon = (await create_coupon(session, stack, 100))["id"]
            # Fresh connections: the kernel spreads them over both workers (all 40 on one
            # would happen about once in 5 * 10^11 runs).
            sent = await claims(stack, part.url, coupon, [f"m{i}" for i in range(40)])
            assert sent == [201] * 40
            scrapes = []
            for _ in range(10):  # each scrape on a fresh connection, so either may answer
                scrapes.append(await metric(part.url, "coupons_claims_total"))
            return scrapes

        scrapes = asyncio.run(scenario())
    finally:
        part.process.stop()
    assert scrapes == [40.0] * 10
