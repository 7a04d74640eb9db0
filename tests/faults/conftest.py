"""Fault tests break the stack on purpose (stop PostgreSQL, freeze the broker, SIGKILL
parts), so each module gets a broker and a PostgreSQL of its own."""

from collections.abc import Iterator

import pytest

from deploy.stack import Infra
from tests.support.stack import Stack, build_stack, running_infra


@pytest.fixture(scope="module")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    yield from running_infra(tmp_path_factory.mktemp("faults"))


@pytest.fixture
def stack(infra: Infra, request: pytest.FixtureRequest) -> Iterator[Stack]:
    built = build_stack(infra, request.node.name, None)
    yield built
    built.stop()
