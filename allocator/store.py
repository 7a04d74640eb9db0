"""The allocator's PostgreSQL side: claim a partition, load what a batch needs, commit it.

A batch commits all its effects and the partition's next offset in one transaction,
guarded by compare-and-set on (epoch, next_offset): the fencing token of invariant 7.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from allocator.core import Effects, Loaded, LoadedCoupon, Needs, Waiting
from schemas.messages import Claim, CouponStatus, Decision, Grant
from schemas.readmodel import dt_to_ms, grant_from_row, ms_to_dt, status_from_row


class Fenced(Exception):
    """Another allocator took the partition: this one must not write to it again."""


@dataclass(frozen=True, slots=True)
class Ownership:
    epoch: int
    next_offset: int
    outbox: bytes | None


DECIDED_SQL = """
SELECT d.request_id, d.coupon_id, d.user_id, d.outcome, d.reason, d.decided_at,
       g.id AS g_id, g.coupon_id AS g_coupon_id, g.user_id AS g_user_id, g.seq AS g_seq,
       g.code AS g_code, g.state AS g_state, g.granted_at AS g_granted_at
FROM decisions d LEFT JOIN grants g ON g.id = d.grant_id
WHERE d.request_id = ANY($1::uuid[])
"""


def decision_from_row(row: asyncpg.Record, coupon: CouponStatus | None) -> Decision:
    return Decision(
        request_id=str(row["request_id"]),
        coupon_id=str(row["coupon_id"]),
        user_id=row["user_id"],
        outcome=row["outcome"],
        reason=row["reason"],
        at_ms=dt_to_ms(row["decided_at"]),
        reply_to="",
        grant=grant_from_row(row, "g_") if row["g_id"] is not None else None,
        coupon=coupon if row["outcome"] == "created" else None,
    )


class PartitionStore:
    def __init__(self, pool: asyncpg.Pool, topic: str, partition: int, owner: str) -> None:
        self.pool = pool
        self.topic = topic
        self.partition = partition
        self.owner = owner

    async def acquire(self) -> Ownership:
        """Take the partition: a new epoch fences out whoever had it before."""
        row = await self.pool.fetchrow(
            """
            INSERT INTO allocator_partitions AS p (topic, partition, epoch, owner)
            VALUES ($1, $2, 1, $3)
            ON CONFLICT (topic, partition) DO UPDATE
                SET epoch = p.epoch + 1, owner = EXCLUDED.owner, updated_at = clock_timestamp()
            RETURNING epoch, next_offset, outbox
            """,
            self.topic,
            self.partition,
            self.owner,
        )
        assert row is not None
        return Ownership(row["epoch"], row["next_offset"], row["outbox"])

    async def load(self, needs: Needs) -> tuple[Loaded, dict[str, Decision]]:
        async with self.pool.acquire() as conn:
            coupons = await self._coupons(conn, sorted(needs.coupon_ids))
            days: defaultdict[str, dict[str, str]] = defaultdict(dict)
            if needs.user_ids:
                for row in await conn.fetch(
                    "SELECT user_id, day, request_id FROM user_days WHERE user_id = ANY($1)",
                    sorted(needs.user_ids),
                ):
                    days[row["user_id"]][row["day"].isoformat()] = str(row["request_id"])
                for user_id in needs.user_ids:
                    days.setdefault(user_id, {})
            decided: dict[str, Decision] = {}
            if needs.request_ids:
                rows = await conn.fetch(DECIDED_SQL, sorted(needs.request_ids))
                created = [str(r["coupon_id"]) for r in rows if r["outcome"] == "created"]
                statuses = await self._statuses(conn, created)
                for row in rows:
                    decision = decision_from_row(row, statuses.get(str(row["coupon_id"])))
                    decided[decision.request_id] = decision
        return Loaded(coupons=coupons, user_days=days), decided

    async def _statuses(self, conn: Any, coupon_ids: list[str]) -> dict[str, CouponStatus]:
        if not coupon_ids:
            return {}
        rows = await conn.fetch("SELECT * FROM coupons WHERE id = ANY($1::uuid[])", coupon_ids)
        return {str(r["id"]): status_from_row(r) for r in rows}

    async def _coupons(self, conn: Any, coupon_ids: list[str]) -> dict[str, LoadedCoupon]:
        statuses = await self._statuses(conn, coupon_ids)
        if not statuses:
            return {}
        ids = list(statuses)
        held: defaultdict[str, dict[str, int]] = defaultdict(dict)
        for row in await conn.fetch(
            "SELECT coupon_id, user_id, count(*) AS n FROM grants"
            " WHERE coupon_id = ANY($1::uuid[]) GROUP BY coupon_id, user_id",
            ids,
        ):
            held[str(row["coupon_id"])][row["user_id"]] = row["n"]
        line: defaultdict[str, list[Waiting]] = defaultdict(list)
        reserving: defaultdict[str, list[Waiting]] = defaultdict(list)
        for row in await conn.fetch(
            "SELECT * FROM claim_line WHERE coupon_id = ANY($1::uuid[]) ORDER BY log_offset", ids
        ):
            claim = Claim(
                str(row["request_id"]),
                str(row["coupon_id"]),
                row["user_id"],
                row["at"],
                row["reply_to"],
            )
            waiting = Waiting(claim, row["log_offset"])
            (reserving if row["reserving"] else line)[claim.coupon_id].append(waiting)
        return {
            cid: LoadedCoupon(status, held[cid], line[cid], reserving[cid])
            for cid, status in statuses.items()
        }

    async def commit(self, epoch: int, expected_offset: int, fx: Effects, outbox: bytes) -> None:
        """Write a batch, or raise Fenced and write nothing."""
        async with self.pool.acquire() as conn, conn.transaction():
            # First statement: it takes the row lock, so a newer owner waits for us or we
            # see its epoch and stop.
            moved = await conn.fetchval(
                """
                UPDATE allocator_partitions
                SET next_offset = $1, outbox = $2, updated_at = clock_timestamp()
                WHERE topic = $3 AND partition = $4 AND epoch = $5 AND next_offset = $6
                RETURNING 1
                """,
                fx.next_offset,
                outbox,
                self.topic,
                self.partition,
                epoch,
                expected_offset,
            )
            if moved is None:
                raise Fenced(f"{self.topic}[{self.partition}] epoch {epoch} is no longer ours")
            await self._write(conn, fx)

    async def _write(self, conn: Any, fx: Effects) -> None:
        if fx.created:
            await conn.copy_records_to_table(
                "coupons",
                columns=[
                    "id",
                    "code",
                    "message",
                    "description",
                    "start_time",
                    "expiry",
                    "count",
                    "per_user_limit",
                    "daily_rule",
                    "issued",
                    "closed",
                    "created_at",
                    "created_by",
                ],
                records=[_coupon_record(s, fx) for s in fx.created],
            )
        if fx.changed:
            await conn.execute(
                "UPDATE coupons c SET issued = u.issued, closed = u.closed"
                " FROM unnest($1::uuid[], $2::int[], $3::bool[]) AS u(id, issued, closed)"
                " WHERE c.id = u.id",
                list(fx.changed),
                [s.issued for s in fx.changed.values()],
                [s.closed for s in fx.changed.values()],
            )
        if fx.grants:
            await conn.copy_records_to_table(
                "grants",
                columns=[
                    "id",
                    "coupon_id",
                    "user_id",
                    "seq",
                    "code",
                    "state",
                    "granted_at",
                    "request_id",
                ],
                records=[
                    (
                        g.id,
                        g.coupon_id,
                        g.user_id,
                        g.seq,
                        g.code,
                        g.state,
                        ms_to_dt(g.granted_at_ms),
                        request_id,
                    )
                    for g, request_id in _grant_requests(fx)
                ],
            )
        if fx.decisions:
            await conn.copy_records_to_table(
                "decisions",
                columns=[
                    "request_id",
                    "coupon_id",
                    "user_id",
                    "outcome",
                    "reason",
                    "grant_id",
                    "decided_at",
                    "log_partition",
                    "log_offset",
                ],
                records=[
                    (
                        d.request_id,
                        d.coupon_id,
                        d.user_id,
                        d.outcome,
                        d.reason,
                        d.grant.id if d.grant else None,
                        ms_to_dt(d.at_ms),
                        self.partition,
                        r.offset,
                    )
                    for r in fx.decisions
                    for d in (r.decision,)
                ],
            )
        if fx.line_removed:
            await conn.execute(
                "DELETE FROM claim_line WHERE request_id = ANY($1::uuid[])", list(fx.line_removed)
            )
        if fx.line_put:
            rows = [(w, reserving) for w, reserving in fx.line_put.values()]
            await conn.execute(
                """
                INSERT INTO claim_line AS l
                    (request_id, coupon_id, user_id, at, reply_to, log_offset, reserving)
                SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bigint[],
                                     $5::text[], $6::bigint[], $7::bool[])
                ON CONFLICT (request_id) DO UPDATE SET reserving = EXCLUDED.reserving
                """,
                [w.claim.request_id for w, _ in rows],
                [w.claim.coupon_id for w, _ in rows],
                [w.claim.user_id for w, _ in rows],
                [w.claim.at_ms for w, _ in rows],
                [w.claim.reply_to for w, _ in rows],
                [w.offset for w, _ in rows],
                [reserving for _, reserving in rows],
            )
        if fx.days:
            await conn.copy_records_to_table(
                "user_days",
                columns=["user_id", "day", "request_id", "coupon_id"],
                records=[
                    (d.user_id, datetime.fromisoformat(d.day).date(), d.request_id, d.coupon_id)
                    for d in fx.days
                ],
            )


def _grant_requests(fx: Effects) -> list[tuple[Grant, str]]:
    return [(r.decision.grant, r.decision.request_id) for r in fx.decisions if r.decision.grant]


def _coupon_record(status: CouponStatus, fx: Effects) -> tuple[Any, ...]:
    creation = next(
        r.decision
        for r in fx.decisions
        if r.decision.outcome == "created" and r.decision.coupon_id == status.coupon_id
    )
    spec = status.spec
    return (
        status.coupon_id,
        spec.code,
        spec.message,
        spec.description,
        ms_to_dt(spec.start_ms),
        ms_to_dt(spec.expiry_ms),
        spec.count,
        spec.per_user_limit,
        spec.daily_rule,
        status.issued,
        status.closed,
        ms_to_dt(creation.at_ms),
        creation.user_id,
    )
