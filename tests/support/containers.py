"""The integration suite's broker and database as containers (`pytest --backend=containers`):
Apache Kafka in KRaft mode and PostgreSQL, through testcontainers. For people with a Docker
engine; without one it says so in one line and stops. The fault tests always use the
embedded backend: they stop and restart the processes themselves."""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

KAFKA_IMAGE = "apache/kafka:3.9.0"  # the compose file's (deploy/compose.yaml)
POSTGRES_IMAGE = "postgres:15"


@dataclass
class ContainerBroker:
    bootstrap_servers: str


@dataclass
class ContainerPostgres:
    url: str


def engine() -> Any:
    """A client of a Docker engine that answers, or a one-line exit saying why not."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        pytest.exit(
            "--backend=containers needs testcontainers: pip install 'coupons[containers]'", 4
        )
    try:
        client = docker.from_env()
        client.ping()
    except DockerException as error:
        reason = str(error).splitlines()[0][:160]
        pytest.exit(f"--backend=containers: no Docker engine answers here ({reason}); "
                    "the embedded backend (the default) needs none", 4)  # fmt: skip
    return client


def container_infra(root: Path) -> Iterator[Any]:
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.postgres import PostgresContainer

    from deploy.stack import Infra

    engine()
    kafka = KafkaContainer(KAFKA_IMAGE).with_kraft()
    postgres = PostgresContainer(POSTGRES_IMAGE, driver=None)  # a plain postgresql:// URL
    with kafka, postgres:
        broker = ContainerBroker(kafka.get_bootstrap_server())
        database = ContainerPostgres(postgres.get_connection_url())
        # Infra's broker and database as containers: the same attributes, no processes.
        yield Infra(broker, database, root, "kafka")  # type: ignore[arg-type]
