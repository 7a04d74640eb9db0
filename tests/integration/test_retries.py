"""Retries on a coupon that is over (invariant 5 at the edge): each gets its first
decision, from a gateway that never saw the first try, without a query per claim."""

import asyncio

import pytest

from tests.support.client import Answer, at_the_edge, claim, create_coupon, metric, post, session
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

READS = "coupons_gateway_retry_reads_total"
NEWCOMERS = 200


async def test_retries_after_the_sell_out_get_their_first_decisions_from_memory(
    stack: Stack,
) -> None:
    async with session() as http:
        coupon = (await create_coupon(http, stack, 3))["id"]
        first = {
            ("dave", "d1"): await claim(http, stack, coupon, "dave", key="d1"),
            ("dave", "d2"): await claim(http, stack, coupon, "dave", key="d2"),
            ("erin", "e1"): await claim(http, stack, coupon, "erin", key="e1"),
            ("frank", "f1"): await claim(http, stack, coupon, "frank", key="f1"),
        }
        assert [a.status for a in first.values()] == [201, 409, 201, 201]
        assert first["dave", "d2"].body["reason"] == "already_claimed"
        # A gateway started now holds nothing of what was decided. Retried there until it
        # answers at the edge (it may read an older status of the coupon first, and send
        # the retry on to the allocator, which answers it with its first decision too).
        other = stack.start_another_gateway("gateway-retries")
        url = f"{other.url}/v1/coupons/{coupon}"

        async def again(user: str, key: str) -> tuple[int, dict[str, object]]:
            headers = {"Idempotency-Key": key, "Prefer": "wait=10"}
            answer = await post(http, f"{url}/claims", stack.token(user), {}, headers)
            return answer.status, answer.body

        deadline = asyncio.get_running_loop().time() + 30
        while (reads_before := await metric(other.url, READS)) == 0:
            assert asyncio.get_running_loop().time() < deadline, "never answered at the edge"
            assert await again("dave", "d1") == (201, first["dave", "d1"].body)
        retries = await asyncio.gather(*(again(*who) for who in first for _ in range(3)))
        newcomers = await asyncio.gather(*(again(f"n{i}", "k") for i in range(NEWCOMERS)))
        reads = await metric(other.url, READS) - reads_before
    edge = await at_the_edge(stack, [Answer(status, body, {}, 0.0) for status, body in newcomers])
    for (who, answer), retried in zip(first.items(), _by_three(retries), strict=True):
        assert {status for status, _ in retried} == {answer.status}, who
        for _, body in retried:
            assert body["ticket"] == answer.body["ticket"], who
            if answer.status == 201:
                assert body["grant"] == answer.body["grant"], who
            else:
                assert body["reason"] == answer.body["reason"], who
    assert {status for status, _ in newcomers} == {409}
    assert {body["reason"] for _, body in newcomers} == {"sold_out"}
    assert len(edge) == NEWCOMERS, "the edge decided each"
    # The one read of the coupon's decisions made then answered every one of those claims.
    assert reads == 0, f"{reads:.0f} more reads for {len(retries) + NEWCOMERS} claims"
    granted = await stack.fetchval("SELECT count(*) FROM grants WHERE coupon_id = $1", coupon)
    assert granted == 3


def _by_three(
    answers: list[tuple[int, dict[str, object]]],
) -> list[list[tuple[int, dict[str, object]]]]:
    return [answers[i : i + 3] for i in range(0, len(answers), 3)]
