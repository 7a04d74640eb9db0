"""What the decision core and its IO shell hand each other: records in, effects out."""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from schemas.messages import (
    Claim,
    Command,
    CouponStatus,
    DayReserved,
    Decision,
    Grant,
    GrantState,
    ReleaseDay,
    ReserveDay,
    Revoke,
)
from schemas.storable import command_fault


@dataclass(frozen=True, slots=True)
class Record:
    """One command at its place in the partition's log, and why it cannot be stored, if it
    cannot: found by `command_fault` when the record is made, or given by the shell when
    PostgreSQL refused it (`allocator/shell/isolation.py`). Such a record changes nothing."""

    offset: int
    command: Command
    fault: str | None = None

    def __post_init__(self) -> None:
        if self.fault is None:
            object.__setattr__(self, "fault", command_fault(self.command))


@dataclass(frozen=True, slots=True)
class Cause:
    """The record a change is decided at: audit rows name it."""

    request_id: str
    offset: int
    at_ms: int


@dataclass(frozen=True, slots=True)
class Waiting:
    """A claim accepted by the allocator and not decided yet."""

    claim: Claim
    offset: int


@dataclass(slots=True)
class LoadedCoupon:
    """What the IO shell reads back from PostgreSQL to rebuild one coupon's book."""

    status: CouponStatus
    per_user: dict[str, int] = field(default_factory=dict)
    line: list[Waiting] = field(default_factory=list)
    reserving: list[Waiting] = field(default_factory=list)
    last_seq: int = 0
    grants: list[Grant] = field(default_factory=list)  # held and locked ones, at least
    redeemed_by: dict[str, int] = field(default_factory=dict)
    codes: list[str] = field(default_factory=list)  # uploaded, not handed out, in order
    codes_taken: list[str] = field(default_factory=list)  # codes no grant may get again
    codes_uploaded: int = 0


@dataclass(slots=True)
class Needs:
    """What the core must know before it can decide a batch."""

    coupon_ids: set[str] = field(default_factory=set)
    user_ids: set[str] = field(default_factory=set)
    request_ids: set[str] = field(default_factory=set)
    grant_ids: set[str] = field(default_factory=set)
    # Coupons being revoked, each with the sequence number its slice starts after: their
    # live grants in that slice (allocator/core/whole_coupons.py `revoke_slice`).
    live_grants_of: set[tuple[str, int]] = field(default_factory=set)


@dataclass(slots=True)
class Loaded:
    coupons: Mapping[str, LoadedCoupon] = field(default_factory=dict)
    user_days: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    grants: Sequence[Grant] = ()


@dataclass(frozen=True, slots=True)
class DecisionRow:
    decision: Decision
    offset: int
    seq: int | None = None  # its place among its coupon's decisions; none for no coupon


@dataclass(frozen=True, slots=True)
class DayRow:
    user_id: str
    day: str
    request_id: str
    coupon_id: str


@dataclass(frozen=True, slots=True)
class GrantEvent:
    """One transition of one grant, and the record that caused it (the audit trail)."""

    grant_id: str
    coupon_id: str
    before: GrantState | None
    after: GrantState
    cause: str
    request_id: str
    offset: int
    at_ms: int


@dataclass(frozen=True, slots=True)
class CodeRow:
    coupon_id: str
    position: int
    code: str


def _unnumbered(coupon_id: str) -> None:
    """Outside a batch of the core no decision is made, so none is numbered."""


@dataclass(slots=True)
class Effects:
    """Everything one batch changes; written in one transaction with `next_offset`."""

    next_offset: int
    created: list[CouponStatus] = field(default_factory=list)
    changed: dict[str, CouponStatus] = field(default_factory=dict)
    new_grants: dict[str, Grant] = field(default_factory=dict)
    grant_changes: dict[str, Grant] = field(default_factory=dict)
    events: list[GrantEvent] = field(default_factory=list)
    decisions: list[DecisionRow] = field(default_factory=list)
    echoes: list[Decision] = field(default_factory=list)
    line_put: dict[str, tuple[Waiting, bool]] = field(default_factory=dict)
    line_removed: set[str] = field(default_factory=set)
    days: list[DayRow] = field(default_factory=list)
    days_released: list[DayRow] = field(default_factory=list)
    codes_added: list[CodeRow] = field(default_factory=list)
    codes_used: dict[tuple[str, str], str] = field(default_factory=dict)  # (coupon, code): grant
    commands: list[ReserveDay | DayReserved | ReleaseDay | Revoke] = field(default_factory=list)
    ticked: set[str] = field(default_factory=set)
    touched: set[str] = field(default_factory=set)  # coupons whose status `changed` holds
    unstorable: list[Record] = field(default_factory=list)  # refused, answered if they can be
    number: Callable[[str], int | None] = _unnumbered  # a decision's place among its coupon's

    @property
    def grants(self) -> list[Grant]:
        """Grants made in this batch, as they stand at its end."""
        return list(self.new_grants.values())
