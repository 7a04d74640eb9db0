"""Queries on the read model that more than one part runs (SQL is a contract too),
and how its rows map to message types. Nothing here does IO."""

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from schemas.messages import CouponSpec, CouponStatus, Grant


def ms_to_dt(ms: int) -> datetime:
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
    )
    return CouponStatus(str(row["id"]), spec, row["issued"], row["closed"])


def grant_from_row(row: Mapping[str, Any], prefix: str = "") -> Grant:
    return Grant(
        id=str(row[f"{prefix}id"]),
        coupon_id=str(row[f"{prefix}coupon_id"]),
        user_id=row[f"{prefix}user_id"],
        seq=row[f"{prefix}seq"],
        code=row[f"{prefix}code"],
        state=row[f"{prefix}state"],
        granted_at_ms=dt_to_ms(row[f"{prefix}granted_at"]),
    )


DECISION_BY_REQUEST = """
SELECT d.outcome, d.reason, d.coupon_id,
       g.id AS g_id, g.coupon_id AS g_coupon_id, g.user_id AS g_user_id, g.seq AS g_seq,
       g.code AS g_code, g.state AS g_state, g.granted_at AS g_granted_at
FROM decisions d LEFT JOIN grants g ON g.id = d.grant_id
WHERE d.request_id = $1
"""

# A claim waiting in its coupon's line: how many are ahead of it, itself included.
LINE_POSITION = """
SELECT (SELECT count(*) FROM claim_line o
        WHERE o.coupon_id = l.coupon_id AND o.log_offset <= l.log_offset) AS position
FROM claim_line l WHERE l.request_id = $1
"""

# A claim the allocator has not read yet: the commands ahead of it in its partition.
PARTITION_NEXT_OFFSET = """
SELECT next_offset FROM allocator_partitions WHERE topic = $1 AND partition = $2
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
