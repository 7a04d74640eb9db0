"""`coupons replay --what-if COUPON_ID name=value …`: re-decide the whole command log with
one coupon's settings changed, and say how the outcome would differ. Nothing is written.

The log holds the follow-ups the allocators emitted (a person's day asked for in another
partition, and its answer); with a coupon's settings changed those would differ, so they
are left out and made again. The commands people and admins sent, and the allocators'
timer ticks, are merged across partitions in the order the broker stamped them (each
partition's own order kept) and fed to an in-memory cluster of the real cores
(allocator/tools/simulation.py): once as they were, once with the change. The two runs are
compared, so a difference is the change's doing, not the simulation's.
"""

import heapq
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any

from allocator.core.state import CoreConfig
from allocator.tools.simulation import Cluster
from runtime import kafka
from runtime.errors import BadInput
from runtime.settings import Settings
from schemas.messages import (
    Command,
    CouponSpec,
    CreateCoupon,
    DayReserved,
    ReleaseDay,
    ReserveDay,
    Revoke,
)

FOLLOW_UPS = (ReserveDay, DayReserved, ReleaseDay, Revoke)
# The settings a what-if may change: the API's names for CouponSpec's fields.
NAMES = {
    "count": "count",
    "per_user_limit": "per_user_limit",
    "daily_limit": "daily_rule",
    "hold_seconds": "hold_seconds",
    "lock_seconds": "lock_seconds",
    "redemptions_per_grant": "redemptions_per_grant",
    "redemptions_per_user": "redemptions_per_user",
}
DRAIN_BATCH_MAX = 1000
PEOPLE_SHOWN = 10


class WhatIfError(BadInput):
    """A change that cannot be tried: malformed, or of a coupon the log never created."""


@dataclass(frozen=True, slots=True)
class Logged:
    timestamp: int
    partition: int
    offset: int
    command: Command


def parse_changes(given: Iterable[str]) -> dict[str, Any]:
    """`count=50 daily_limit=false …` as CouponSpec fields and values."""
    kinds = {f.name: type(f.default) for f in fields(CouponSpec) if f.name in NAMES.values()}
    kinds["count"] = int
    changes: dict[str, Any] = {}
    for pair in given:
        name, sep, text = pair.partition("=")
        if not sep or name not in NAMES:
            raise WhatIfError(f"{pair!r}: give name=value, name one of {', '.join(NAMES)}")
        kind = kinds[NAMES[name]]
        if kind is bool:
            if text.lower() not in ("true", "false"):
                raise WhatIfError(f"{pair!r}: {name} is true or false")
            changes[NAMES[name]] = text.lower() == "true"
            continue
        try:
            value = int(text)
        except ValueError:
            raise WhatIfError(f"{pair!r}: {name} is a whole number") from None
        if value < 0:
            raise WhatIfError(f"{pair!r}: {name} cannot be negative")
        changes[NAMES[name]] = value
    if not changes:
        raise WhatIfError(f"say what to change: name=value, name one of {', '.join(NAMES)}")
    return changes


def sent(logged: Iterable[Logged]) -> list[Command]:
    """What people, admins and timers sent, across partitions in the broker's time order,
    each partition's own order kept; the allocators' follow-ups left out."""
    partitions: dict[int, list[Logged]] = {}
    for record in logged:
        if not isinstance(record.command, FOLLOW_UPS):
            partitions.setdefault(record.partition, []).append(record)
    merged = heapq.merge(*partitions.values(), key=lambda r: r.timestamp)  # keeps each order
    return [r.command for r in merged]


def decide(commands: list[Command], partitions: int, config: CoreConfig) -> Cluster:
    cluster = Cluster(partitions, config)
    for command in commands:
        cluster.append(command)
        cluster.drain(DRAIN_BATCH_MAX)
    return cluster


def changed(commands: list[Command], coupon_id: str, changes: dict[str, Any]) -> list[Command]:
    """The commands, with the coupon's creation carrying the changed settings."""
    found = False
    out: list[Command] = []
    for command in commands:
        if isinstance(command, CreateCoupon) and command.coupon_id == coupon_id:
            command = replace(command, spec=replace(command.spec, **changes))
            found = True
        out.append(command)
    if not found:
        raise WhatIfError(
            f"the log holds no creation of coupon {coupon_id} (another topic prefix, or a "
            "log that began after it)"
        )
    return out


@dataclass
class Outcome:
    """Who got what, per coupon, and when each coupon's last unit went."""

    winners: dict[str, Counter[str]]  # coupon id: grants per person
    sold_out_ms: dict[str, int]
    codes: dict[str, str]  # coupon id: its name
    specs: dict[str, CouponSpec]


def outcome(cluster: Cluster, commands: list[Command]) -> Outcome:
    specs = {c.coupon_id: c.spec for c in commands if isinstance(c, CreateCoupon)}
    winners: dict[str, Counter[str]] = {}
    sold_out: dict[str, int] = {}
    for decision in cluster.decisions:
        if decision.outcome != "granted" or decision.grant is None:
            continue
        people = winners.setdefault(decision.coupon_id, Counter())
        people[decision.user_id] += 1
        spec = specs.get(decision.coupon_id)
        if spec is not None and sum(people.values()) == spec.count:
            sold_out.setdefault(decision.coupon_id, decision.at_ms)
    codes = {cid: spec.code for cid, spec in specs.items()}
    return Outcome(winners, sold_out, codes, specs)


async def read(settings: Settings) -> list[Logged]:
    return [
        Logged(record.timestamp, record.partition, record.offset, command)
        async for record, command in kafka.read_commands(settings)
        if command is not None
    ]


async def what_if(settings: Settings, coupon_id: str, given: list[str]) -> list[str]:
    """The lines `coupons replay --what-if` prints."""
    changes = parse_changes(given)
    commands = sent(await read(settings))
    config = CoreConfig(settings.code_secret.encode(), settings.day_zone)
    altered = changed(commands, coupon_id, changes)
    partitions = settings.commands_partitions
    before = outcome(decide(commands, partitions, config), commands)
    after = outcome(decide(altered, partitions, config), altered)
    return describe(before, after, coupon_id, changes, len(commands))


def describe(
    before: Outcome, after: Outcome, coupon_id: str, changes: dict[str, Any], commands: int
) -> list[str]:
    spec = before.specs[coupon_id]
    was = ", ".join(
        f"{_api(n)}={_say(v)} (was {_say(getattr(spec, n))})" for n, v in changes.items()
    )
    lines = [f"what if {spec.code} ({coupon_id}) had {was}:"]
    lines += _coupon(before, after, coupon_id, "  ")
    others = sorted(
        cid for cid in set(before.winners) | set(after.winners)
        if cid != coupon_id and before.winners.get(cid) != after.winners.get(cid)
    )  # fmt: skip
    if others:
        lines.append(f"other coupons it changes, through the daily rule: {len(others)}")
        for cid in others:
            lines.append(f"  {before.codes.get(cid, '?')} ({cid}):")
            lines += _coupon(before, after, cid, "    ")
    else:
        lines.append("other coupons: none would change")
    lines.append(f"{commands:,} commands re-decided twice in memory; nothing was written")
    return lines


def _coupon(before: Outcome, after: Outcome, coupon_id: str, indent: str) -> list[str]:
    was, now = before.winners.get(coupon_id, Counter()), after.winners.get(coupon_id, Counter())
    won, lost = sorted(now - was), sorted(was - now)
    sold_was, sold_now = before.sold_out_ms.get(coupon_id), after.sold_out_ms.get(coupon_id)
    return [
        f"{indent}grants     {sum(was.values()):,} → {sum(now.values()):,}",
        f"{indent}sold out   {_time(sold_was)} → {_time(sold_now)}",
        f"{indent}would win  {_people(won)}",
        f"{indent}would lose {_people(lost)}",
    ]


def _people(people: list[str]) -> str:
    if not people:
        return "nobody"
    shown = ", ".join(people[:PEOPLE_SHOWN])
    more = f" and {len(people) - PEOPLE_SHOWN:,} more" if len(people) > PEOPLE_SHOWN else ""
    return f"{len(people):,}: {shown}{more}"


def _time(ms: int | None) -> str:
    if ms is None:
        return "never"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S.%f")[:-3]


def _api(field_name: str) -> str:
    return next(api for api, name in NAMES.items() if name == field_name)


def _say(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
