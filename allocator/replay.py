"""`coupons replay`: re-decide the command log with the pure core and compare every
decision with PostgreSQL (invariant 6: the database can be proven from the log).

Each partition's log is read from its first record into a fresh `PartitionCore`, in log
order, one record at a time: decisions depend on everything before them, so the whole log
is always re-decided; `--since`/`--until` only narrow which decisions are compared.
A decision matches when the database has the same outcome, reason, grant, grant owner and
code, at the same log position. A decision the database lacks, or one it has at a position
of the log that replay did not make, is a mismatch too.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import asyncpg

from allocator.core import PartitionCore
from allocator.effects import DecisionRow, Record
from allocator.state import CoreConfig
from runtime import kafka
from runtime.settings import Settings
from schemas.messages import Decision
from schemas.topics import Topics

IDS_PER_QUERY = 5000

STORED = """
SELECT d.request_id::text, d.outcome, d.reason, d.grant_id::text, d.log_partition,
       d.log_offset, g.user_id AS grant_user, g.code AS grant_code
FROM decisions d LEFT JOIN grants g ON g.id = d.grant_id
WHERE d.request_id = ANY($1::uuid[])
"""
STORED_IN_LOG = """
SELECT request_id::text, decided_at FROM decisions
WHERE log_partition = $1 AND log_offset >= $2 AND log_offset < $3
"""
# What the allocator refused: PostgreSQL's refusals cannot be found again from the log alone.
REFUSED = "SELECT log_offset, fault FROM refused_commands WHERE log_partition = $1"
BASE = "SELECT log_base FROM allocator_partitions WHERE topic = $1 AND partition = $2"


@dataclass(frozen=True, slots=True)
class Shown:
    """A decision as both sides can show it."""

    outcome: str
    reason: str | None
    grant_id: str | None
    grant_user: str | None
    grant_code: str | None
    position: tuple[int, int]  # partition, log position


@dataclass
class Report:
    compared: int = 0
    matched: int = 0
    mismatches: list[str] = field(default_factory=list)
    commands: dict[int, int] = field(default_factory=dict)  # per partition
    bases: dict[int, int] = field(default_factory=dict)
    unreadable: int = 0  # records the allocator skipped too
    granted: int = 0  # grants compared
    codes_differ: int = 0  # of them, the same in all but the code

    @property
    def wrong_secret(self) -> bool:
        """Every grant differs in its code alone: the code secret is not the allocator's."""
        return self.granted > 0 and self.codes_differ == self.granted


Replayed = dict[str, tuple[Decision, Shown]]  # request id → its first decision


def redecide(partition: int, records: Iterable[Record], config: CoreConfig) -> Replayed:
    """Every request's first decision in one partition's log."""
    core = PartitionCore(config)
    found: Replayed = {}
    for record in records:
        request_id = getattr(record.command, "request_id", "")
        known = isinstance(request_id, str) and request_id in found
        earlier = {request_id: found[request_id][0]} if known else {}
        for row in core.decide([record], earlier).decisions:
            found.setdefault(row.decision.request_id, (row.decision, shown(partition, row)))
    return found


def shown(partition: int, row: DecisionRow) -> Shown:
    decision, grant = row.decision, row.decision.grant
    return Shown(
        decision.outcome,
        decision.reason,
        grant.id if grant else None,
        grant.user_id if grant else None,
        grant.code if grant else None,
        (partition, row.offset),
    )


async def read_log(settings: Settings, report: Report) -> dict[int, list[Record]]:
    """Every partition's records; log marks and unreadable records are skipped, as the
    allocator skips them."""
    records: dict[int, list[Record]] = {}
    async for message, command in kafka.read_commands(settings):
        if command is None:
            report.unreadable += 1
            continue
        records.setdefault(message.partition, []).append(Record(message.offset, command))
    return records


async def replay(settings: Settings, since_ms: int, until_ms: int) -> Report:
    config = CoreConfig(settings.code_secret.encode(), settings.day_zone)
    topic = Topics(settings.topic_prefix).commands
    report = Report()
    log = await read_log(settings, report)
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        for partition, records in sorted(log.items()):
            base = await pool.fetchval(BASE, topic, partition) or 0
            report.commands[partition], report.bases[partition] = len(records), base
            refused = dict(await pool.fetch(REFUSED, partition))  # position: why
            positioned = [
                Record(position, r.command, refused.get(position))
                for r in records
                for position in (r.offset + base,)
            ]
            replayed = redecide(partition, positioned, config)
            wanted = {k: v for k, v in replayed.items() if since_ms <= v[0].at_ms < until_ms}
            await _compare(pool, wanted, report)
            end = base + (records[-1].offset + 1 if records else 0)
            for row in await pool.fetch(STORED_IN_LOG, partition, base, end):
                at_ms = int(row["decided_at"].timestamp() * 1000)
                if row["request_id"] not in replayed and since_ms <= at_ms < until_ms:
                    report.mismatches.append(
                        f"request {row['request_id']}: the database has a decision at a "
                        f"position of partition {partition} where the log decides nothing"
                    )
    finally:
        await pool.close()
    return report


async def _compare(pool: asyncpg.Pool, wanted: Replayed, report: Report) -> None:
    ids = list(wanted)
    for start in range(0, len(ids), IDS_PER_QUERY):
        rows = await pool.fetch(STORED, ids[start : start + IDS_PER_QUERY])
        stored = {r["request_id"]: _stored(r) for r in rows}
        for request_id in ids[start : start + IDS_PER_QUERY]:
            decision, replayed = wanted[request_id]
            report.compared += 1
            report.granted += replayed.grant_id is not None
            found = stored.get(request_id)
            if found == replayed:
                report.matched += 1
                continue
            if found is not None and replayed.grant_id is not None:
                report.codes_differ += found == replace(replayed, grant_code=found.grant_code)
            report.mismatches.append(
                f"request {request_id} (by {decision.user_id} on coupon {decision.coupon_id}): "
                f"the log decides {_say(replayed)}; "
                f"the database has {_say(stored.get(request_id))}"
            )


def _stored(row: asyncpg.Record) -> Shown:
    return Shown(
        row["outcome"],
        row["reason"],
        row["grant_id"],
        row["grant_user"],
        row["grant_code"],
        (row["log_partition"], row["log_offset"]),
    )


def _say(decided: Shown | None) -> str:
    if decided is None:
        return "nothing"
    reason = f" {decided.reason}" if decided.reason else ""
    grant = ""
    if decided.grant_id:
        grant = f", grant {decided.grant_id} code {decided.grant_code} to {decided.grant_user}"
    partition, position = decided.position
    return f"{decided.outcome}{reason}{grant} at {partition}@{position}"
