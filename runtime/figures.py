"""Percentiles, computed one way wherever the project reports one (the dashboard, the
analysts' report, the benchmark, the tests): the nearest rank, from values in order."""

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T", int, float)


def percentile(ordered: Sequence[T], fraction: float) -> T | None:
    """The value at `fraction` (0.99 for the p99) of `ordered`, sorted ascending; None
    when there is none."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def ms(ordered_s: Sequence[float], fraction: float) -> float | None:
    """A percentile of times in seconds, in milliseconds to a tenth."""
    found = percentile(ordered_s, fraction)
    return None if found is None else round(found * 1000, 1)
