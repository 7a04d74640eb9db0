"""`coupons replay|export|report`: the analysts' commands, run in the project folder
against the stack's log and database. A failure is raised to the one failure path
(cli/failures.py)."""

import argparse
import asyncio
import sys
from datetime import datetime
from pathlib import Path

from runtime.errors import BadInput
from runtime.settings import Settings, SettingsError

MISMATCHES_SHOWN = 20


def replay(args: argparse.Namespace) -> int:
    from allocator.tools.replay import replay

    settings, since, until = _analysis(args)
    if args.what_if or args.changes:
        return _what_if(args, settings)
    report = asyncio.run(replay(settings, since, until))
    if report.begins_later:
        print(_begins_later(report.earlier, report.about_earlier))
    for partition, commands in sorted(report.commands.items()):
        base = report.bases[partition]
        earlier = f" (an earlier log, before position {base}, is gone)" if base else ""
        print(f"partition {partition}: {commands:,} commands re-decided{earlier}")
    for line in report.mismatches[:MISMATCHES_SHOWN]:
        print(f"MISMATCH {line}")
    if len(report.mismatches) > MISMATCHES_SHOWN:
        print(f"… and {len(report.mismatches) - MISMATCHES_SHOWN:,} more mismatches")
    unreadable = f", {report.unreadable} unreadable records skipped" if report.unreadable else ""
    print(
        f"compared {report.compared:,} decisions: {report.matched:,} match, "
        f"{len(report.mismatches):,} mismatch{unreadable}"
    )
    if report.wrong_secret:
        print(
            f"coupons: every one of the {report.granted:,} grants differs in its code alone: "
            "the code secret (COUPONS_CODE_SECRET) is likely not the one the allocator used",
            file=sys.stderr,
        )
    return 1 if report.mismatches else 0


def replay_arguments(replay: argparse.ArgumentParser) -> None:
    replay.add_argument(
        "--what-if",
        metavar="COUPON_ID",
        default=None,
        help="instead: how the outcome would differ with that coupon's settings changed",
    )
    replay.add_argument(
        "changes",
        nargs="*",
        metavar="NAME=VALUE",
        help="with --what-if: count=50 per_user_limit=2 daily_limit=false …",
    )
    _between(replay)


def _begins_later(earlier: int, about_earlier: int) -> str:
    """One line: the log begins after the database's history, and what is left out."""
    about = f", and {about_earlier:,} in this log about coupons created in that one" * bool(
        about_earlier
    )
    return (
        f"the log begins after the database's history: {earlier:,} decision"
        f"{'s' * (earlier != 1)} in PostgreSQL came from an earlier log{about}; only what"
        " this log alone decides is compared"
    )


def _what_if(args: argparse.Namespace, settings: Settings) -> int:
    from allocator.tools.whatif import WhatIfError, what_if

    if not args.what_if:
        raise WhatIfError("name=value changes go with --what-if COUPON_ID")
    print("\n".join(asyncio.run(what_if(settings, args.what_if, args.changes))))
    return 0


def export(args: argparse.Namespace) -> int:
    from deploy.export import export

    settings, since, until = _analysis(args)
    out = Path(args.out) if args.out else None
    written = asyncio.run(export(settings, args.log, args.format, out, since, until))
    print(f"{written:,} {args.log} records written to {args.out or 'standard output'}",
          file=sys.stderr)  # fmt: skip
    return 0


def export_arguments(export: argparse.ArgumentParser) -> None:
    export.add_argument("log", choices=("commands", "decisions", "grants", "events"),
                        help="a log, or the grants or their audit trail")  # fmt: skip
    export.add_argument("--format", choices=("jsonl", "csv", "parquet"), default="jsonl",
                        help="Parquet needs pyarrow")  # fmt: skip
    export.add_argument("--out", default=None, help="a file (default: standard output)")
    _between(export)


def report(args: argparse.Namespace) -> int:
    from deploy import report

    settings, _, _ = _analysis(args)
    if args.coupon is None:
        for line in asyncio.run(report.recent(settings)) or ["no coupons in the last day"]:
            print(line)
        return 0
    story = asyncio.run(report.gather(settings, args.coupon))
    summary = story.summary()
    out = Path(args.out) if args.out else Path(args.data_dir) / "reports"
    drawn = report.plot(story, out / f"{story.code}-{args.coupon[:8]}.png")
    if args.json:
        print(report.write_json({**summary, "png": str(drawn)}))
    else:
        print("\n".join([*report.lines(summary, args.coupon), f"plot               {drawn}"]))
    return 0


def report_arguments(report: argparse.ArgumentParser) -> None:
    report.add_argument("coupon", nargs="?", default=None, help="its id (none: the last day's)")
    report.add_argument("--out", default=None, help="where the PNG goes (default .data/reports)")
    report.add_argument("--json", action="store_true", help="the summary as JSON")


def _between(analysis: argparse.ArgumentParser) -> None:
    analysis.add_argument("--since", default=None, help="from this RFC 3339 time")
    analysis.add_argument("--until", default=None, help="before this RFC 3339 time")


def _analysis(args: argparse.Namespace) -> tuple[Settings, int, int]:
    """Settings from the environment, and --since/--until in ms."""
    since = _ms(getattr(args, "since", None), "--since", 0)
    until = _ms(getattr(args, "until", None), "--until", 2**62)
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        if str(error).startswith("missing"):
            hint = "run `coupons dev` in this folder, or set them"
            raise SettingsError(f"{error} ({hint})") from None
        raise
    return settings, since, until


def _ms(moment: str | None, flag: str, default: int) -> int:
    if not moment:
        return default
    try:
        return int(datetime.fromisoformat(moment).timestamp() * 1000)
    except ValueError as error:
        raise BadInput(f"{flag}: {error}") from None
