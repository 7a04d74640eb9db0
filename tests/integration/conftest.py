"""The real stack for integration tests: Tansu and PostgreSQL from their wheels, and the
parts as processes. Each test gets its own database and its own topics."""

import asyncio
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

from deploy.dev import stack_env
from deploy.embedded import Broker, Postgres, free_port, start_broker, start_postgres
from deploy.stack import Part, start_part
from runtime.auth import mint_token
from runtime.db import create_database

SECRET = "integration-secret-" + uuid.uuid4().hex


@dataclass
class Infra:
    broker: Broker
    postgres: Postgres
    root: Path


def running_infra(root: Path) -> Iterator[Infra]:
    """A broker and a PostgreSQL for as long as the generator lives; stopped by PID."""
    broker = start_broker(root / "broker")
    try:
        postgres = start_postgres(root / "postgres")
    except BaseException:
        broker.process.stop()
        raise
    infra = Infra(broker, postgres, root)
    try:
        yield infra
    finally:
        infra.postgres.process.stop()  # the one running now: a fault test may restart it
        infra.broker.process.stop()


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[Infra]:
    root = tmp_path_factory.mktemp("stack")
    if pytestconfig.getoption("backend") == "containers":
        from tests.containers import container_infra

        yield from container_infra(root)
    else:
        yield from running_infra(root)


@dataclass
class Stack:
    infra: Infra
    env: dict[str, str]
    database_url: str
    log_dir: Path
    gateway: Part | None = None
    notifier: Part | None = None
    allocators: list[Part] = field(default_factory=list)
    extra: list[Part] = field(default_factory=list)  # parts a test started; stopped with it

    @property
    def gateway_url(self) -> str:
        assert self.gateway
        return self.gateway.url

    def token(self, sub: str, admin: bool = False) -> str:
        return mint_token(SECRET, sub, admin=admin)

    def start_allocator(self, partitions: str = "", label: str | None = None) -> Part:
        port = free_port()
        label = label or f"allocator{len(self.allocators)}"
        env = {
            **self.env,
            "ALLOCATOR_PORT": str(port),
            "ALLOCATOR_PARTITIONS": partitions,
            "ALLOCATOR_ID": label,
        }
        part = start_part("allocator", env, port, self.log_dir, label=label)
        self.allocators.append(part)
        return part

    def start_gateway(self, label: str) -> Part:
        """Another gateway on the same broker and database."""
        port = free_port()
        part = start_part("gateway", {**self.env, "GATEWAY_PORT": str(port)}, port,
                          self.log_dir, label=label)  # fmt: skip
        self.extra.append(part)
        return part

    def stop(self) -> None:
        for part in [self.gateway, self.notifier, *self.allocators, *self.extra]:
            if part is not None:
                part.process.stop()

    async def db(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.database_url)


def build_stack(
    infra: Infra,
    name: str,
    allocator_partitions: list[str] | None,
    extra_env: dict[str, str] | None = None,
) -> Stack:
    database = f"t_{uuid.uuid4().hex[:12]}"
    url = asyncio.run(create_database(infra.postgres.url, database))
    gateway_port, notifier_port = free_port(), free_port()
    env = stack_env(
        infra.broker.bootstrap_servers, url, SECRET, "codes-" + SECRET, gateway_port, f"{database}."
    )
    env.update(
        {
            "NOTIFIER_PORT": str(notifier_port),
            "NOTIFIER_PUBLIC_URL": f"http://127.0.0.1:{notifier_port}",
            "COUPONS_COMMAND_PARTITIONS": "4",
            # Every test client is 127.0.0.1 and many act fast as one person: limits are
            # tested on their own (test_limits.py), off elsewhere.
            "RATE_LIMIT_ADDRESS_PER_S": "0",
            "RATE_LIMIT_USER_PER_S": "0",
            **(extra_env or {}),
        }
    )
    stack = Stack(infra, env, url, infra.root / "logs" / name)
    try:
        for partitions in allocator_partitions if allocator_partitions is not None else [""]:
            stack.start_allocator(partitions)
        stack.notifier = start_part("notifier", env, notifier_port, stack.log_dir)
        stack.gateway = start_part("gateway", env, gateway_port, stack.log_dir)
    except BaseException:
        stack.stop()
        raise
    return stack


@pytest.fixture
def stack(infra: Infra, request: pytest.FixtureRequest) -> Iterator[Stack]:
    marker = request.node.get_closest_marker("allocators")
    partitions = list(marker.args) if marker else None
    settings = request.node.get_closest_marker("stack_env")
    built = build_stack(infra, request.node.name, partitions, settings.kwargs if settings else None)
    yield built
    built.stop()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "allocators(*partitions): one allocator per argument")
    config.addinivalue_line("markers", "stack_env(**variables): extra environment for the stack")
    os.environ.setdefault("COUPONS_TEST", "1")
