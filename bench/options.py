"""`coupons bench` options, apart from the bench's own imports (rich, matplotlib), so the
CLI starts without them."""

import argparse
import os

from deploy.stack import BROKERS

SCENARIOS = (
    "burst", "burst-keyed", "sustained", "sustained-keyed", "sustained-wide",
    "sustained-wide-keyed", "noon", "replay",
)  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS),
        help=f"any of {', '.join(SCENARIOS)}; '-keyed' sends an Idempotency-Key on every claim",
    )  # fmt: skip
    parser.add_argument("--no-daily-rule", dest="daily_rule", action="store_false",
                        help="coupons without the one-per-person-per-day rule (default: on, "
                        "as the API's default)")  # fmt: skip
    parser.add_argument(
        "--broker",
        choices=BROKERS,
        default="tansu",
        help="the broker every scenario runs on: tansu (in memory, as "
        "`make run`) or kafka (Apache Kafka from its jars, with Java)",
    )
    parser.add_argument("--users", type=int, default=100_000, help="people in the burst")
    parser.add_argument("--count", type=int, default=25, help="units of the burst's coupon")
    parser.add_argument("--sustained-users", type=int, default=20_000)
    parser.add_argument("--replay-commands", type=int, default=100_000)
    noon = parser.add_argument_group("noon", "open loop: claims arrive at a set rate")
    noon.add_argument("--noon-users", type=int, default=100_000, help="people at noon")
    noon.add_argument("--noon-seconds", type=float, default=20, help="over how long they come")
    noon.add_argument("--noon-count", type=int, default=10_000, help="units of noon's coupon")
    noon.add_argument("--noon-rates", default="1000,2000,3000,4000,6000,8000",
                      help="arrival rates (a second) stepped through after noon, up to the "
                      "first not sustained; each step's coupon has a tenth as many units as "
                      "people")  # fmt: skip
    noon.add_argument("--noon-step-seconds", type=float, default=8)
    noon.add_argument("--noon-connections", type=int, default=2048,
                      help="connections opened before T that the arrivals share, as a load "
                      "balancer's pool in front of the gateway")  # fmt: skip
    # The reference figures in the issue were measured over 64 connections.
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--wide-connections", type=int, default=512,
                        help="connections of the sustained-wide scenarios")  # fmt: skip
    parser.add_argument("--generators", type=int, default=max(1, (os.cpu_count() or 1) // 2),
                        help="load generator processes")  # fmt: skip
    parser.add_argument("--workers", type=int, default=1,
                        help="processes per HTTP front (gateway, baseline, ceiling)")  # fmt: skip
    parser.add_argument("--out", default="bench/results", help="where the report goes")
