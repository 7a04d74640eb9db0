"""`coupons`: one command for every part, the local stack, migrations and tokens.

COMMANDS is the one table of what `coupons` can be asked to do: each subcommand's name,
what it does, its arguments, what runs it, and whether it reads or writes the local
stack's settings file (deploy/local.py). Whatever fails in any of them comes back here and
leaves through cli/failures.py: one line on standard error, and an exit status.
"""

import argparse
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Literal

from cli import analysts, failures, operators, parts
from deploy import client, local

DESCRIPTION = "`coupons`: one command for every part, the local stack, migrations and tokens."
Arguments = Callable[[argparse.ArgumentParser], None]


def _none(parser: argparse.ArgumentParser) -> None:
    pass


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    run: Callable[[argparse.Namespace], int]  # its exit status; a failure is raised
    arguments: Arguments = _none
    # "reads": run at a terminal in the project folder, it finds the stack by itself (the
    # settings file fills in what the environment does not say), and a fault of ours is one
    # line too. "writes": `coupons dev`, which writes the file. Either takes --data-dir.
    stack_file: Literal["reads", "writes"] | None = None


COMMANDS = (
    Command("dev", "the whole stack on this machine", operators.dev, operators.dev_arguments,
            stack_file="writes"),
    *(
        Command(name, f"run the {name}, configured by environment variables", run, arguments)
        for name, run, arguments in (
            ("gateway", parts.gateway, parts.gateway_arguments),
            ("allocator", parts.allocator, _none),
            ("notifier", parts.notifier, _none),
        )
    ),
    Command("migrate", "bring the database schema up to date", operators.migrate,
            operators.migrate_arguments, stack_file="reads"),
    Command("bench", "measure against the baseline and the ceiling", operators.bench,
            operators.bench_arguments),
    Command("soak", "a long steady load; every process's memory sampled", operators.soak,
            operators.soak_arguments),
    Command("users", "manage the users table", operators.users, operators.users_arguments,
            stack_file="reads"),
    Command("replay", "re-decide the command log and compare every decision with PostgreSQL",
            analysts.replay, analysts.replay_arguments, stack_file="reads"),
    Command("export", "a log (commands, decisions) or the grants and their events, for "
            "notebooks", analysts.export, analysts.export_arguments, stack_file="reads"),
    Command("report", "the story of one coupon, or the last day's", analysts.report,
            analysts.report_arguments, stack_file="reads"),
    Command("create", "create a coupon (admin)", partial(client.run, client.create),
            client.create_arguments, stack_file="reads"),
    Command("list", "list coupons", partial(client.run, client.listing),
            client.listing_arguments, stack_file="reads"),
    Command("claim", "claim a coupon", partial(client.run, client.claim),
            client.claim_arguments, stack_file="reads"),
    Command("poll", "look at a ticket", partial(client.run, client.poll),
            client.poll_arguments, stack_file="reads"),
    Command("redeem", "redeem one of your grants", partial(client.run, client.redeem),
            client.redeem_arguments, stack_file="reads"),
    Command("token", "print a JWT for the local stack", operators.token,
            operators.token_arguments, stack_file="reads"),
)  # fmt: skip
BY_NAME = {command.name: command for command in COMMANDS}


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coupons", description=DESCRIPTION)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        each = subparsers.add_parser(command.name, help=command.help)
        if command.stack_file is not None:
            each.add_argument("--data-dir", default=local.DATA_DIR,
                              help="the local stack's data folder: its settings file, and "
                              "PostgreSQL's and Apache Kafka's files (default .data)")  # fmt: skip
        command.arguments(each)
    return parser


def subcommands() -> set[str]:
    """What `coupons` can be asked to do (deployment files name these)."""
    return set(BY_NAME)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    args = parser().parse_args(argv)
    command = BY_NAME[args.command]
    at_a_terminal = command.stack_file == "reads"
    try:
        if at_a_terminal:
            # The libraries' own complaints (a broker it cannot reach, say) are the failure
            # line's to say.
            logging.getLogger().setLevel(logging.WARNING)
            logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
            if local.apply(os.environ, args.data_dir):
                args = parser().parse_args(argv)  # defaults read from the environment
        return command.run(args)
    except Exception as error:
        return failures.fail(error, faults_in_a_line=at_a_terminal)
