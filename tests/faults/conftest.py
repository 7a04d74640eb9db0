"""Fault tests break the stack on purpose (stop PostgreSQL, freeze the broker, SIGKILL
parts), so each module gets a broker and a PostgreSQL of its own; the `stack` fixture of
tests/support/stack.py builds on it."""

from collections.abc import Iterator

import pytest

from deploy.stack import Infra
from tests.support.stack import broker_kind, running_infra


@pytest.fixture(scope="module")
def infra(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[Infra]:
    yield from running_infra(tmp_path_factory.mktemp("faults"), broker_kind(pytestconfig))
