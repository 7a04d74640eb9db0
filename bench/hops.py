"""Where a durable decision's time goes: the hops every part times (runtime/hops.py),
read from each part's /metrics before and after a run, so a figure covers that run only."""

import urllib.request
from typing import Any

from bench.systems import Systems

PARTS = ("gateway", "allocator", "notifier")
PREFIX = "coupons_hop_seconds_"
BATCH = ("allocator_load", "allocator_decide", "allocator_commit", "allocator_publish")
# A claim's way to its answer, in order; "batch" stands for the four steps of BATCH,
# which every record waits for with the rest of its batch.
WAY_WITH_DAILY_RULE = (
    "gateway_produce", "log_claim", "batch", "log_reserve_day", "batch", "log_day_reserved",
    "batch", "log_decision", "notifier_forward", "log_reply",
)  # fmt: skip
# Without the daily rule a claim is decided in the batch that reads it.
WAY = ("gateway_produce", "log_claim", "batch", "log_decision", "notifier_forward", "log_reply")

Totals = dict[str, tuple[float, float]]  # hop: (seconds, count)


def read(systems: Systems) -> Totals:
    """Every hop's sum and count, added up over our parts."""
    totals: dict[str, list[float]] = {}
    for name in PARTS:
        with urllib.request.urlopen(f"{systems.part(name).url}/metrics", timeout=10) as reply:
            text = reply.read().decode()
        for line in text.splitlines():
            if not line.startswith(PREFIX) or "{" not in line:
                continue
            metric, _, value = line.rpartition(" ")
            kind = metric[len(PREFIX) : metric.index("{")]
            if kind not in ("sum", "count"):
                continue
            hop = metric.split('hop="', 1)[1].split('"', 1)[0]
            sums = totals.setdefault(hop, [0.0, 0.0])
            sums[kind == "count"] += float(value)
    return {hop: (s, n) for hop, (s, n) in totals.items()}


def between(before: Totals, after: Totals, daily_rule: bool) -> dict[str, Any]:
    """Each hop's mean over a run, and the way of one durable claim added up from them."""
    means = {}
    for hop, (seconds, count) in after.items():
        seconds -= before.get(hop, (0.0, 0.0))[0]
        count -= before.get(hop, (0.0, 0.0))[1]
        if count > 0:
            means[hop] = {"count": int(count), "mean_ms": round(1000 * seconds / count, 2)}
    batch_ms = sum(means.get(h, {"mean_ms": 0.0})["mean_ms"] for h in BATCH)
    way: list[tuple[str, float]] = []
    for hop in WAY_WITH_DAILY_RULE if daily_rule else WAY:
        ms = batch_ms if hop == "batch" else means.get(hop, {"mean_ms": 0.0})["mean_ms"]
        way.append((hop, round(ms, 2)))
    return {"hops": means, "way": way, "way_ms": round(sum(ms for _, ms in way), 1)}
