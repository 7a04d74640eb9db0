"""The behaviour suite (tests/behaviour/scenarios.py) on the decision core, in memory and
in virtual time."""

import pytest

from tests.behaviour.driver import Driver
from tests.behaviour.in_memory import InMemory
from tests.behaviour.scenarios import Behaviour


@pytest.fixture
def driver() -> Driver:
    return InMemory()


class TestInTheCore(Behaviour):
    """Every scenario, decided by the production cores over logs in memory."""
