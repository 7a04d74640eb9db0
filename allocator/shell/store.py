"""The allocator's PostgreSQL side: claim a partition, load what a batch needs, commit it.

A batch commits all its effects and the partition's next offset in one transaction,
guarded by compare-and-set on (epoch, next_offset): the fencing token of invariant 7.
"""

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
from prometheus_client import Counter

from allocator.core.budget import REVOKE_SEQ_SLICE
from allocator.core.effects import Effects, Loaded, LoadedCoupon, Needs, Waiting
from allocator.shell.writes import write
from runtime import errors
from schemas.messages import Claim, CouponStatus, Decision, Grant, decode_decision
from schemas.readmodel import GRANT_COLUMNS, dt_to_ms, grant_from_row, status_from_row

FENCED = Counter("coupons_allocator_fenced_total", "Batches refused: partition taken over")


class Fenced(errors.CouponsError):
    """Another allocator took the partition: this one must not write to it again."""


@dataclass(frozen=True, slots=True)
class Landed:
    """A commit's outcome: an earlier commit of ours landed though we never heard (the
    connection died before its answer), so the row is still ours but further on, and this
    one wrote nothing. Carry on from where the row stands."""

    row: "PartitionRow"

    def __str__(self) -> str:
        return f"the partition row is at {self.row.next_offset}"


@dataclass(frozen=True, slots=True)
class PartitionRow:
    """The partition row: offsets here are positions (log offset + `log_base`)."""

    epoch: int
    next_offset: int
    outbox: bytes | None
    log_id: str | None = None
    log_mark: int | None = None  # the log offset of the mark `log_id`
    log_base: int = 0


DECIDED_SQL = f"""
SELECT d.request_id, d.coupon_id, d.user_id, d.outcome, d.reason, d.decided_at, d.detail,
       {GRANT_COLUMNS}
FROM decisions d LEFT JOIN grants g ON g.id = d.grant_id
WHERE d.request_id = ANY($1::uuid[])
"""
GRANTS_SQL = "SELECT * FROM grants WHERE id = ANY($1::uuid[])"
LIVE_GRANTS_SQL = """
SELECT * FROM grants WHERE coupon_id = $1 AND seq > $2 AND seq <= $3
AND state IN ('held', 'assigned', 'locked')
"""
PER_USER_SQL = """
SELECT coupon_id, user_id, count(*) FILTER (WHERE state NOT IN ('released', 'revoked')) AS live,
       sum(redemptions) AS redeemed
FROM grants WHERE coupon_id = ANY($1::uuid[]) GROUP BY coupon_id, user_id
"""
TIMED_SQL = """
SELECT * FROM grants WHERE coupon_id = ANY($1::uuid[]) AND state IN ('held', 'locked')
"""
LAST_SEQ_SQL = """
SELECT coupon_id, max(seq) AS last_seq FROM grants
WHERE coupon_id = ANY($1::uuid[]) GROUP BY coupon_id
"""
CODES_SQL = """
SELECT coupon_id, position, code, grant_id FROM coupon_codes
WHERE coupon_id = ANY($1::uuid[]) ORDER BY coupon_id, position
"""
ASSIGNED_CODES_SQL = """
SELECT coupon_id, code FROM grants WHERE coupon_id = ANY($1::uuid[]) AND source = 'assign'
"""


def decision_from_row(row: asyncpg.Record, coupon: CouponStatus | None) -> Decision:
    """A stored decision, as its first answer said it (for a retried request)."""
    if row["detail"] is not None:
        return decode_decision(row["detail"].encode())
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

    async def acquire(self) -> PartitionRow:
        """Take the partition: a new epoch fences out whoever had it before."""
        row = await self.pool.fetchrow(
            """
            INSERT INTO allocator_partitions AS p (topic, partition, epoch, owner)
            VALUES ($1, $2, 1, $3)
            ON CONFLICT (topic, partition) DO UPDATE
                SET epoch = p.epoch + 1, owner = EXCLUDED.owner, updated_at = clock_timestamp()
            RETURNING epoch, next_offset, outbox, log_id, log_mark, log_base
            """,
            self.topic,
            self.partition,
            self.owner,
        )
        assert row is not None
        log_id = str(row["log_id"]) if row["log_id"] is not None else None
        return PartitionRow(
            row["epoch"], row["next_offset"], row["outbox"], log_id, row["log_mark"],
            row["log_base"],
        )  # fmt: skip

    async def holds(self, epoch: int) -> bool:
        """Whether the row is still at `epoch`: nobody has taken the partition since."""
        found = await self.pool.fetchval(
            "SELECT epoch FROM allocator_partitions WHERE topic = $1 AND partition = $2",
            self.topic,
            self.partition,
        )
        return bool(found == epoch)

    async def mark_log(self, epoch: int, log_id: str, mark: int, base: int) -> None:
        """Record the log the position now belongs to, or raise Fenced."""
        moved = await self.pool.fetchval(
            """
            UPDATE allocator_partitions
            SET log_id = $1, log_mark = $2, log_base = $3, log_started_at = clock_timestamp(),
                updated_at = clock_timestamp()
            WHERE topic = $4 AND partition = $5 AND epoch = $6
            RETURNING 1
            """,
            log_id,
            mark,
            base,
            self.topic,
            self.partition,
            epoch,
        )
        if moved is None:
            raise Fenced(f"{self.topic}[{self.partition}] epoch {epoch} is no longer ours")

    async def reserving(self, coupon_ids_of: Callable[[str], bool]) -> list[Waiting]:
        """Claims of this partition's coupons waiting for a person's day to be reserved."""
        rows = await self.pool.fetch("SELECT * FROM claim_line WHERE reserving ORDER BY log_offset")
        return [_waiting(row) for row in rows if coupon_ids_of(str(row["coupon_id"]))]

    async def timed_coupons(self) -> set[str]:
        """Coupons (of any partition) with a hold, a lock or a line: they have deadlines."""
        rows = await self.pool.fetch(
            "SELECT coupon_id FROM grants WHERE state IN ('held', 'locked')"
            " UNION SELECT coupon_id FROM claim_line"
        )
        return {str(r["coupon_id"]) for r in rows}

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
            grants: list[Grant] = []
            if needs.grant_ids:
                rows = await conn.fetch(GRANTS_SQL, sorted(needs.grant_ids))
                grants.extend(grant_from_row(r) for r in rows)
            for coupon_id, after_seq in sorted(needs.live_grants_of):
                upto = after_seq + REVOKE_SEQ_SLICE
                rows = await conn.fetch(LIVE_GRANTS_SQL, coupon_id, after_seq, upto)
                grants.extend(grant_from_row(r) for r in rows)
            decided: dict[str, Decision] = {}
            if needs.request_ids:
                rows = await conn.fetch(DECIDED_SQL, sorted(needs.request_ids))
                created = [str(r["coupon_id"]) for r in rows if r["outcome"] == "created"]
                statuses = await self._statuses(conn, created)
                for row in rows:
                    decision = decision_from_row(row, statuses.get(str(row["coupon_id"])))
                    decided[decision.request_id] = decision
        return Loaded(coupons=coupons, user_days=days, grants=grants), decided

    async def _statuses(
        self, conn: asyncpg.Connection, coupon_ids: list[str]
    ) -> dict[str, CouponStatus]:
        if not coupon_ids:
            return {}
        rows = await conn.fetch("SELECT * FROM coupons WHERE id = ANY($1::uuid[])", coupon_ids)
        return {str(r["id"]): status_from_row(r) for r in rows}

    async def _coupons(
        self, conn: asyncpg.Connection, coupon_ids: list[str]
    ) -> dict[str, LoadedCoupon]:
        statuses = await self._statuses(conn, coupon_ids)
        if not statuses:
            return {}
        ids = list(statuses)
        loaded = {cid: LoadedCoupon(status) for cid, status in statuses.items()}
        for row in await conn.fetch(PER_USER_SQL, ids):
            coupon = loaded[str(row["coupon_id"])]
            coupon.per_user[row["user_id"]] = row["live"]
            coupon.redeemed_by[row["user_id"]] = row["redeemed"]
        for row in await conn.fetch(LAST_SEQ_SQL, ids):
            loaded[str(row["coupon_id"])].last_seq = row["last_seq"]
        for row in await conn.fetch(TIMED_SQL, ids):
            loaded[str(row["coupon_id"])].grants.append(grant_from_row(row))
        for row in await conn.fetch(CODES_SQL, ids):
            coupon = loaded[str(row["coupon_id"])]
            coupon.codes_taken.append(row["code"])
            coupon.codes_uploaded = max(coupon.codes_uploaded, row["position"])
            if row["grant_id"] is None:
                coupon.codes.append(row["code"])
        for row in await conn.fetch(ASSIGNED_CODES_SQL, ids):
            loaded[str(row["coupon_id"])].codes_taken.append(row["code"])
        for row in await conn.fetch(
            "SELECT * FROM claim_line WHERE coupon_id = ANY($1::uuid[]) ORDER BY log_offset", ids
        ):
            waiting = _waiting(row)
            claim = waiting.claim
            coupon = loaded[claim.coupon_id]
            (coupon.reserving if row["reserving"] else coupon.line).append(waiting)
        return loaded

    async def commit(
        self, epoch: int, expected_offset: int, effects: Effects, outbox: bytes, trial: bool = False
    ) -> Landed | None:
        """Write a batch: None once written, Landed (nothing written) when an earlier commit
        of ours moved the row already. Fenced is raised, and nothing written, when the
        partition is another's. A `trial` is rolled back: whether PostgreSQL would take the
        batch, raising what it would raise."""
        async with self.pool.acquire() as conn:
            transaction = conn.transaction()
            await transaction.start()
            try:
                landed = await self._write(conn, epoch, expected_offset, effects, outbox)
            except BaseException:
                await transaction.rollback()
                raise
            if trial or landed is not None:
                await transaction.rollback()
            else:
                await transaction.commit()
            return landed

    async def _write(
        self,
        conn: asyncpg.Connection,
        epoch: int,
        expected_offset: int,
        effects: Effects,
        outbox: bytes,
    ) -> Landed | None:
        # First statement: it takes the row lock, so a newer owner waits for us or we see
        # its epoch and stop.
        moved = await conn.fetchval(
            """
            UPDATE allocator_partitions
            SET next_offset = $1, outbox = $2, updated_at = clock_timestamp()
            WHERE topic = $3 AND partition = $4 AND epoch = $5 AND next_offset = $6
            RETURNING 1
            """,
            effects.next_offset,
            outbox,
            self.topic,
            self.partition,
            epoch,
            expected_offset,
        )
        if moved is None:
            row = await conn.fetchrow(
                "SELECT epoch, next_offset, outbox FROM allocator_partitions"
                " WHERE topic = $1 AND partition = $2",
                self.topic,
                self.partition,
            )
            if row is not None and row["epoch"] == epoch:
                return Landed(PartitionRow(epoch, row["next_offset"], row["outbox"]))
            raise Fenced(f"{self.topic}[{self.partition}] epoch {epoch} is no longer ours")
        await write(conn, effects, self.partition)
        return None


def _waiting(row: asyncpg.Record) -> Waiting:
    claim = Claim(
        str(row["request_id"]), str(row["coupon_id"]), row["user_id"], row["at"], row["reply_to"]
    )
    return Waiting(claim, row["log_offset"])
