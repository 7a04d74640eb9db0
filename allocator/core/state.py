"""One partition's state as the decision core holds it in memory, and the core's settings."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo

from allocator.core.book import CouponBook


@dataclass(frozen=True, slots=True)
class CoreConfig:
    code_secret: bytes
    day_zone: tzinfo = UTC


@dataclass
class CoreState:
    """The coupons (one book each) and the people (their days) of one partition."""

    config: CoreConfig
    books: dict[str, CouponBook] = field(default_factory=dict)
    user_days: dict[str, dict[str, str]] = field(default_factory=dict)  # person: day: request


def day_of(at_ms: int, zone: tzinfo) -> str:
    return datetime.fromtimestamp(at_ms / 1000, tz=zone).date().isoformat()
