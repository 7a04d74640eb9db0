"""Token buckets and the client address behind proxies (pure code, a fake clock)."""

import ipaddress

import pytest
from aiohttp.test_utils import make_mocked_request

from runtime.limits import Limits, TokenBuckets, client_address, parse_networks


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    buckets = TokenBuckets(rate_per_s=2, burst=3)
    assert [buckets.take("a", 0.0) for _ in range(3)] == [0, 0, 0]
    assert buckets.take("a", 0.0) == pytest.approx(0.5)  # the next token in half a second
    assert buckets.take("b", 0.0) == 0  # others have their own bucket
    assert buckets.take("a", 0.6) == 0
    assert buckets.take("a", 0.6) > 0
    assert [buckets.take("a", 10.0) for _ in range(4)][:3] == [0, 0, 0]  # refilled to burst


def test_buckets_are_bounded_and_drop_the_least_recently_used() -> None:
    buckets = TokenBuckets(rate_per_s=1, burst=1, keys_max=3)
    for key in ("a", "b", "c"):
        buckets.take(key, 0.0)
    buckets.take("a", 0.1)  # a is now the most recent
    buckets.take("d", 0.2)
    assert list(buckets.buckets) == ["c", "a", "d"]
    for i in range(1_000):
        buckets.take(f"k{i}", 1.0)
    assert len(buckets.buckets) == 3


def request(peer: str, forwarded: str | None = None):  # type: ignore[no-untyped-def]
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    made = make_mocked_request("GET", "/v1/x", headers=headers)
    made._transport_peername = (peer, 1234)  # noqa: SLF001 - the peer a socket would give
    return made


def test_the_forwarded_header_counts_only_from_trusted_proxies() -> None:
    proxies = parse_networks("10.0.0.0/8, 192.168.1.7")
    assert proxies == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.168.1.7"))
    # Untrusted peer: its header is ignored, whatever it claims.
    assert client_address(request("203.0.113.9", "1.2.3.4"), proxies) == "203.0.113.9"
    assert client_address(request("10.1.1.1", "1.2.3.4"), ()) == "10.1.1.1"
    # Trusted proxies: the nearest hop that is not one of them.
    assert client_address(request("10.1.1.1", "6.6.6.6, 1.2.3.4, 10.2.2.2"), proxies) == "1.2.3.4"
    assert client_address(request("10.1.1.1"), proxies) == "10.1.1.1"
    with pytest.raises(ValueError):
        parse_networks("10.0.0.0/33")


def test_limits_refuse_a_rate_without_a_burst() -> None:
    with pytest.raises(ValueError):
        Limits(user_per_s=5, user_burst=0)
    with pytest.raises(ValueError):
        Limits(in_flight_max=0)
    Limits(user_per_s=0, user_burst=0)  # off: no burst needed, no error


def test_the_per_address_limit_is_off_unless_configured_and_said_so() -> None:
    defaults = Limits()
    assert defaults.address_per_s == 0
    assert defaults.in_force() == (
        "limits in force: per person 10/s, bursts of 20; per client address off"
        " (RATE_LIMIT_ADDRESS_PER_S); trusted proxies none; at most 10000 requests in flight"
    )
    assert defaults.hazard() is None


def test_a_per_address_limit_with_nobody_trusted_is_a_hazard_and_with_proxies_is_not() -> None:
    alone = Limits(address_per_s=500, address_burst=1000)
    assert "COUPONS_TRUSTED_PROXIES is empty" in (alone.hazard() or "")
    behind = Limits(address_per_s=500, trusted_proxies=parse_networks("10.0.0.0/8"))
    assert behind.hazard() is None
    assert "per client address 500/s, bursts of 1000; trusted proxies 10.0.0.0/8" in (
        behind.in_force()
    )
