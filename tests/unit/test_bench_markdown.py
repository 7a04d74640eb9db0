"""A full bench run writes its figures into docs/benchmark.md, in its broker's block, and
nowhere else: the hand-written text and the other broker's block stay as they are."""

from typing import Any

import pytest

from bench import markdown

MACHINE = {"cores": 2, "cpu": "AMD EPYC", "memory_gib": 23.5, "python": "3.11.7",
           "system": "Linux-6"}  # fmt: skip
SETTINGS = {"broker": "kafka", "workers": 1, "generators": 1, "daily_rule": True}


def claim_run(scenario: str, system: str, **more: Any) -> dict[str, Any]:
    checks = {"ok": True, "grants": 25} if system != "ceiling" else {}
    return {"scenario": scenario, "system": system, "throughput_per_s": 3156.4,
            "p50_ms": 18.5, "p99_ms": 32.4, "checks": checks, **more}  # fmt: skip


def noon_step(name: str) -> dict[str, Any]:
    return {"scenario": name, "rate_per_s": 1000, "count": 800, "answered": 8000,
            "answered_within_1s": 0.999, "answered_within_2s": 1.0, "p50_ms": 1.8,
            "p99_ms": 897.2, "winners_p99_ms": 981.4, "last_grant_answered_s": 1.5,
            "sustained": True}  # fmt: skip


DOCUMENT = {
    "when": "20261207T101500",
    "machine": MACHINE,
    "settings": SETTINGS,
    "runs": [
        claim_run("burst", "ceiling"),
        claim_run("burst", "ours"),
        claim_run(
            "sustained",
            "ours",
            hops={"way": [["log_claim", 36.2], ["batch", 20.9]], "way_ms": 221.9},
        ),  # fmt: skip
        {
            "scenario": "noon",
            "noon": noon_step("noon"),
            "steps": [noon_step("step")],
            "highest_sustained_rate_per_s": 1000,
        },  # fmt: skip
    ],
    "replay": {"commands": 100_004, "decisions_per_s": 4847.2, "checks": {"ok": True}},
}
TEXT = """# Benchmark

by hand

<!-- coupons bench --broker tansu: start -->
Tansu's
<!-- coupons bench --broker tansu: end -->

<!-- coupons bench --broker kafka: start -->
not yet
<!-- coupons bench --broker kafka: end -->

## Soak
"""


def test_a_run_writes_its_brokers_block_with_the_machine() -> None:
    written = markdown.update(TEXT, DOCUMENT)
    assert "not yet" not in written
    assert written.startswith("# Benchmark\n\nby hand\n") and written.endswith("## Soak\n")
    assert "Tansu's" in written
    kafka = written.split("kafka: start -->")[1]
    assert "### Apache Kafka: `make bench BENCH_ARGS='--broker kafka'`" in kafka
    assert "On 2 cores (AMD EPYC), 23.5 GiB, Python 3.11.7" in kafka
    assert "| burst | ours | 3,156 | 18.5 | 32.4 | 25 grants, ok |" in kafka
    assert "| replay (100,004 commands) | ours | 4,847 decisions |" in kafka
    assert "| sum of the way | 221.9 |" in kafka
    assert "| noon | ours | 1,000 | 800 | 8,000 | 99.9% | 100.0% |" in kafka
    assert markdown.update(written, DOCUMENT) == written, "a second write replaces, not adds"


def test_a_file_without_the_block_is_refused() -> None:
    with pytest.raises(ValueError, match="no block"):
        markdown.update("# Benchmark\n", DOCUMENT)


def test_the_benchmark_document_has_both_blocks() -> None:
    text = markdown.DOC.read_text()
    for broker in ("tansu", "kafka"):
        start, end = markdown.markers(broker)
        assert text.index(start) < text.index(end)
