"""Queries on the read model that more than one part runs (SQL is a contract too),
and how its rows map to message types. Nothing here does IO."""

from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from schemas.messages import CouponSpec, CouponStatus, Grant


@lru_cache(maxsize=4096)
def ms_to_dt(ms: int) -> datetime:
    """Remembered: a batch's rows share few milliseconds (claims arrive thousands a second)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def dt_to_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def status_from_row(row: Mapping[str, Any]) -> CouponStatus:
    spec = CouponSpec(
        code=row["code"],
        message=row["message"],
        description=row["description"],
        start_ms=dt_to_ms(row["start_time"]),
        expiry_ms=dt_to_ms(row["expiry"]),
        count=row["count"],
        per_user_limit=row["per_user_limit"],
        daily_rule=row["daily_rule"],
        hold_seconds=row["hold_seconds"],
        release_on_disconnect=row["release_on_disconnect"],
        lock_seconds=row["lock_seconds"],
        redemptions_per_grant=row["redemptions_per_grant"],
        redemptions_per_user=row["redemptions_per_user"],
        code_source=row["code_source"],
        code_pattern=row["code_pattern"],
        code_alphabet=row["code_alphabet"],
    )
    return CouponStatus(
        str(row["id"]),
        spec,
        row["issued"],
        row["closed"],
        row["held"],
        row["codes_left"],
        row["decided"],
        row["revoking"],
    )


def grant_from_row(row: Mapping[str, Any], prefix: str = "") -> Grant:
    deadline = row[f"{prefix}deadline"]
    lock_id = row[f"{prefix}lock_id"]
    return Grant(
        id=str(row[f"{prefix}id"]),
        coupon_id=str(row[f"{prefix}coupon_id"]),
        user_id=row[f"{prefix}user_id"],
        seq=row[f"{prefix}seq"],
        code=row[f"{prefix}code"],
        state=row[f"{prefix}state"],
        granted_at_ms=dt_to_ms(row[f"{prefix}granted_at"]),
        request_id=str(row[f"{prefix}request_id"]),
        source=row[f"{prefix}source"],
        deadline_ms=dt_to_ms(deadline) if deadline is not None else None,
        lock_id=str(lock_id) if lock_id is not None else None,
        redemptions=row[f"{prefix}redemptions"],
    )


# A grant's columns, in the order the allocator writes them.
GRANT_FIELDS = (
    "id",
    "coupon_id",
    "user_id",
    "seq",
    "code",
    "state",
    "granted_at",
    "request_id",
    "source",
    "deadline",
    "lock_id",
    "redemptions",
)
# The same, prefixed, for queries that join grants to something else.
GRANT_COLUMNS = ", ".join(f"g.{c} AS g_{c}" for c in GRANT_FIELDS)


DECISION_BY_REQUEST = f"""
SELECT d.outcome, d.reason, d.coupon_id, {GRANT_COLUMNS}
FROM decisions d LEFT JOIN grants g ON g.id = d.grant_id
WHERE d.request_id = $1
"""

# A coupon's decisions numbered after the ones a gateway holds (gateway/retries.py).
DECISIONS_AFTER = f"""
SELECT d.coupon_seq, d.request_id, d.reason, {GRANT_COLUMNS}
FROM decisions d LEFT JOIN grants g ON g.id = d.grant_id
WHERE d.coupon_id = $1 AND d.coupon_seq > $2
ORDER BY d.coupon_seq
"""

# A claim waiting in its coupon's line: how many are ahead of it, itself included.
LINE_POSITION = """
SELECT (SELECT count(*) FROM claim_line o
        WHERE o.coupon_id = l.coupon_id AND o.log_offset <= l.log_offset) AS position
FROM claim_line l WHERE l.request_id = $1
"""

# A claim the allocator has not read yet: the commands ahead of it in its partition.
# How far the allocator has decided a partition, as an offset of the log it now reads
# (positions are offsets plus the log's base: allocator/shell/which_log.py).
PARTITION_NEXT_OFFSET = """
SELECT next_offset - log_base FROM allocator_partitions WHERE topic = $1 AND partition = $2
"""

COUPON_BY_ID = "SELECT * FROM coupons WHERE id = $1"

LIVE_COUPONS = """
SELECT * FROM coupons
WHERE NOT closed AND start_time <= $1 AND expiry > $1 AND issued < count
ORDER BY start_time, id
LIMIT $2
"""

GRANTS_OF_USER = """
SELECT * FROM grants WHERE user_id = $1 ORDER BY granted_at DESC, id LIMIT $2
"""

RECENT_COUPONS = "SELECT * FROM coupons ORDER BY start_time DESC, id LIMIT $1"

GRANT_BY_ID = "SELECT * FROM grants WHERE id = $1"

GRANT_EVENTS = """
SELECT before, after, cause, request_id, log_partition, log_offset, at
FROM grant_events WHERE grant_id = $1 ORDER BY id
"""

# An admin's page of a coupon's grants, in the order they were made (keyset on seq).
COUPON_GRANTS = """
SELECT g.*, u.display_name FROM grants g LEFT JOIN users u ON u.id = g.user_id
WHERE g.coupon_id = $1 AND g.seq > $2 ORDER BY g.seq LIMIT $3
"""

COUPON_STATS = """
SELECT count(*) FILTER (WHERE state = 'held') AS held,
       count(*) FILTER (WHERE state IN ('assigned', 'locked')) AS assigned,
       count(*) FILTER (WHERE state = 'locked') AS locked,
       count(*) FILTER (WHERE state = 'redeemed') AS redeemed,
       count(*) FILTER (WHERE state = 'released') AS released,
       count(*) FILTER (WHERE state = 'revoked') AS revoked,
       coalesce(sum(redemptions), 0) AS redemptions,
       (SELECT count(*) FROM claim_line l WHERE l.coupon_id = $1) AS line
FROM grants WHERE coupon_id = $1
"""
