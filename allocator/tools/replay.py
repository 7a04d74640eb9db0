"""`coupons replay`: re-decide the command log with the pure core and compare every
decision with PostgreSQL (invariant 6: the database can be proven from the log).

Each partition's log is read from its first record into a fresh `PartitionCore`, in log
order, one record at a time: decisions depend on everything before them, so the whole log
is always re-decided; `--since`/`--until` only narrow which decisions are compared.
A decision matches when the database has the same outcome, reason, grant, grant owner and
code, at the same log position. A decision the database lacks, or one it has at a position
of the log that replay did not make, is a mismatch too.

The log may begin after the database's history: a broker that keeps its log in memory
(Tansu, the local stack's default) starts an empty one when it restarts, under topics of
their own or under the same ones (allocator/shell/which_log.py), while PostgreSQL keeps what was
decided from the log before. The allocator marks each log it starts on, and the time it did
(`allocator_partitions.log_started_at`): what was decided before then came from a log that
is gone, and is not compared; nor are the decisions this log holds about coupons created
in that earlier log (the core, replaying this log alone, does not know them).
"""

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

import asyncpg

from allocator.core.decide import PartitionCore
from allocator.core.effects import DecisionRow, Record
from allocator.core.state import CoreConfig
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
# Positions are not unique across logs (each dev run's topics start at 0): what this log
# decided was committed after the allocator started on it.
STORED_IN_LOG = """
SELECT request_id::text, decided_at FROM decisions
WHERE log_partition = $1 AND log_offset >= $2 AND log_offset < $3
AND committed_at >= coalesce($4::timestamptz, 'infinity')
"""
# What the allocator refused: PostgreSQL's refusals cannot be found again from the log alone.
REFUSED = """
SELECT log_offset, fault FROM refused_commands
WHERE log_partition = $1 AND refused_at >= coalesce($2::timestamptz, 'infinity')
"""
# Where this log's positions start, and when the allocator started on it (None: it has not).
STARTED = """
SELECT log_base, log_started_at FROM allocator_partitions WHERE topic = $1 AND partition = $2
"""
# Decisions made before the log of their partition began: from an earlier log, now gone.
EARLIER = """
SELECT count(*) FROM decisions d
LEFT JOIN allocator_partitions p ON p.topic = $1 AND p.partition = d.log_partition
WHERE d.committed_at < coalesce(p.log_started_at, 'infinity')
"""
CREATED_EARLIER = """
SELECT coupon_id::text FROM decisions
WHERE outcome = 'created' AND coupon_id = ANY($1::uuid[]) AND committed_at < $2
"""


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
    earlier: int = 0  # decisions in PostgreSQL made from a log before this one: not compared
    about_earlier: int = 0  # this log's decisions about coupons of that log: not compared
    unreadable: int = 0  # records the allocator skipped too
    granted: int = 0  # grants compared
    codes_differ: int = 0  # of them, the same in all but the code

    @property
    def wrong_secret(self) -> bool:
        """Every grant differs in its code alone: the code secret is not the allocator's."""
        return self.granted > 0 and self.codes_differ == self.granted

    @property
    def begins_later(self) -> bool:
        """The log begins after the database's history: only what it holds is compared."""
        return self.earlier > 0


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
    report = Report()
    log = await read_log(settings, report)
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        replaying = Replaying(pool, Topics(settings.topic_prefix).commands, config, report)
        report.earlier = await pool.fetchval(EARLIER, replaying.topic)
        for partition, records in sorted(log.items()):
            await replaying.partition(partition, records, since_ms, until_ms)
    finally:
        await pool.close()
    return report


@dataclass
class Replaying:
    """One replay: the log's partitions re-decided and compared, one after the other."""

    pool: asyncpg.Pool
    topic: str
    config: CoreConfig
    report: Report

    async def partition(
        self, partition: int, records: list[Record], since_ms: int, until_ms: int
    ) -> None:
        pool, report = self.pool, self.report
        started = await pool.fetchrow(STARTED, self.topic, partition)
        base = started["log_base"] if started else 0
        started_at = started["log_started_at"] if started else None
        report.commands[partition], report.bases[partition] = len(records), base
        refused = dict(await pool.fetch(REFUSED, partition, started_at))  # position: why
        positioned = [
            Record(position, r.command, refused.get(position))
            for r in records
            for position in (r.offset + base,)
        ]
        replayed = redecide(partition, positioned, self.config)
        earlier = await _created_earlier(pool, replayed, started_at)
        checkable = {k: v for k, v in replayed.items() if v[0].coupon_id not in earlier}
        report.about_earlier += len(replayed) - len(checkable)
        wanted = {k: v for k, v in checkable.items() if since_ms <= v[0].at_ms < until_ms}
        await _compare(pool, wanted, report)
        end = base + (records[-1].offset + 1 if records else 0)
        for row in await pool.fetch(STORED_IN_LOG, partition, base, end, started_at):
            at_ms = int(row["decided_at"].timestamp() * 1000)
            if row["request_id"] not in replayed and since_ms <= at_ms < until_ms:
                report.mismatches.append(
                    f"request {row['request_id']}: the database has a decision at a "
                    f"position of partition {partition} where the log decides nothing"
                )


async def _created_earlier(
    pool: asyncpg.Pool, replayed: Replayed, started_at: datetime | None
) -> set[str]:
    """The coupons the replayed decisions name that were created in an earlier log: the
    allocator read them from PostgreSQL, a replay of this log alone does not know them."""
    if started_at is None:
        return set()  # the allocator has decided nothing from this log
    created = {d.coupon_id for d, _ in replayed.values() if d.outcome == "created"}
    named = {d.coupon_id for d, _ in replayed.values()} - created
    ids = [coupon_id for coupon_id in named if _is_uuid(coupon_id)]
    return {row[0] for row in await pool.fetch(CREATED_EARLIER, ids, started_at)}


def _is_uuid(text: str) -> bool:
    """Whether PostgreSQL can compare it with a uuid column (a command written to the log by
    hand may name anything)."""
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


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
