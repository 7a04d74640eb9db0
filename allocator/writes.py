"""One batch's effects as SQL: COPY for new rows, array binds for changed ones.

Runs inside the allocator's fenced transaction; the statement count per batch does not
grow with the batch, so a batch of 2,000 claims costs about as much as a batch of 20.
"""

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from allocator.effects import Effects, Record
from schemas import storable
from schemas.messages import CouponStatus, Decision, Grant
from schemas.readmodel import GRANT_FIELDS, ms_to_dt

COUPON_COLUMNS = [
    "id",
    "code",
    "message",
    "description",
    "start_time",
    "expiry",
    "count",
    "per_user_limit",
    "daily_rule",
    "hold_seconds",
    "release_on_disconnect",
    "lock_seconds",
    "redemptions_per_grant",
    "redemptions_per_user",
    "code_source",
    "code_pattern",
    "code_alphabet",
    "issued",
    "closed",
    "held",
    "codes_left",
    "created_at",
    "created_by",
]


async def write(conn: asyncpg.Connection, fx: Effects, partition: int) -> None:
    """Every kind of effect, each by its own writer, in an order the foreign keys allow."""
    for writer in WRITERS:
        await writer(conn, fx, partition)


async def _coupons_created(conn: asyncpg.Connection, fx: Effects, partition: int) -> None:
    if not fx.created:
        return
    await conn.copy_records_to_table(
        "coupons", columns=COUPON_COLUMNS, records=[_coupon(s, fx) for s in fx.created]
    )


async def _coupons_changed(conn: asyncpg.Connection, fx: Effects, partition: int) -> None:
    if not fx.changed:
        return
    statuses = list(fx.changed.values())
    await conn.execute(
        "UPDATE coupons c SET issued = u.issued, closed = u.closed, held = u.held,"
        " codes_left = u.codes_left"
        " FROM unnest($1::uuid[], $2::int[], $3::bool[], $4::int[], $5::int[])"
        " AS u(id, issued, closed, held, codes_left) WHERE c.id = u.id",
        [s.coupon_id for s in statuses],
        [s.issued for s in statuses],
        [s.closed for s in statuses],
        [s.held for s in statuses],
        [s.codes_left for s in statuses],
    )


async def _codes_added(conn: asyncpg.Connection, fx: Effects, partition: int) -> None:
    if not fx.codes_added:
        return
    await conn.copy_records_to_table(
        "coupon_codes",
        columns=["coupon_id", "position", "code"],
        records=[(c.coupon_id, c.position, c.code) for c in fx.codes_added],
    )


async def _grants_given(conn: asyncpg.Connection, fx: Effects, partition: int) -> None:
    if not fx.new_grants:
        return
    await conn.copy_records_to_table(
        "grants",
        columns=list(GRANT_FIELDS),
        records=[_grant(g) for g in fx.new_grants.values()],
    )


async def _grants_changed(conn: asyncpg.Connection, fx: Effects, partition: int) -> None:
    if not fx.grant_changes:
        return
    changes = list(fx.grant_changes.values())
    await conn.execute(
        "UPDATE grants g SET state = u.state, deadline = u.deadline, lock_id = u.lock_id,"
        " redemptions = u.redemptions"
        " FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::uuid[], $5::int[])"
        " AS u(id, state, deadline, lock_id, redemptions) WHERE g.id = u.id",
        [g.id for g in changes],
        [g.state for g in changes],
        [_when(g.deadline_ms) for g in changes],
        [g.lock_id for g in changes],
        [g.redemptions for g in changes],
    )


async def _codes_used(conn: asyncpg.Connection, fx: Effects, partition: int) -> None:
    if not fx.codes_used:
        return
    used = list(fx.codes_used.items())
    await conn.execute(
        "UPDATE coupon_codes c SET grant_id = u.grant_id"
        " FROM unnest($1::uuid[], $2::text[], $3::uuid[]) AS u(coupon_id, code, grant_id)"
        " WHERE c.coupon_id = u.coupon_id AND c.code = u.code",
        [coupon_id for (coupon_id, _), _ in used],
        [code for (_, code), _ in used],
        [grant_id for _, grant_id in used],
    )


async def _grant_events(conn: asyncpg.Connection, fx: Effects, partition: int) -> None:
    if not fx.events:
        return
    await conn.copy_records_to_table(
        "grant_events",
        columns=[
            "grant_id",
            "coupon_id",
            "before",
            "after",
            "cause",
            "request_id",
            "log_partition",
            "log_offset",
            "at",
        ],
        records=[
            (
                e.grant_id,
                e.coupon_id,
                e.before,
                e.after,
                e.cause,
                e.request_id,
                partition,
                e.offset,
                ms_to_dt(e.at_ms),
            )
            for e in fx.events
        ],
    )


async def _decisions(conn: asyncpg.Connection, fx: Effects, partition: int) -> None:
    if not fx.decisions:
        return
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
            "detail",
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
                partition,
                r.offset,
                _detail(d),
            )
            for r in fx.decisions
            for d in (r.decision,)
        ],
    )


async def _refused_commands(conn: asyncpg.Connection, fx: Effects, partition: int) -> None:
    if not fx.unstorable:
        return
    await conn.copy_records_to_table(
        "refused_commands",
        columns=["log_partition", "log_offset", "request_id", "fault"],
        records=[_refused(r, partition) for r in fx.unstorable],
    )


def _refused(record: Record, partition: int) -> tuple[Any, ...]:
    command = record.command
    request_id = getattr(command, "request_id", None) if storable.answerable(command) else None
    fault = storable.stand_in(record.fault, storable.FAULT_CHARS_MAX)
    return (partition, record.offset, request_id, fault)


async def _claim_line(conn: asyncpg.Connection, fx: Effects, partition: int) -> None:
    if fx.line_removed:
        await conn.execute(
            "DELETE FROM claim_line WHERE request_id = ANY($1::uuid[])", list(fx.line_removed)
        )
    if fx.line_put:
        rows = list(fx.line_put.values())
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


async def _user_days(conn: asyncpg.Connection, fx: Effects, partition: int) -> None:
    if fx.days:
        await conn.copy_records_to_table(
            "user_days",
            columns=["user_id", "day", "request_id", "coupon_id"],
            records=[
                (d.user_id, datetime.fromisoformat(d.day).date(), d.request_id, d.coupon_id)
                for d in fx.days
            ],
        )
    if fx.days_released:
        await conn.execute(
            "DELETE FROM user_days d USING unnest($1::text[], $2::uuid[]) AS u(user_id, request_id)"
            " WHERE d.user_id = u.user_id AND d.request_id = u.request_id",
            [d.user_id for d in fx.days_released],
            [d.request_id for d in fx.days_released],
        )


def _when(ms: int | None) -> datetime | None:
    return ms_to_dt(ms) if ms is not None else None


def _grant(g: Grant) -> tuple[Any, ...]:
    return (
        g.id,
        g.coupon_id,
        g.user_id,
        g.seq,
        g.code,
        g.state,
        ms_to_dt(g.granted_at_ms),
        g.request_id,
        g.source,
        _when(g.deadline_ms),
        g.lock_id,
        g.redemptions,
    )


def _detail(decision: Decision) -> str | None:
    """Decisions other than claims and creations keep their whole answer, for retries."""
    if decision.outcome in ("granted", "created"):
        return None
    if decision.outcome == "rejected" and decision.grant is None and decision.plan is None:
        return None
    return orjson.dumps(decision).decode()


def _coupon(status: CouponStatus, fx: Effects) -> tuple[Any, ...]:
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
        spec.hold_seconds,
        spec.release_on_disconnect,
        spec.lock_seconds,
        spec.redemptions_per_grant,
        spec.redemptions_per_user,
        spec.code_source,
        spec.code_pattern,
        spec.code_alphabet,
        status.issued,
        status.closed,
        status.held,
        status.codes_left,
        ms_to_dt(creation.at_ms),
        creation.user_id,
    )


Writer = Callable[[asyncpg.Connection, Effects, int], Awaitable[None]]
WRITERS: tuple[Writer, ...] = (
    _coupons_created,
    _coupons_changed,
    _codes_added,
    _grants_given,
    _grants_changed,
    _codes_used,
    _grant_events,
    _decisions,
    _refused_commands,
    _claim_line,
    _user_days,
)
