"""The real stack for integration and fault tests: the one builder of deploy/stack.py, with
what tests add (tokens, a database connection). A stack has a database and topics of its
own: each test gets one, except in modules marked `shares_stack`, whose tests (they kill
nothing) share one and keep to coupons and people of their own. The fixtures are
registered for the whole suite by tests/conftest.py."""

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from types import EllipsisType
from typing import Any

import asyncpg
import pytest

from deploy import stack as builder
from deploy.stack import Infra, start_infra
from runtime.auth import mint_token
from runtime.db import create_database
from runtime.settings import COMMAND_PARTITIONS

SECRET = "integration-secret-" + uuid.uuid4().hex
# The allocators a test's stack starts unless it says (`allocators` marker). On Apache Kafka
# one member of the allocators' group, as deployed. Tansu answers a group's first join only
# after a fixed 3 s (it has no group.initial.rebalance.delay.ms to set): there a stack's
# allocator owns every partition by ALLOCATOR_PARTITIONS=all (a deployable mode too), and
# the tests of the group itself (tests/faults/test_failover.py) ask for members.
DEFAULT_ALLOCATORS: dict[str, list[str | None]] = {"tansu": ["all"], "kafka": [None]}
# Tansu answers a fetch only when its wait runs out, so `coupons dev` and the bench wait
# 10 ms (deploy/stack.py's TANSU_ENV), and an idle stack keeps 0.63 of a core busy asking.
# The suite's stacks wait 50 ms: its Tansu half then took 932 CPU-seconds instead of 1,123
# (and 785 s against 814 s), which counts with the Apache Kafka half beside it on two cores.
TANSU_TEST_ENV = {"KAFKA_FETCH_WAIT_MS": "50"}


@dataclass
class Stack(builder.Stack):
    database_url: str = ""
    infra: Infra | None = None
    first_partitions: str | None = None  # the first allocator's; one started again gets them

    def start_allocator(
        self,
        partitions: str | None | EllipsisType = ...,
        label: str | None = None,
        wait: bool = True,
    ) -> builder.Part:
        """An allocator; by default (`...`) one owning what the stack's first allocator
        owned, as a part started again would."""
        if partitions is ...:
            partitions = self.first_partitions
        return super().start_allocator(partitions, label, wait)

    def token(self, sub: str, admin: bool = False) -> str:
        return mint_token(self.env["COUPONS_JWT_SECRET"], sub, admin=admin)  # the parts' own

    async def db(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.database_url)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection of the test's own to the stack's database, closed at the end."""
        conn = await self.db()
        try:
            yield conn
        finally:
            await conn.close()

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """One query's rows, on a connection of its own."""
        async with self.connection() as conn:
            rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
            return rows

    async def fetchval(self, sql: str, *args: Any) -> Any:
        rows = await self.fetch(sql, *args)
        return rows[0][0] if rows else None


def broker_kind(config: pytest.Config) -> str:
    """The broker the suite runs on (`--backend`); a one-line exit when it cannot run."""
    if config.getoption("backend") != "kafka":
        return "tansu"
    from deploy.kafka_broker import missing

    why = missing()
    if why is not None:
        pytest.exit(f"--backend=kafka: {why}", 4)
    return "kafka"


def running_infra(root: os.PathLike[str] | str, kind: str = "tansu") -> Iterator[Infra]:
    """A broker and a PostgreSQL for as long as the generator lives; stopped by PID."""
    from pathlib import Path

    infra = start_infra(Path(root), kind)
    try:
        yield infra
    finally:
        infra.stop()


def launched_stack(
    infra: Infra,
    name: str,
    allocator_partitions: list[str | None] | None,
    extra_env: dict[str, str] | None = None,
    launch: bool = True,
) -> Stack:
    """A stack on a database and topics of its own, its parts started (unless `launch` is
    false) but not waited for (`Stack.wait`)."""
    database = f"t_{uuid.uuid4().hex[:12]}"
    url = asyncio.run(create_database(infra.postgres.url, database))
    env = builder.stack_env(
        infra.broker.bootstrap_servers,
        url,
        SECRET,
        "codes-" + SECRET,
        0,
        f"{database}.",
        infra.broker_kind,
    )
    env = builder.free_ports_env(env)
    env.update(
        {
            "COUPONS_COMMAND_PARTITIONS": str(COMMAND_PARTITIONS),
            # Many test clients act fast as one person: the per-person limit is tested on its
            # own (test_limits.py), off elsewhere. The per-address one is off by default.
            "RATE_LIMIT_USER_PER_S": "0",
            **(TANSU_TEST_ENV if infra.broker_kind == "tansu" else {}),
            **(extra_env or {}),
        }
    )
    if allocator_partitions is None:
        allocator_partitions = DEFAULT_ALLOCATORS.get(infra.broker_kind, [None])
    stack = Stack(
        env, infra.root / "logs" / name, database_url=url, infra=infra,
        first_partitions=allocator_partitions[0] if allocator_partitions else None,
    )  # fmt: skip
    if launch:
        stack.launch(allocator_partitions)
    return stack


def build_stack(
    infra: Infra,
    name: str,
    allocator_partitions: list[str | None] | None,
    extra_env: dict[str, str] | None = None,
) -> Stack:
    stack = launched_stack(infra, name, allocator_partitions, extra_env)
    stack.wait()
    return stack


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[Infra]:
    root = tmp_path_factory.mktemp("stack")
    if pytestconfig.getoption("backend") == "containers":
        from tests.support.containers import container_infra

        yield from container_infra(root)
    else:
        yield from running_infra(root, broker_kind(pytestconfig))


def _stack_for(infra: Infra, node: pytest.Item | pytest.Collector, name: str) -> Stack:
    """A stack as the node's markers ask (`allocators`, `stack_env`), started and ready."""
    marker = node.get_closest_marker("allocators")
    partitions = list(marker.args) if marker else None
    settings = node.get_closest_marker("stack_env")
    return build_stack(infra, name, partitions, dict(settings.kwargs) if settings else None)


@pytest.fixture(scope="module")
def module_stack(infra: Infra, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """One stack for the tests of a module marked `shares_stack`: started once instead of
    once a test (2-4.5 s each). Its tests kill nothing, and each keeps to coupons and people
    of its own (the daily rule spans coupons)."""
    built = _stack_for(infra, request.node, request.node.name.removesuffix(".py"))
    yield built
    built.stop()


@pytest.fixture
def stack(infra: Infra, request: pytest.FixtureRequest) -> Iterator[Stack]:
    if request.node.get_closest_marker("shares_stack") and not request.node.get_closest_marker(
        "own_stack"
    ):
        yield request.getfixturevalue("module_stack")
        return
    built = _stack_for(infra, request.node, request.node.name)
    yield built
    built.stop()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "allocators(*partitions): one allocator per argument, as ALLOCATOR_PARTITIONS "
        "(None: a member of the allocators' group)",
    )
    config.addinivalue_line("markers", "stack_env(**variables): extra environment for the stack")
    config.addinivalue_line(
        "markers",
        "shares_stack: the module's tests share one stack (module_stack); they kill nothing",
    )
    config.addinivalue_line(
        "markers", "own_stack: a test of a shares_stack module with a stack of its own"
    )
    os.environ.setdefault("COUPONS_TEST", "1")
    # The suite's Apache Kafka brokers, and those of the `coupons dev` runs it starts, with
    # the client-side compiler only and a one-thread collector: a broker that lives minutes
    # beside a busy suite (the bench keeps deploy/kafka_broker.py's JVM).
    from deploy.kafka_broker import JVM_OPTS_VARIABLE, LIGHT_JVM

    os.environ.setdefault(JVM_OPTS_VARIABLE, " ".join(LIGHT_JVM))
