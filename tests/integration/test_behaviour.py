"""The behaviour suite (tests/behaviour/scenarios.py) over HTTP on the real stack, in real
time: a broker, PostgreSQL and every part. The scenarios share one stack, each with people
of its own, but for the daily rule's, which wants two allocators."""

from collections.abc import AsyncIterator

import pytest

from tests.behaviour.driver import Driver
from tests.behaviour.over_http import OverHttp, deciders
from tests.behaviour.scenarios import Behaviour
from tests.support.client import session
from tests.support.stack import DEFAULT_ALLOCATORS, Stack

pytestmark = [pytest.mark.integration, pytest.mark.shares_stack]


@pytest.fixture
async def driver(stack: Stack, request: pytest.FixtureRequest) -> AsyncIterator[Driver]:
    marker = request.node.get_closest_marker("allocators")
    assert stack.infra is not None
    allocators = marker.args if marker else DEFAULT_ALLOCATORS[stack.infra.broker_kind]
    async with session() as http:
        yield OverHttp(stack, http, deciders(allocators))


class TestOverHttp(Behaviour):
    """Every scenario, through the gateway, the log, the allocator and the notifier."""

    @pytest.mark.alone  # each hold passed on within a second of its deadline
    async def test_holds_lapse_and_pass_down_the_line_in_arrival_order(
        self, driver: Driver
    ) -> None:
        await super().test_holds_lapse_and_pass_down_the_line_in_arrival_order(driver)

    @pytest.mark.own_stack
    @pytest.mark.allocators("0,1", "2,3")  # the coupons and people's days on both
    async def test_one_grant_per_person_per_day_across_partitions(self, driver: Driver) -> None:
        await super().test_one_grant_per_person_per_day_across_partitions(driver)
