"""One batch's effects as SQL: COPY for new rows, array binds for changed ones.

Runs inside the allocator's fenced transaction; the statement count per batch does not
grow with the batch, so a batch of 2,000 claims costs about as much as a batch of 20.
"""

from collections.abc import Awaitable, Callable
from dataclasses import fields
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from allocator.core.effects import Effects, Record
from schemas import storable
from schemas.messages import CouponSpec, CouponStatus, Decision, Grant
from schemas.readmodel import GRANT_FIELDS, ms_to_dt

# A coupon's row: its id, its spec's fields (times as timestamps, named as the columns
# are), its committed status, and who created it when.
SPEC_COLUMNS = {"start_ms": "start_time", "expiry_ms": "expiry"}
SPEC_FIELDS = tuple(f.name for f in fields(CouponSpec))
COUPON_COLUMNS = [
    "id",
    *(SPEC_COLUMNS.get(name, name) for name in SPEC_FIELDS),
    *("issued", "closed", "held", "codes_left", "decided", "revoking", "created_at", "created_by"),
]


async def write(conn: asyncpg.Connection, effects: Effects, partition: int) -> None:
    """Every kind of effect, each by its own writer, in an order the foreign keys allow."""
    for writer in WRITERS:
        await writer(conn, effects, partition)


async def _coupons_created(conn: asyncpg.Connection, effects: Effects, partition: int) -> None:
    if not effects.created:
        return
    await conn.copy_records_to_table(
        "coupons", columns=COUPON_COLUMNS, records=[_coupon(s, effects) for s in effects.created]
    )


async def _coupons_changed(conn: asyncpg.Connection, effects: Effects, partition: int) -> None:
    if not effects.changed:
        return
    columns = {
        "issued": "int",
        "closed": "bool",
        "held": "int",
        "codes_left": "int",
        "decided": "int",
        "revoking": "bool",
    }
    rows = [
        (s.coupon_id, s.issued, s.closed, s.held, s.codes_left, s.decided, s.revoking)
        for s in effects.changed.values()
    ]
    await _update_by_id(conn, "coupons", columns, rows)


async def _codes_added(conn: asyncpg.Connection, effects: Effects, partition: int) -> None:
    if not effects.codes_added:
        return
    await conn.copy_records_to_table(
        "coupon_codes",
        columns=["coupon_id", "position", "code"],
        records=[(c.coupon_id, c.position, c.code) for c in effects.codes_added],
    )


async def _grants_given(conn: asyncpg.Connection, effects: Effects, partition: int) -> None:
    if not effects.new_grants:
        return
    await conn.copy_records_to_table(
        "grants",
        columns=list(GRANT_FIELDS),
        records=[_grant(g) for g in effects.new_grants.values()],
    )


async def _grants_changed(conn: asyncpg.Connection, effects: Effects, partition: int) -> None:
    if not effects.grant_changes:
        return
    columns = {"state": "text", "deadline": "timestamptz", "lock_id": "uuid", "redemptions": "int"}
    rows = [
        (g.id, g.state, _when(g.deadline_ms), g.lock_id, g.redemptions)
        for g in effects.grant_changes.values()
    ]
    await _update_by_id(conn, "grants", columns, rows)


async def _codes_used(conn: asyncpg.Connection, effects: Effects, partition: int) -> None:
    if not effects.codes_used:
        return
    used = list(effects.codes_used.items())
    await conn.execute(
        "UPDATE coupon_codes c SET grant_id = u.grant_id"
        " FROM unnest($1::uuid[], $2::text[], $3::uuid[]) AS u(coupon_id, code, grant_id)"
        " WHERE c.coupon_id = u.coupon_id AND c.code = u.code",
        [coupon_id for (coupon_id, _), _ in used],
        [code for (_, code), _ in used],
        [grant_id for _, grant_id in used],
    )


EVENT_COLUMNS = ("grant_id", "coupon_id", "before", "after", "cause", "request_id")
DECISION_COLUMNS = ("request_id", "coupon_id", "user_id", "outcome", "reason", "grant_id")
LOGGED_AT = ("log_partition", "log_offset")  # where in the log the row was decided


async def _grant_events(conn: asyncpg.Connection, effects: Effects, partition: int) -> None:
    if not effects.events:
        return
    records = [
        (e.grant_id, e.coupon_id, e.before, e.after, e.cause, e.request_id)
        + (partition, e.offset, ms_to_dt(e.at_ms))
        for e in effects.events
    ]
    columns = [*EVENT_COLUMNS, *LOGGED_AT, "at"]
    await conn.copy_records_to_table("grant_events", columns=columns, records=records)


async def _decisions(conn: asyncpg.Connection, effects: Effects, partition: int) -> None:
    if not effects.decisions:
        return
    records = [
        (d.request_id, d.coupon_id, d.user_id, d.outcome, d.reason, d.grant.id if d.grant else None)
        + (partition, r.offset, ms_to_dt(d.at_ms), _detail(d), r.seq)
        for r in effects.decisions
        for d in (r.decision,)
    ]
    columns = [*DECISION_COLUMNS, *LOGGED_AT, "decided_at", "detail", "coupon_seq"]
    await conn.copy_records_to_table("decisions", columns=columns, records=records)


async def _refused_commands(conn: asyncpg.Connection, effects: Effects, partition: int) -> None:
    if not effects.unstorable:
        return
    await conn.copy_records_to_table(
        "refused_commands",
        columns=["log_partition", "log_offset", "request_id", "fault"],
        records=[_refused(r, partition) for r in effects.unstorable],
    )


async def _update_by_id(
    conn: asyncpg.Connection, table: str, columns: dict[str, str], rows: list[tuple[Any, ...]]
) -> None:
    """Set `columns` (name: SQL type) of many rows by id in one statement: each column's
    values bound as one array, unnested beside the ids."""
    names = list(columns)
    arrays = ", ".join(f"${i}::{t}[]" for i, t in enumerate(["uuid", *columns.values()], 1))
    await conn.execute(
        f"UPDATE {table} t SET {', '.join(f'{n} = u.{n}' for n in names)}"
        f" FROM unnest({arrays}) AS u(id, {', '.join(names)}) WHERE t.id = u.id",
        *(list(values) for values in zip(*rows, strict=True)),
    )


def _refused(record: Record, partition: int) -> tuple[Any, ...]:
    command = record.command
    request_id = getattr(command, "request_id", None) if storable.answerable(command) else None
    fault = storable.stand_in(record.fault, storable.FAULT_CHARS_MAX)
    return (partition, record.offset, request_id, fault)


async def _claim_line(conn: asyncpg.Connection, effects: Effects, partition: int) -> None:
    if effects.line_removed:
        await conn.execute(
            "DELETE FROM claim_line WHERE request_id = ANY($1::uuid[])", list(effects.line_removed)
        )
    if effects.line_put:
        rows = list(effects.line_put.values())
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


async def _user_days(conn: asyncpg.Connection, effects: Effects, partition: int) -> None:
    if effects.days:
        await conn.copy_records_to_table(
            "user_days",
            columns=["user_id", "day", "request_id", "coupon_id"],
            records=[
                (d.user_id, datetime.fromisoformat(d.day).date(), d.request_id, d.coupon_id)
                for d in effects.days
            ],
        )
    if effects.days_released:
        await conn.execute(
            "DELETE FROM user_days d USING unnest($1::text[], $2::uuid[]) AS u(user_id, request_id)"
            " WHERE d.user_id = u.user_id AND d.request_id = u.request_id",
            [d.user_id for d in effects.days_released],
            [d.request_id for d in effects.days_released],
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


def _spec_column(name: str, value: Any) -> Any:
    return ms_to_dt(value) if name in SPEC_COLUMNS else value


def _coupon(status: CouponStatus, effects: Effects) -> tuple[Any, ...]:
    creation = next(
        r.decision
        for r in effects.decisions
        if r.decision.outcome == "created" and r.decision.coupon_id == status.coupon_id
    )
    spec = [_spec_column(name, getattr(status.spec, name)) for name in SPEC_FIELDS]
    committed = (
        status.issued, status.closed, status.held, status.codes_left, status.decided,
        status.revoking,
    )  # fmt: skip
    return (status.coupon_id, *spec, *committed, ms_to_dt(creation.at_ms), creation.user_id)


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
