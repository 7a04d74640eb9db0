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


# The stack fixtures (`infra`, `stack`) and markers, and the browser tests' (`browser`,
# `http`), for every test directory.
pytest_plugins = ["tests.support.stack", "tests.support.webapp"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked `only_on(backend)` belongs to that half of the suite: the other half
    deselects it (it is neither run nor counted as skipped)."""
    backend = config.getoption("backend")
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        marker = item.get_closest_marker("only_on")
        (dropped if marker and backend not in marker.args else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "only_on(*backends): run only with these --backend values, deselected with others",
    )
    config.addinivalue_line(
        "markers",
        "alone: asserts how long something takes; `make test` runs these after the rest, "
        "each broker's beside the other's and nothing else (the rest of each broker's half "
        "runs beside the other's)",
    )
