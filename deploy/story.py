"""One coupon's story, worked out from what the log and PostgreSQL hold (`coupons report`
gathers those; this module does no IO): its summary figures, the fairness check of
invariant 3, and how far gateways' clocks disagree with log order.
"""

import bisect
from collections import Counter
from dataclasses import dataclass, field

from runtime.figures import percentile

# Grant changes that give a unit back, so a claim after a sell-out may be granted fairly.
RETURNS_A_UNIT = ("released", "revoked", "expired")


@dataclass(frozen=True, slots=True)
class LoggedClaim:
    """A claim on the coupon as its partition's log holds it."""

    offset: int
    request_id: str
    user_id: str
    at_ms: int  # when its gateway received it
    gateway: str  # its reply topic: one per gateway


@dataclass(frozen=True, slots=True)
class Decided:
    request_id: str
    outcome: str
    reason: str | None
    at_ms: int  # when the decision was committed (the core's own time is the command's)
    grants: int = 0  # grants it made: one for a claim or an assignment, many for a distribution
    source: str | None = None  # what made them: claim, assign or distribution


# How the summary names what made grants (the grants table's `source`).
MADE_BY = {"claim": "claims", "distribution": "distribution", "assign": "assignment"}


@dataclass
class Story:
    code: str
    count: int
    go_live_ms: int
    claims: list[LoggedClaim]  # in log order
    decided: dict[str, Decided]  # by request id
    returns: list[int]  # log offsets of grant changes that gave a unit back
    edge: Counter[str] = field(default_factory=Counter)  # answered without the log, by reason
    edge_spans: list[tuple[int, int, int]] = field(default_factory=list)  # first, last, count
    waiting: int = 0  # in the line now
    holding: int = 0  # grants held, waiting for confirmation

    def granted(self) -> list[Decided]:
        """Decisions that granted one unit: claims and assignments."""
        found = [d for d in self.decided.values() if d.outcome == "granted"]
        return sorted(found, key=lambda d: d.at_ms)

    def grants_ms(self) -> list[int]:
        """When each grant was made, whatever made it, in time order (a distribution makes
        all of its grants at once)."""
        return sorted(d.at_ms for d in self.decided.values() for _ in range(d.grants))

    def granted_by(self) -> dict[str, int]:
        """Grants by what made them, as the summary names it."""
        made: Counter[str] = Counter()
        for d in self.decided.values():
            made[d.source or ""] += d.grants
        return {name: made[source] for source, name in MADE_BY.items() if made[source]}

    def sold_out_ms(self) -> int | None:
        """When the last unit was granted, if every unit was."""
        made = self.grants_ms()
        return made[self.count - 1] if self.count and len(made) >= self.count else None

    def refused(self) -> Counter[str]:
        """Refusals by reason: the allocator's and the edge's."""
        counted = Counter(
            d.reason or d.outcome for d in self.decided.values() if d.outcome == "rejected"
        )
        counted.update({r: n for r, n in self.edge.items() if r != "retry"})
        return counted

    def winners_latency_ms(self) -> list[int]:
        """Received by a gateway → its grant committed, for every claim granted."""
        claims = {c.request_id: c for c in self.claims}
        return sorted(
            d.at_ms - claims[d.request_id].at_ms for d in self.granted() if d.request_id in claims
        )

    def summary(self) -> dict[str, object]:
        latency = self.winners_latency_ms()
        sold_out = self.sold_out_ms()
        first = min((c.at_ms for c in self.claims), default=None)
        by_allocator = sum(1 for c in self.claims if c.request_id in self.decided)
        return {
            "code": self.code,
            "count": self.count,
            "go_live_ms": self.go_live_ms,
            "first_claim_ms": first,
            "sold_out_ms": sold_out,
            "sold_out_after_ms": sold_out - self.go_live_ms if sold_out is not None else None,
            "claims": len(self.claims) + sum(self.edge.values()),
            "decided_by_allocator": by_allocator,
            "answered_at_edge": sum(self.edge.values()),
            "granted": len(self.grants_ms()),
            "granted_by": self.granted_by(),
            "refused": dict(self.refused().most_common()),
            "winners_latency_p50_ms": percentile(latency, 0.50),
            "winners_latency_p99_ms": percentile(latency, 0.99),
            "waiting": self.waiting,
            "holding": self.holding,
            "fairness": fairness(self.claims, self.decided, self.returns),
            "clock_skew_ms": clock_skew(self.claims),
        }


def fairness(
    claims: list[LoggedClaim], decided: dict[str, Decided], returns: list[int]
) -> dict[str, object]:
    """Invariant 3 from the log: no claim was refused `sold_out` while a later one (in log
    order) was granted, unless a unit came back between them. Verified, or the first
    counter-example."""
    returned = sorted(returns)
    sold_out: list[int] = []  # offsets of claims refused sold_out, in log order
    by_offset: dict[int, LoggedClaim] = {}
    checked = 0
    for claim in claims:
        decision = decided.get(claim.request_id)
        if decision is None:
            continue
        checked += 1
        if decision.outcome == "rejected" and decision.reason == "sold_out":
            sold_out.append(claim.offset)
            by_offset[claim.offset] = claim
            continue
        if decision.outcome != "granted" or not sold_out:
            continue
        # The last unit given back before this claim: refusals before it are excused.
        back = bisect.bisect_left(returned, claim.offset)
        since = returned[back - 1] if back else -1
        first = bisect.bisect_right(sold_out, since)
        if first < len(sold_out):
            earlier = by_offset[sold_out[first]]
            return {
                "verified": False,
                "checked": checked,
                "counter_example": (
                    f"{earlier.user_id}'s claim at offset {earlier.offset} was refused "
                    f"sold_out, but {claim.user_id}'s later claim at offset {claim.offset} "
                    "was granted, with no unit given back between them"
                ),
            }
    return {"verified": True, "checked": checked, "counter_example": None}


def clock_skew(claims: list[LoggedClaim]) -> dict[str, object]:
    """How far gateways' receive times run against log order: for each claim, how much
    earlier it is stamped than a claim from another gateway logged before it. The largest
    such gap per gateway, and over all."""
    latest: dict[str, int] = {}  # gateway: its latest stamp so far, in log order
    behind: Counter[str] = Counter()
    for claim in claims:
        others = [at for gateway, at in latest.items() if gateway != claim.gateway]
        if others:
            behind[claim.gateway] = max(behind[claim.gateway], max(others) - claim.at_ms)
        latest[claim.gateway] = max(latest.get(claim.gateway, claim.at_ms), claim.at_ms)
    return {
        "gateways": len(latest),
        "largest_ms": max(behind.values(), default=0),
        "by_gateway_ms": dict(behind),
    }
