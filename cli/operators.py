"""`coupons dev|migrate|users|token|bench|soak`: the stack on this machine, the database,
tokens and the benchmark. A failure is raised to the one failure path (cli/failures.py)."""

import argparse
import asyncio
import os

from runtime.settings import SettingsError


def dev(args: argparse.Namespace) -> int:
    from deploy.dev import STOP_GRACE_S, run_dev

    grace_s = STOP_GRACE_S if args.stop_grace_s is None else args.stop_grace_s
    return run_dev(args.port, args.data_dir, args.demo, grace_s, args.broker)


def dev_arguments(dev: argparse.ArgumentParser) -> None:
    from deploy.stack import BROKERS

    dev.add_argument("--port", type=int, default=8080, help="gateway port; notifier is port+1")
    dev.add_argument("--demo", action="store_true", help="create a live demo coupon")
    dev.add_argument("--stop-grace-s", type=float, help="how long, in seconds, a part may "
                     "take to stop after Ctrl-C before it is killed")  # fmt: skip
    dev.add_argument("--broker", choices=BROKERS, default=BROKERS[0],
                     help="tansu (default): its log in memory, new topics each run; kafka: "
                     "Apache Kafka (needs Java), its log kept in the data folder")  # fmt: skip


def migrate(args: argparse.Namespace) -> int:
    from runtime.db import migrate

    for step in asyncio.run(migrate(_database_url(), args.target)) or ["already up to date"]:
        print(step)
    return 0


def migrate_arguments(migrate: argparse.ArgumentParser) -> None:
    migrate.add_argument("--target", type=int, default=None, help="migrate up or down to this")


def users(args: argparse.Namespace) -> int:
    from pathlib import Path

    from deploy.users import import_users

    url = _database_url()
    imported = asyncio.run(import_users(url, Path(args.file), args.rows_max, args.bytes_max))
    print(f"imported {imported} users")
    return 0


def users_arguments(users: argparse.ArgumentParser) -> None:
    from deploy.users import USERS_IMPORT_BYTES_MAX, USERS_IMPORT_ROWS_MAX

    users_do = users.add_subparsers(dest="users_command", required=True)
    users_import = users_do.add_parser("import", help="add or update users from a CSV file")
    users_import.add_argument("file", help="CSV with the columns id and display_name")
    for flag, bound, what in (("--rows-max", USERS_IMPORT_ROWS_MAX, "more people"),
                              ("--bytes-max", USERS_IMPORT_BYTES_MAX, "more bytes")):  # fmt: skip
        users_import.add_argument(
            flag, type=_positive, default=bound, help=f"refuse a file of {what} (default {bound:,})"
        )


def token(args: argparse.Namespace) -> int:
    from deploy.dev import dev_secrets
    from runtime.auth import mint_token

    secret = os.environ.get("COUPONS_JWT_SECRET") or dev_secrets(args.data_dir)["jwt"]
    print(mint_token(secret, args.sub, admin=args.admin, ttl_s=args.ttl))
    return 0


def token_arguments(token: argparse.ArgumentParser) -> None:
    token.add_argument("--sub", required=True, help="the user id")
    token.add_argument("--admin", action="store_true", help="grant the admin role")
    token.add_argument("--ttl", type=int, default=24 * 3600, help="lifetime in seconds")


def bench(args: argparse.Namespace) -> int:
    from bench.run import run
    from deploy.kafka_broker import KafkaUnavailable, missing

    why = missing() if args.broker == "kafka" else None
    if why is not None:
        raise KafkaUnavailable(f"--broker kafka: {why}")
    return run(args)


def bench_arguments(bench: argparse.ArgumentParser) -> None:
    from bench.options import add_arguments

    add_arguments(bench)


def soak(args: argparse.Namespace) -> int:
    from bench.soak import run

    return run(args)


def soak_arguments(soak: argparse.ArgumentParser) -> None:
    from bench.soak import add_arguments

    add_arguments(soak)


def _database_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise SettingsError("DATABASE_URL is not set (run `coupons dev` here, or set it)")
    return url


def _positive(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number above 0")
    return int(raw)
