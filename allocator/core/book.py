"""One coupon's state in the allocator: units, codes, grants with deadlines, the line.

Units are taken by grants (held ones included) and by claims whose daily quota is being
asked for (`reserving`). A unit comes back when a hold lapses or is cancelled, or when a
reservation is refused; the line waits for it as long as one may come back.
"""

import heapq
from collections import Counter, deque
from dataclasses import dataclass, field

from allocator.core.effects import LoadedCoupon, Waiting
from schemas.codes import CodeFormat
from schemas.messages import Claim, CouponSpec, CouponStatus, Grant

TIMED = ("held", "locked")
LIVE = ("held", "assigned", "locked")


@dataclass(slots=True)
class CouponBook:
    coupon_id: str
    spec: CouponSpec
    code_format: CodeFormat
    code_key: bytes
    issued: int = 0
    closed: bool = False
    last_seq: int = 0
    clock_ms: int = 0  # the latest time any of its commands carried
    per_user: Counter[str] = field(default_factory=Counter)  # live grants per person
    redeemed_by: Counter[str] = field(default_factory=Counter)
    grants: dict[str, Grant] = field(default_factory=dict)  # every timed one, and more
    timed: set[str] = field(default_factory=set)
    deadlines: list[tuple[int, int, str]] = field(default_factory=list)  # a heap
    held: int = 0
    line: deque[Waiting] = field(default_factory=deque)
    reserving: dict[str, Waiting] = field(default_factory=dict)
    reserving_users: Counter[str] = field(default_factory=Counter)
    pending: set[str] = field(default_factory=set)
    codes: deque[str] = field(default_factory=deque)  # uploaded, not handed out, in order
    codes_taken: set[str] = field(default_factory=set)
    codes_uploaded: int = 0
    decided: int = 0  # its decisions so far, each numbered in turn
    revoking: bool = False  # closed with revocation, some slices still to revoke

    @classmethod
    def open(cls, status: CouponStatus, code_key: bytes) -> "CouponBook":
        spec = status.spec
        return cls(
            coupon_id=status.coupon_id,
            spec=spec,
            code_format=CodeFormat.parse(spec.code_pattern, spec.code_alphabet),
            code_key=code_key,
            issued=status.issued,
            closed=status.closed,
            decided=status.decided,
            revoking=status.revoking,
        )

    def restore(self, loaded: LoadedCoupon) -> None:
        self.last_seq = loaded.last_seq
        self.per_user.update(loaded.per_user)
        self.redeemed_by.update(loaded.redeemed_by)
        for grant in loaded.grants:
            self.remember(grant)
        for waiting in loaded.reserving:
            self.reserving[waiting.claim.request_id] = waiting
            self.reserving_users[waiting.claim.user_id] += 1
            self.pending.add(waiting.claim.request_id)
        for waiting in loaded.line:
            self.line.append(waiting)
            self.pending.add(waiting.claim.request_id)
        self.codes.extend(loaded.codes)
        self.codes_taken.update(loaded.codes_taken)
        self.codes_uploaded = loaded.codes_uploaded

    def remember(self, grant: Grant) -> None:
        before = self.grants.get(grant.id)
        self.held += (grant.state == "held") - (before is not None and before.state == "held")
        self.grants[grant.id] = grant
        if grant.state in TIMED and grant.deadline_ms is not None:
            self.timed.add(grant.id)
            heapq.heappush(self.deadlines, (grant.deadline_ms, grant.seq, grant.id))
        else:
            self.timed.discard(grant.id)

    def settled(self) -> bool:
        """Whether PostgreSQL holds all of it: nothing timed, nobody in line or waiting for
        a day. Such a book can be dropped and read back without changing a decision."""
        return not (self.timed or self.line or self.reserving or self.pending)

    @property
    def uploaded(self) -> bool:
        return self.spec.code_source == "uploaded"

    def status(self) -> CouponStatus:
        codes_left = len(self.codes) if self.uploaded else None
        return CouponStatus(
            self.coupon_id, self.spec, self.issued, self.closed, self.held, codes_left,
            self.decided, self.revoking,
        )  # fmt: skip

    def codes_left(self) -> int:
        if self.uploaded:
            return len(self.codes)
        return self.code_format.domain - 1 - self.last_seq

    def free_units(self) -> int:
        """Units that can be given now: neither taken nor spoken for, and with a code."""
        return min(self.spec.count - self.issued, self.codes_left()) - len(self.reserving)

    def may_free(self) -> bool:
        """Whether a unit can still come back: a reservation refused, or a hold released.
        A released hold gives back its unit but not its code (codes are never reused)."""
        count_binds = self.spec.count - self.issued < self.codes_left()
        return bool(self.reserving) or (count_binds and self.held > 0)

    def refusal(self, claim: Claim) -> str | None:
        """Why a claim can be refused on arrival, before it takes a place in line."""
        if self.closed:
            return "closed"
        if claim.at_ms < self.spec.start_ms:
            return "not_started"
        if claim.at_ms >= self.spec.expiry_ms:
            return "expired"
        if self.per_user[claim.user_id] >= self.spec.per_user_limit:
            return "already_claimed"
        if self.free_units() <= 0 and not self.may_free():
            return "sold_out"
        return None

    def _current(self, entry: tuple[int, int, str]) -> bool:
        """Whether a heap entry is still a grant's deadline (entries are dropped lazily)."""
        deadline, _, grant_id = entry
        return grant_id in self.timed and self.grants[grant_id].deadline_ms == deadline

    def lapsed(self, now_ms: int) -> list[Grant]:
        """Held or locked grants whose deadline has come, in deadline order."""
        due: dict[str, Grant] = {}
        while self.deadlines and self.deadlines[0][0] <= now_ms:
            entry = heapq.heappop(self.deadlines)
            if self._current(entry):
                due[entry[2]] = self.grants[entry[2]]
        return list(due.values())

    def next_deadline(self) -> int | None:
        """When the allocator must next tell this coupon the time."""
        while self.deadlines and not self._current(self.deadlines[0]):
            heapq.heappop(self.deadlines)
        deadline = self.deadlines[0][0] if self.deadlines else None
        if self.line and (deadline is None or self.spec.expiry_ms < deadline):
            return self.spec.expiry_ms
        return deadline

    def next_code(self, seq: int) -> str:
        if self.uploaded:
            return self.codes.popleft()
        return self.code_format.render(self.code_key, seq)
