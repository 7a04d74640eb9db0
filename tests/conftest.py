"""Options for the whole suite."""

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        choices=("embedded", "kafka", "containers"),
        default="embedded",
        help="embedded: Tansu and PostgreSQL from wheels (default, no Docker); kafka: Apache "
        "Kafka from its jars (needs Java, and Maven the first time) and PostgreSQL from its "
        "wheel; containers: Apache Kafka and PostgreSQL containers through testcontainers "
        "(needs a Docker engine)",
    )


# The stack fixtures (`infra`, `stack`) and markers, for every test directory.
pytest_plugins = ["tests.support.stack"]
