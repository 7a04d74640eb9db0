"""`coupons bench`: the noon burst, sustained grants and replay, side by side with the
baseline and the ceiling, on this machine, in one run."""

import argparse
import itertools
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench import markdown, noon, scenarios, systems, tables
from bench.options import SCENARIOS

Plotted = dict[str, list[scenarios.Run]]  # a plot each, by name


def run(args: argparse.Namespace) -> int:
    console = Console(width=max(Console().width, 140))
    started = time.monotonic()

    def log(line: str) -> None:
        console.print(f"[dim]{time.monotonic() - started:6.1f} s[/dim] {line}")

    wanted = set(args.scenarios.split(","))
    stamp = time.strftime("%Y%m%dT%H%M%S")
    out = Path(args.out)
    with tempfile.TemporaryDirectory(prefix="coupons-bench-") as tmp:
        made = itertools.count()

        @contextmanager
        def fresh(compared: bool = True) -> Iterator[systems.Systems]:
            """Everything started anew, on empty logs and databases: the embedded broker
            slows as its logs grow (docs/benchmark.md, Soak), so no scenario pays for the ones
            before."""
            root = Path(tmp) / f"run{next(made)}"
            root.mkdir()
            stack = systems.start(root, log, args.workers, compared, broker=args.broker)
            try:
                yield stack
            finally:
                stack.stop()

        figures, plotted, replayed = _measure(args, fresh, wanted, console, log)
    settings: dict[str, Any] = {k: v for k, v in vars(args).items() if k != "handler"}
    path = tables.write(out, stamp, settings, figures, replayed, console)
    for name, runs in plotted.items():
        tables.plot(runs, out / f"bench-{stamp}-{name}.png", name)
    ok = all(f["checks"].get("ok", True) for f in figures)
    ok = ok and (replayed is None or replayed["checks"]["ok"])
    log(f"report: {path} ({'all checks passed' if ok else 'CHECKS FAILED'})")
    if ok and wanted == set(SCENARIOS):  # a shorter run's figures do not stand for the bench's
        log(f"figures: {markdown.write(json.loads(path.read_text()))}")
    return 0 if ok else 1


def claim_scenarios(args: argparse.Namespace) -> list[scenarios.ClaimScenario]:
    """The burst (100,000 people, 25 units: almost every answer at the edge) and the
    sustained run (a unit for everyone: every answer durable), each without and with an
    Idempotency-Key, the sustained one also over many connections. Each is measured on the
    ceiling too: at 512 connections its latency is the floor any p99 of ours stands on."""
    every = ("ceiling", "baseline", "ours")
    made = []
    for keyed in (False, True):
        suffix = "-keyed" if keyed else ""
        burst = (f"burst{suffix}", every, args.users, args.count, args.connections)
        sustained = (f"sustained{suffix}", every, args.sustained_users,
                     args.sustained_users, args.connections)  # fmt: skip
        wide = (f"sustained-wide{suffix}", every, args.sustained_users,
                args.sustained_users, args.wide_connections)  # fmt: skip
        for name, systems_measured, users, count, connections in (burst, sustained, wide):
            made.append(
                scenarios.ClaimScenario(
                    name, systems_measured, users, count, connections, keyed, args.daily_rule
                )
            )
    return made


def _measure(
    args: argparse.Namespace, fresh: systems.Fresh, wanted: set[str], console: Console,
    log: Callable[[str], None],
) -> tuple[list[dict[str, Any]], Plotted, dict[str, Any] | None]:  # fmt: skip
    figures: list[dict[str, Any]] = []
    plotted: Plotted = {}
    replayed = None
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=console) as bar:

        def progress(label: str, total: int) -> Callable[[int], None]:
            task = bar.add_task(label, total=total)
            return lambda done: bar.update(task, completed=done)

        for scenario in claim_scenarios(args):
            if scenario.name not in wanted:
                continue
            with fresh() as stack:
                runs = scenarios.claims(stack, scenario, args.generators, progress)
            figures += [r.figures() for r in runs]
            if scenario.name in ("burst", "burst-keyed"):
                plotted[scenario.name] = runs
        if "noon" in wanted:
            noon_figures, noon_run = noon.run(fresh, args, progress)
            figures.append(noon_figures)
            plotted["noon"] = [noon_run]
        if "replay" in wanted:
            with fresh(compared=False) as stack:
                replayed = scenarios.replay(stack, args.replay_commands, args.daily_rule, log)
    return figures, plotted, replayed
