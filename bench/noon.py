"""Noon, open loop: claims *arrive* at a set rate whatever the answers do, as people
clicking at noon do, each with an Idempotency-Key, on a coupon with the daily rule.

First the noon itself (by default 100,000 people over 20 s for 10,000 units): the
winners' and the others' latency over time, when the last winner was answered, and the
exact-K checks. Then the arrival rate steps up, each step a coupon of a tenth as many
units as people, until a step is not sustained: the highest rate at which p99 stays under
a second, with every claim answered, no 5xx and exactly K grants.

Each step also says what a person sees (the share of arrivals answered, with a decision or
with 202 and a ticket, within 1 s and within 2 s), and is sent to the ceiling too: the
same arrivals over the same connections, answered with a constant after the same JWT and
body checks, which is the most any HTTP service answers on this machine beside the
generator. A rate the ceiling does not sustain is past the floor of the machine itself.
"""

import argparse
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from bench.load import Result, cores, generate
from bench.scenarios import Progress, Run, grants_of, target
from bench.systems import Fresh
from runtime.figures import ms

P99_SUSTAINED_S = 1.0
ANSWERED_WITHIN_S = (1.0, 2.0)  # what a person sees: answered within a second, within two
PREFER_WAIT_S = 2  # the API's default: past it a winner gets 202 and polls its ticket


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    rate_per_s: float
    seconds: float
    count: int

    @property
    def people(self) -> int:
        return round(self.rate_per_s * self.seconds)


def steps(args: argparse.Namespace) -> tuple[Step, list[Step]]:
    """The noon itself, and the steps of the arrival rate."""
    noon = Step("noon", args.noon_users / args.noon_seconds, args.noon_seconds, args.noon_count)
    rates = [float(r) for r in args.noon_rates.split(",") if r]
    stepped = [
        Step(
            f"noon@{rate:.0f}/s",
            rate,
            args.noon_step_seconds,
            max(1, round(rate * args.noon_step_seconds) // 10),
        )  # fmt: skip
        for rate in rates
    ]
    return noon, stepped


def run(fresh: Fresh, args: argparse.Namespace, progress: Progress) -> tuple[dict[str, Any], Run]:
    """Every step on our stack and on the ceiling, each started anew; the noon's run (for its
    plot) and every figure."""
    noon, stepped = steps(args)
    main = _measure(fresh, noon, args, progress)
    measured = []
    for step in stepped:
        measured.append(_measure(fresh, step, args, progress))
        if not measured[-1][0]["sustained"]:
            break
    highest = max((f["rate_per_s"] for f, _ in measured if f["sustained"]), default=None)
    figures = {
        "scenario": "noon",
        "noon": main[0],
        "steps": [f for f, _ in measured],
        "highest_sustained_rate_per_s": highest,
        "sustained_means": f"p99 < {P99_SUSTAINED_S:g} s, all answered, no 5xx, exactly K",
        "checks": {"ok": main[0]["checks"]["ok"] and all(f["checks"]["ok"] for f, _ in measured)},
    }
    return figures, main[1]


def _measure(
    fresh: Fresh, step: Step, args: argparse.Namespace, progress: Progress
) -> tuple[dict[str, Any], Run]:
    """One step on our stack, then the same arrivals on the ceiling (its figures under
    "ceiling"), on everything started anew."""
    with fresh() as systems:

        def arrivals(system: str, coupon_id: str) -> Result:
            return generate(
                target(systems, system, coupon_id, keyed=True, prefer_wait_s=PREFER_WAIT_S),
                step.people,
                args.noon_connections,
                args.generators,
                f"{step.name}-{system}-",
                progress(f"{step.name}: {system}", step.people),
                rate_per_s=step.rate_per_s,
            )

        coupon_id = systems.create_coupon(step.count, daily_limit=args.daily_rule)
        result = arrivals("ours", coupon_id)
        figures = judge(step, result, *grants_of(systems, "ours", coupon_id))
        ceiling = arrivals("ceiling", str(uuid.uuid4()))  # it answers without looking
    figures["ceiling"] = _figures(step, ceiling)
    figures["ceiling"]["sustained"] = _held(figures["ceiling"])
    return figures, Run(step.name, "ours", result, figures["checks"])


def judge(step: Step, result: Result, grants: int, people: int) -> dict[str, Any]:
    """A step's figures, its exact-K checks (against what PostgreSQL holds: `grants`, and
    the `people` they went to) and whether it was sustained."""
    figures = _figures(step, result)
    outcomes = Counter(result.status)
    figures["checks"] = {
        "grants": grants,
        "expected_grants": min(step.count, step.people),
        "people_with_a_grant": people,
        "granted_answers": outcomes[201],
        # A winner not decided within its Prefer: wait got 202 and a ticket to poll; one
        # not answered within the generator's budget is granted all the same.
        "ok": grants == min(step.count, step.people) == people
        and outcomes[201] <= grants <= outcomes[201] + outcomes[202] + figures["unanswered"],
    }
    figures["sustained"] = bool(figures["checks"]["ok"] and _held(figures))
    return figures


def _held(figures: dict[str, Any]) -> bool:
    """Every arrival answered, none with a 5xx, p99 under P99_SUSTAINED_S."""
    return bool(
        figures["unanswered"] == 0
        and not any(int(status) >= 500 for status in figures["outcomes"])
        and (figures["p99_ms"] or 0) < P99_SUSTAINED_S * 1000
    )


def _figures(step: Step, result: Result) -> dict[str, Any]:
    winners = sorted(t for t, s in zip(result.latency, result.status, strict=True) if s == 201)
    others = sorted(t for t, s in zip(result.latency, result.status, strict=True) if s != 201)
    answered_at = [
        sent + t for sent, t, s in zip(result.sent, result.latency, result.status, strict=True)
        if s == 201
    ]  # fmt: skip
    span = result.wall_s or 1e-9
    return {
        "scenario": step.name,
        "rate_per_s": step.rate_per_s,
        "people": step.people,
        "count": step.count,
        "arrived_per_s": round(len(result.lag) / max(max(result.sent, default=0), 1e-9), 1),
        "answered": len(result.status),
        "unanswered": step.people - len(result.status),
        "outcomes": {str(k): v for k, v in sorted(Counter(result.status).items())},
        **{
            f"answered_within_{limit:g}s": round(
                sum(
                    1
                    for t, s in zip(result.latency, result.status, strict=True)
                    if t <= limit and s < 500
                )
                / max(step.people, 1),
                4,
            )  # fmt: skip
            for limit in ANSWERED_WITHIN_S
        },
        "p50_ms": ms(sorted(result.latency), 0.5),
        "p99_ms": ms(sorted(result.latency), 0.99),
        "winners_p50_ms": ms(winners, 0.5),
        "winners_p99_ms": ms(winners, 0.99),
        "others_p50_ms": ms(others, 0.5),
        "others_p99_ms": ms(others, 0.99),
        "last_grant_answered_s": round(max(answered_at, default=0), 3),
        "generator_lag_p99_ms": ms(sorted(result.lag), 0.99),
        "generator_cpu_share": round(result.cpu_s / (span * cores()), 3),
        "seconds": round(span, 3),
    }
