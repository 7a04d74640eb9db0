"""Where a decision's time goes, hop by hop: one histogram every part feeds.

A trip through the log is timed from the record's creation by its producer (its Kafka
timestamp) to its reading by the next part, so it holds the producer's batching, the
broker's append, the consumer's fetch wait and any queue before the reader got to it.
Work in a part is timed around the work. All parts run on one clock in `make bench`,
which reads the sums and counts of each hop from every part (bench/hops.py).

Hops, in the order a claim under the daily rule meets them:
    gateway_produce         the claim handed to the broker, until acknowledged
    log_claim               the claim's trip to the coupon's allocator
    allocator_load          reading what a batch needs from PostgreSQL
    allocator_decide        the core deciding a batch
    allocator_commit        writing a batch (and its outbox) in one transaction
    allocator_publish       producing what a batch decided, until acknowledged
    log_reserve_day         ReserveDay's trip to the person's partition
    log_day_reserved        DayReserved's trip back to the coupon's partition
    log_decision            the decision's trip to the notifier
    notifier_forward        producing it to the gateway's reply topic
    log_reply               the reply's trip to the gateway that asked
"""

import time
from collections.abc import Iterable

from aiokafka.structs import ConsumerRecord
from prometheus_client import Histogram

from runtime.http import labelled

HOPS = Histogram(
    "coupons_hop_seconds",
    "Time spent in each hop of a decision's way (runtime/hops.py names them)",
    ["hop"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
_HOP = labelled(HOPS)  # a hop's child, without the client's lock: asked for per claim


def trip(hop: str, messages: Iterable[ConsumerRecord[bytes, bytes]]) -> None:
    """Each record's trip through the log, from its producer's timestamp to now."""
    now_ms = time.time() * 1000
    observe = _HOP(hop).observe
    for message in messages:
        observe(max(now_ms - message.timestamp, 0) / 1000)


def spent(hop: str, started: float) -> None:
    """Work in a part since `started` (time.perf_counter())."""
    _HOP(hop).observe(time.perf_counter() - started)
