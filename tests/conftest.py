"""Options for the whole suite."""

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        choices=("embedded", "containers"),
        default="embedded",
        help="embedded: Tansu and PostgreSQL from wheels (default, no Docker); containers: "
        "Apache Kafka and PostgreSQL containers through testcontainers (needs a Docker engine)",
    )


# The stack fixtures (`infra`, `stack`) and markers, for every test directory.
pytest_plugins = ["tests.support.stack"]
