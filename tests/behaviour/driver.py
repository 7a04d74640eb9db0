"""What the scenarios may do and what they hear back, in the product's words: an admin
makes coupons, people claim, confirm, cancel, lock and redeem, time passes, and anyone
may look at who holds what. A driver does it on one backend."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

Outcome = Literal["granted", "waiting", "applied", "rejected"]
Step = Literal["confirm", "cancel", "lock", "unlock", "redeem"]
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True)
class Coupon:
    id: str
    state: str  # as its creation answered: scheduled, live or expired
    expiry_ms: int


@dataclass(frozen=True)
class Terms:
    """A coupon as its admin makes it: live from now for a day unless told."""

    count: int
    daily: bool = False  # one coupon a person a day, across coupons
    hold_seconds: int = 0  # 0: granted outright, no confirmation asked
    lock_seconds: int = 300
    per_user_limit: int = 1
    redemptions_per_grant: int = 1
    redemptions_per_user: int = 0  # 0: no limit beyond the grants a person holds
    start_ms: int | None = None
    expiry_ms: int | None = None


@dataclass(frozen=True)
class Grant:
    id: str
    coupon_id: str
    person: str
    state: str
    granted_at_ms: int
    deadline_ms: int | None = None  # a hold's or a lock's end
    lock_id: str | None = None  # the key a lock answered with


@dataclass(frozen=True)
class Answer:
    """A request's answer: its decision, or its place in line while it waits."""

    outcome: Outcome
    ticket: str  # names the request: a retry's answer has its first try's
    reason: str | None = None
    grant: Grant | None = None
    position: int | None = None  # a waiting claim's place in the coupon's line


@dataclass(frozen=True)
class Stock:
    """Where a coupon's units are, as its admin reads them."""

    held: int
    line: int
    remaining: int


@dataclass(frozen=True)
class Claim:
    coupon: Coupon
    person: str
    key: str | None = None  # the Idempotency-Key: a retry sends its first try's


Event = tuple[str | None, str, str]  # a grant's step in its audit trail: from, to, cause


class Driver(Protocol):
    # How late after its deadline a hold or lock may lapse and pass its unit on.
    lapse_late_ms_max: int
    # How far a moment must be from now for a claim sent now to fall surely on its side.
    clock_slack_ms: int
    # The command log's partitions, each decided by one of the drivers' deciders.
    partitions: int

    def now_ms(self) -> int: ...

    async def create_coupon(self, terms: Terms) -> Coupon: ...

    async def claim(self, coupon: Coupon, person: str, key: str | None = None) -> Answer:
        """A claim, answered with its decision."""
        ...

    async def join(self, coupon: Coupon, person: str) -> Answer:
        """A claim that is to wait in line, answered with its place there."""
        ...

    async def claims_at_once(self, claims: Sequence[Claim]) -> list[Answer]:
        """Claims sent together, each answered with its decision: the log orders them as
        it will."""
        ...

    async def claims_in_order(self, claims: Sequence[Claim]) -> list[Answer]:
        """Claims each in the log before the next is sent, and none waiting for its
        decision to send the next; each answered with its decision."""
        ...

    async def step(
        self, grant: Grant, step: Step, person: str, lock_id: str | None = None
    ) -> Answer: ...

    async def outcome(self, waiting: Answer) -> Answer:
        """The final decision of a waiting claim, time passing until it comes (bounded)."""
        ...

    async def look(self, waiting: Answer) -> Answer:
        """Where a waiting claim stands now: its decision, or its place in line."""
        ...

    async def after_deadline(self, grant: Grant) -> Grant:
        """The grant once time has passed its hold's or lock's deadline."""
        ...

    async def until_expired(self, coupon: Coupon) -> None:
        """Time passes until the coupon has expired."""
        ...

    async def holders(self, coupon: Coupon) -> list[tuple[str, str]]:
        """Who holds each of the coupon's grants, and in what state, in the order granted."""
        ...

    async def stock(self, coupon: Coupon) -> Stock: ...

    async def events(self, grant: Grant) -> list[Event]: ...

    def partition_of(self, coupon: Coupon) -> int: ...

    def days_partition(self, person: str) -> int:
        """The partition that keeps a person's days (the daily rule's one grant a day)."""
        ...

    def decider_of(self, partition: int) -> int:
        """Which allocator (or core) decides a partition."""
        ...
