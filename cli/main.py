"""`coupons`: one command for every part, the local stack, migrations and tokens."""

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from runtime import errors
from runtime.settings import Settings, SettingsError

Runner = Callable[[Settings, asyncio.Event], Awaitable[None]]


def _serve(runner: Runner) -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"coupons: {error}", file=sys.stderr)
        return 2

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await runner(settings, stop)

    with asyncio.Runner(loop_factory=_loop_factory(settings.event_loop)) as loop:
        try:
            loop.run(main())
        except SettingsError as error:  # one only this part reads
            print(f"coupons: {error}", file=sys.stderr)
            return 2
        except Exception as error:
            if not errors.known(error):
                raise  # a fault of ours: the traceback is what finds it
            print(f"coupons: {errors.said(error)}", file=sys.stderr)  # topics, broker, database
            return 1
    return 0


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop unless told otherwise: the same asyncio API, a faster loop and socket layer."""
    if name == "asyncio":
        return None
    import uvloop

    return uvloop.new_event_loop


def _part(name: str, workers: int | None = None) -> int:
    if name == "gateway":
        from gateway.app import run

        try:
            count = workers or Settings.from_env().gateway_workers
        except SettingsError as error:
            print(f"coupons: {error}", file=sys.stderr)
            return 2
        if count > 1:
            from deploy.workers import run_workers

            run_workers(count)
            return 0
    elif name == "allocator":
        from allocator.app import run
    else:
        from notifier.app import run
    return _serve(run)


def _database_url() -> str | None:
    url = os.environ.get("DATABASE_URL")
    if not url:
        print("coupons: DATABASE_URL is not set (run `coupons dev` here, or set it)",
              file=sys.stderr)  # fmt: skip
    return url


def _migrate(args: argparse.Namespace) -> int:
    from runtime.db import migrate

    url = _database_url()
    if not url:
        return 2
    for step in asyncio.run(migrate(url, args.target)) or ["already up to date"]:
        print(step)
    return 0


def _users(args: argparse.Namespace) -> int:
    from pathlib import Path

    from deploy.users import BadFile, import_users

    url = _database_url()
    if not url:
        return 2
    try:
        imported = asyncio.run(import_users(url, Path(args.file), args.rows_max, args.bytes_max))
    except BadFile as error:
        print(f"coupons: {error}", file=sys.stderr)
        return 2
    print(f"imported {imported} users")
    return 0


def _token(args: argparse.Namespace) -> int:
    from deploy.dev import dev_secrets
    from runtime.auth import mint_token

    secret = os.environ.get("COUPONS_JWT_SECRET") or dev_secrets(args.data_dir)["jwt"]
    print(mint_token(secret, args.sub, admin=args.admin, ttl_s=args.ttl))
    return 0


def _analysis(args: argparse.Namespace) -> tuple[Settings, int, int]:
    """Settings from the environment, and --since/--until in ms (SettingsError, ValueError)."""
    from datetime import datetime

    since, until = (
        int(datetime.fromisoformat(t).timestamp() * 1000) if t else default
        for t, default in ((getattr(args, "since", None), 0), (getattr(args, "until", None), 2**62))
    )
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        if str(error).startswith("missing"):
            hint = "run `coupons dev` in this folder, or set them"
            raise SettingsError(f"{error} ({hint})") from None
        raise
    return settings, since, until


def _export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from deploy.export import ExportError, export

    try:
        settings, since, until = _analysis(args)
        out = Path(args.out) if args.out else None
        written = asyncio.run(export(settings, args.log, args.format, out, since, until))
    except (SettingsError, ValueError, ExportError) as error:
        print(f"coupons: {error}", file=sys.stderr)
        return 2
    print(f"{written:,} {args.log} records written to {args.out or 'standard output'}",
          file=sys.stderr)  # fmt: skip
    return 0


def _replay(args: argparse.Namespace) -> int:
    from allocator.tools.replay import replay

    try:
        settings, since, until = _analysis(args)
    except (SettingsError, ValueError) as error:
        print(f"coupons: {error}", file=sys.stderr)
        return 2
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


MISMATCHES_SHOWN = 20


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
        print("coupons: name=value changes go with --what-if COUPON_ID", file=sys.stderr)
        return 2
    try:
        lines = asyncio.run(what_if(settings, args.what_if, args.changes))
    except WhatIfError as error:
        print(f"coupons: {error}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

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


def _bench(args: argparse.Namespace) -> int:
    from bench.run import run
    from deploy.kafka_broker import missing

    why = missing() if args.broker == "kafka" else None
    if why is not None:
        print(f"coupons bench: --broker kafka: {why}", file=sys.stderr)
        return 1
    return run(args)


def _soak(args: argparse.Namespace) -> int:
    from bench.soak import run

    return run(args)


def _dev(args: argparse.Namespace) -> int:
    from deploy.dev import STOP_GRACE_S, run_dev

    grace_s = STOP_GRACE_S if args.stop_grace_s is None else args.stop_grace_s
    return run_dev(args.port, args.data_dir, args.demo, grace_s, args.broker)


def _add_analysts_commands(commands: Any) -> None:
    """replay (and what-if), export and report, on the `coupons` parser's subparsers."""
    replay = commands.add_parser(
        "replay", help="re-decide the command log and compare every decision with PostgreSQL"
    )
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
    export = commands.add_parser(
        "export", help="a log (commands, decisions) or the grants and their events, for notebooks"
    )
    export.add_argument("log", choices=("commands", "decisions", "grants", "events"),
                        help="a log, or the grants or their audit trail")  # fmt: skip
    export.add_argument("--format", choices=("jsonl", "csv", "parquet"), default="jsonl",
                        help="Parquet needs pyarrow")  # fmt: skip
    export.add_argument("--out", default=None, help="a file (default: standard output)")
    report = commands.add_parser("report", help="the story of one coupon, or the last day's")
    report.add_argument("coupon", nargs="?", default=None, help="its id (none: the last day's)")
    report.add_argument("--out", default=None, help="where the PNG goes (default .data/reports)")
    report.add_argument("--json", action="store_true", help="the summary as JSON")
    report.add_argument("--data-dir", default=".data", help="the local stack's data folder")
    for analysis in (replay, export):
        analysis.add_argument("--since", default=None, help="from this RFC 3339 time")
        analysis.add_argument("--until", default=None, help="before this RFC 3339 time")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coupons", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    dev = commands.add_parser("dev", help="the whole stack on this machine")
    dev.add_argument("--port", type=int, default=8080, help="gateway port; notifier is port+1")
    dev.add_argument("--data-dir", default=".data",
                     help="where PostgreSQL (and Apache Kafka's log) keep their files")  # fmt: skip
    dev.add_argument("--demo", action="store_true", help="create a live demo coupon")
    dev.add_argument("--stop-grace-s", type=float, help="how long, in seconds, a part may "
                     "take to stop after Ctrl-C before it is killed")  # fmt: skip
    from deploy.stack import BROKERS

    dev.add_argument("--broker", choices=BROKERS, default=BROKERS[0],
                     help="tansu (default): its log in memory, new topics each run; kafka: "
                     "Apache Kafka (needs Java), its log kept in the data folder")  # fmt: skip
    parts = {
        name: commands.add_parser(name, help=f"run the {name}, configured by environment variables")
        for name in ("gateway", "allocator", "notifier")
    }
    parts["gateway"].add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes sharing the port (SO_REUSEPORT); default GATEWAY_WORKERS or 1",
    )
    migrate = commands.add_parser("migrate", help="bring the database schema up to date")
    migrate.add_argument("--target", type=int, default=None, help="migrate up or down to this")
    bench = commands.add_parser("bench", help="measure against the baseline and the ceiling")
    from bench.options import add_arguments

    add_arguments(bench)
    soak = commands.add_parser("soak", help="a long steady load; every process's memory sampled")
    from bench.soak import add_arguments as add_soak_arguments

    add_soak_arguments(soak)
    users = commands.add_parser("users", help="manage the users table")
    users_do = users.add_subparsers(dest="users_command", required=True)
    users_import = users_do.add_parser("import", help="add or update users from a CSV file")
    users_import.add_argument("file", help="CSV with the columns id and display_name")
    from deploy.users import USERS_IMPORT_BYTES_MAX, USERS_IMPORT_ROWS_MAX

    for flag, bound, what in (("--rows-max", USERS_IMPORT_ROWS_MAX, "more people"),
                              ("--bytes-max", USERS_IMPORT_BYTES_MAX, "more bytes")):  # fmt: skip
        users_import.add_argument(
            flag, type=_positive, default=bound, help=f"refuse a file of {what} (default {bound:,})"
        )
    _add_analysts_commands(commands)
    from deploy import client

    client.add_arguments(commands)
    token = commands.add_parser("token", help="print a JWT for the local stack")
    token.add_argument("--sub", required=True, help="the user id")
    token.add_argument("--admin", action="store_true", help="grant the admin role")
    token.add_argument("--ttl", type=int, default=24 * 3600, help="lifetime in seconds")
    token.add_argument("--data-dir", default=".data", help="the local stack's data folder")
    return parser


def _positive(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number above 0")
    return int(raw)


def subcommands() -> set[str]:
    """What `coupons` can be asked to do (deployment files name these)."""
    found = parser()._subparsers
    assert found is not None
    choices = found._group_actions[0].choices
    assert isinstance(choices, dict)
    return set(choices)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    from deploy import client, local

    args = parser().parse_args(argv)
    if args.command in ("gateway", "allocator", "notifier"):
        return _part(args.command, getattr(args, "workers", None))
    if args.command in (*client.COMMANDS, *FINDS_THE_STACK):
        try:
            if local.apply(os.environ, getattr(args, "data_dir", local.DATA_DIR)):
                args = parser().parse_args(argv)  # defaults read from the environment
        except (local.StackFileError, OSError) as error:
            print(f"coupons: {error}", file=sys.stderr)
            return 2
        return _one_line_on_failure(args)
    return HANDLERS[args.command](args)


def _one_line_on_failure(args: argparse.Namespace) -> int:
    """A command for people at a terminal: a failure is one line and a non-zero exit,
    never a traceback (COUPONS_DEBUG=1 shows it)."""
    from cli import failures
    from deploy import client

    # The libraries' own complaints (a broker it cannot reach, say) are this line's to say.
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        if args.command in client.COMMANDS:
            return client.run(args)
        return HANDLERS[args.command](args)
    except Exception as error:
        if os.environ.get("COUPONS_DEBUG"):
            raise
        print(f"coupons: {failures.explain(error)}", file=sys.stderr)
        return 1


# Commands run at a terminal in the project folder: they read the local stack's settings
# file (deploy/local.py) for what the environment does not say.
FINDS_THE_STACK = ("replay", "export", "report", "users", "migrate", "token")


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "dev": _dev,
    "migrate": _migrate,
    "token": _token,
    "users": _users,
    "bench": _bench,
    "soak": _soak,
    "replay": _replay,
    "export": _export,
    "report": _report,
}
