"""`coupons bench` options, apart from the bench's own imports (rich, matplotlib), so the
CLI starts without them."""

import argparse
import os

SCENARIOS = (
    "burst", "burst-keyed", "sustained", "sustained-keyed", "sustained-wide",
    "sustained-wide-keyed", "replay",
)  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS),
        help=f"any of {', '.join(SCENARIOS)}; '-keyed' sends an Idempotency-Key on every claim",
    )  # fmt: skip
    parser.add_argument("--no-daily-rule", dest="daily_rule", action="store_false",
                        help="coupons without the one-per-person-per-day rule (default: on, "
                        "as the API's default)")  # fmt: skip
    parser.add_argument("--users", type=int, default=100_000, help="people in the burst")
    parser.add_argument("--count", type=int, default=25, help="units of the burst's coupon")
    parser.add_argument("--sustained-users", type=int, default=20_000)
    parser.add_argument("--replay-commands", type=int, default=100_000)
    # The reference figures in the issue were measured over 64 connections.
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--wide-connections", type=int, default=512,
                        help="connections of the sustained-wide scenarios")  # fmt: skip
    parser.add_argument("--generators", type=int, default=max(1, (os.cpu_count() or 1) // 2),
                        help="load generator processes")  # fmt: skip
    parser.add_argument("--workers", type=int, default=1,
                        help="processes per HTTP front (gateway, baseline, ceiling)")  # fmt: skip
    parser.add_argument("--out", default="bench/results", help="where the report goes")
