"""Bounds on what one process accepts: token buckets per person and per client address,
and a cap on requests in flight. Past a bound the answer is immediate (429 or 503, with
Retry-After), so memory and wait times stay flat however hard clients push.

Limits are per process: N gateways allow N times the rate. That is the point of them here,
protecting each process; a global quota would need shared state.
"""

import ipaddress
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import Counter, Gauge

from runtime.auth import Caller, Verifier, caller
from runtime.connections import ConnectionBounds, read_body
from runtime.environment import variable
from runtime.http import Bound, Problem, problem

log = logging.getLogger(__name__)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class TokenBuckets:
    """One bucket per key, `rate_per_s` tokens a second up to `burst`. At most `keys_max`
    buckets are kept: the least recently used goes first (it comes back full, which is what
    an idle bucket would be anyway)."""

    rate_per_s: float
    burst: float
    keys_max: int = 100_000
    buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # tokens, when

    def take(self, key: str, now: float) -> float:
        """Take a token: 0 when there was one, else the seconds until there will be."""
        tokens, then = self.buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate_per_s)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate_per_s
        self.buckets[key] = (tokens, now)  # re-inserted: the dict's order is recency
        if len(self.buckets) > self.keys_max:
            del self.buckets[next(iter(self.buckets))]
        return wait


def parse_networks(text: str) -> tuple[Network, ...]:
    """`10.0.0.0/8, 192.168.1.7` → networks; raises ValueError on a bad one."""
    return tuple(ipaddress.ip_network(part.strip()) for part in text.split(",") if part.strip())


def client_address(request: web.Request, trusted: tuple[Network, ...]) -> str:
    """The peer's address; behind trusted proxies, the nearest address in X-Forwarded-For
    that is not one of them. Without trusted proxies the header is ignored: anybody can
    write it."""
    peer = request.remote or ""
    if not trusted or not _within(peer, trusted):
        return peer
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
    for hop in reversed([h for h in hops if h]):
        if not _within(hop, trusted):
            return hop
    return peer


def _within(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def too_many(wait_s: float, what: str) -> web.Response:
    return problem(
        "rate-limited",
        f"too many requests from this {what}; retry after the delay in Retry-After",
        headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
    )


def overloaded() -> web.Response:
    return problem(
        "overloaded",
        "this gateway has as many requests in flight as it takes; retry shortly",
        headers={"Retry-After": "1"},
    )


@dataclass(frozen=True)
class Limits:
    user_per_s: float = variable(
        "RATE_LIMIT_USER_PER_S",
        10.0,
        "token bucket per person (by token `sub`), per process: its rate; 0 turns it off",
    )
    user_burst: float = variable("RATE_LIMIT_USER_BURST", 20.0, "the per-person bucket's size")
    # Off unless set: behind a load balancer whose address is not among the trusted
    # proxies, every person shares that one address, and its bucket would throttle the site.
    address_per_s: float = variable(
        "RATE_LIMIT_ADDRESS_PER_S",
        0.0,
        "token bucket per client address, per process: its rate; off (0) unless set, because "
        "behind a load balancer that is not in `COUPONS_TRUSTED_PROXIES` every person shares its "
        "address (each part logs the limits in force as it starts, and warns of that case)",
    )
    address_burst: float = variable(
        "RATE_LIMIT_ADDRESS_BURST", 1000.0, "the per-address bucket's size"
    )
    trusted_proxies: tuple[Network, ...] = ()  # COUPONS_TRUSTED_PROXIES
    in_flight_max: int = variable(
        "COUPONS_IN_FLIGHT_MAX",
        10_000,
        "requests one process handles at once; past it, `503` + `Retry-After` at once",
    )
    # People (and addresses) each process keeps a bucket for.
    keys_max: int = variable(
        "RATE_LIMIT_KEYS_MAX",
        100_000,
        "buckets each process keeps per kind (people, addresses); the least recently used goes "
        "first",
    )

    def __post_init__(self) -> None:
        for per_s, burst in ((self.user_per_s, self.user_burst),
                             (self.address_per_s, self.address_burst)):  # fmt: skip
            if per_s < 0 or (per_s > 0 and burst < 1):
                raise ValueError("a rate limit needs a rate of 0 (off) or more, and a burst of 1+")
        if self.keys_max < 1:
            raise ValueError("RATE_LIMIT_KEYS_MAX must be at least 1")
        if self.in_flight_max < 1:
            raise ValueError("COUPONS_IN_FLIGHT_MAX must be at least 1")

    def in_force(self) -> str:
        """One line saying which bounds hold, for the log at start-up."""
        person = _bucket(self.user_per_s, self.user_burst, "RATE_LIMIT_USER_PER_S")
        address = _bucket(self.address_per_s, self.address_burst, "RATE_LIMIT_ADDRESS_PER_S")
        proxies = ", ".join(str(n) for n in self.trusted_proxies) or "none"
        return (
            f"limits in force: per person {person}; per client address {address};"
            f" trusted proxies {proxies}; at most {self.in_flight_max} requests in flight"
        )

    def hazard(self) -> str | None:
        """A setting that can throttle everybody at once, said as a warning, or None."""
        if self.address_per_s > 0 and not self.trusted_proxies:
            return (
                "the per-address limit is on and COUPONS_TRUSTED_PROXIES is empty: behind a"
                " load balancer or proxy every person shares its address, and this limit"
                " throttles them all together"
            )
        return None


def _bucket(per_s: float, burst: float, name: str) -> str:
    return f"{per_s:g}/s, bursts of {burst:g}" if per_s > 0 else f"off ({name})"


def guard(
    limits: Limits,
    verifier: Verifier,
    streaming: Callable[[web.Request], bool] = lambda _: False,
    clock: Callable[[], float] = time.monotonic,
    body_s: float = ConnectionBounds().body_s,
) -> Middleware:
    """A middleware for the /v1/ routes: requests in flight, then the client address's
    bucket, then the person's (when the request carries a valid token; a bad one is the
    handler's 401). Live streams are not counted in flight; they are long by design. A
    request counts in flight once its body is here (within `body_s`): slow senders hold
    their connection for that long at most, never a place among requests in flight."""
    log.info(limits.in_force())
    if (hazard := limits.hazard()) is not None:
        log.warning(hazard)
    by_address = TokenBuckets(limits.address_per_s, limits.address_burst, limits.keys_max)
    by_user = TokenBuckets(limits.user_per_s, limits.user_burst, limits.keys_max)
    in_flight = 0
    IN_FLIGHT_MAX.set(limits.in_flight_max)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal in_flight
        if not request.path.startswith("/v1/"):
            return await handler(request)  # probes and metrics are never limited
        counted = not streaming(request)
        if counted and in_flight >= limits.in_flight_max:
            IN_FLIGHT_SHED.inc()
            return overloaded()
        now = clock()
        if limits.address_per_s > 0:
            wait = by_address.take(client_address(request, limits.trusted_proxies), now)
            if wait:
                RATE_LIMITED.labels("address").inc()
                return too_many(wait, "address")
        if limits.user_per_s > 0 and "Authorization" in request.headers:
            try:
                who: Caller | None = caller(request, verifier)
            except Problem:
                who = None
            if who is not None and (wait := by_user.take(who.user_id, now)):
                RATE_LIMITED.labels("user").inc()
                return too_many(wait, "user")
        if not counted:
            return await handler(request)
        await read_body(request, body_s)
        if in_flight >= limits.in_flight_max:  # others came while this body did
            IN_FLIGHT_SHED.inc()
            return overloaded()
        in_flight += 1
        IN_FLIGHT.inc()
        try:
            return await handler(request)
        finally:
            in_flight -= 1
            IN_FLIGHT.dec()

    return middleware


# Summed over gateway workers (multiprocess mode), so that the ratio stays the share in use.
IN_FLIGHT = Gauge(
    "coupons_http_in_flight",
    "Requests being handled (live streams not counted)",
    multiprocess_mode="livesum",
)
IN_FLIGHT_MAX = Bound("coupons_http_in_flight_max", "Requests in flight past which the part sheds")
RATE_LIMITED = Counter("coupons_rate_limited_total", "Requests refused with 429", ["key"])
for _key in ("address", "user"):  # from 0, so the first burst of 429s shows in a rate
    RATE_LIMITED.labels(_key)
IN_FLIGHT_SHED = Counter(
    "coupons_shed_total", "Requests refused with 503 because too many were in flight"
)
