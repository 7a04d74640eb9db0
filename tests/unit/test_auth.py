"""Token checks and the secrets a process will start with."""

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from runtime.auth import Verifier, mint_token
from runtime.http import Problem
from runtime.settings import Settings, SettingsError
from tests.support.jwks import hs256_by_hand

SECRET = "a-shared-secret-long-enough-for-hs256-0123456789"


def rsa_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


PRIVATE, PUBLIC = rsa_pair()


def refused(verifier: Verifier, token: str) -> str:
    with pytest.raises(Problem) as caught:
        verifier.verify(token)
    assert caught.value.response.status == 401
    return str(caught.value)


def test_a_good_token_names_the_caller_and_their_role() -> None:
    verifier = Verifier(SECRET)
    assert verifier.verify(mint_token(SECRET, "alice")).user_id == "alice"
    assert verifier.verify(mint_token(SECRET, "ops", admin=True)).admin


def test_wrong_signature_expiry_and_missing_claims_are_refused() -> None:
    verifier = Verifier(SECRET)
    now = int(time.time())
    refused(verifier, mint_token("another-secret-of-the-same-length-0123456789abc", "alice"))
    refused(verifier, mint_token(SECRET, "alice", ttl_s=-3600))
    refused(verifier, jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256"))  # no exp
    refused(verifier, jwt.encode({"exp": now + 60}, SECRET, algorithm="HS256"))  # no sub
    refused(verifier, mint_token(SECRET, "x" * 201))
    refused(verifier, "not-a-token")


def test_a_sub_is_held_to_the_rule_every_id_is() -> None:
    """A provider's `sub` the core would refuse as unstorable is refused at the door."""
    verifier = Verifier(SECRET)
    assert "control character (U+0007)" in refused(verifier, mint_token(SECRET, "\abell"))
    assert "blank" in refused(verifier, mint_token(SECRET, "   "))
    assert "whitespace" in refused(verifier, mint_token(SECRET, " ann"))
    assert verifier.verify(mint_token(SECRET, "ann-b")).user_id == "ann-b"


def test_the_none_algorithm_is_never_accepted() -> None:
    unsigned = jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, "", algorithm="none")
    refused(Verifier(SECRET), unsigned)
    refused(Verifier(PUBLIC, "RS256"), unsigned)


def test_rs256_accepts_the_issuers_tokens_and_refuses_algorithm_confusion() -> None:
    verifier = Verifier(PUBLIC, "RS256")
    assert verifier.verify(mint_token(PRIVATE, "bob", algorithm="RS256")).user_id == "bob"
    # An HS256 token "signed" with the public key, which anybody has. (PyJWT will not make
    # one, so it is made by hand.)
    refused(verifier, hs256_by_hand(PUBLIC, {"sub": "mallory", "roles": ["admin"]}))
    other_private, _ = rsa_pair()
    refused(verifier, mint_token(other_private, "bob", algorithm="RS256"))


def test_audience_and_issuer_are_checked_when_configured() -> None:
    verifier = Verifier(SECRET, audience="coupons", issuer="https://id.example")
    good: dict[str, Any] = {"aud": "coupons", "iss": "https://id.example"}
    assert verifier.verify(mint_token(SECRET, "alice", **good)).user_id == "alice"
    refused(verifier, mint_token(SECRET, "alice"))
    refused(verifier, mint_token(SECRET, "alice", **{**good, "aud": "payments"}))
    refused(verifier, mint_token(SECRET, "alice", **{**good, "iss": "https://evil.example"}))
    # Not configured: a token with an audience is still fine.
    assert Verifier(SECRET).verify(mint_token(SECRET, "alice", **good)).user_id == "alice"


def test_clock_skew_leeway_is_bounded() -> None:
    verifier = Verifier(SECRET, leeway_s=30)
    assert verifier.verify(mint_token(SECRET, "alice", ttl_s=-20)).user_id == "alice"
    refused(verifier, mint_token(SECRET, "alice", ttl_s=-40))
    with pytest.raises(ValueError, match="leeway"):
        Verifier(SECRET, leeway_s=3600)


def test_a_bad_key_stops_the_process_at_start() -> None:
    with pytest.raises(ValueError):
        Verifier("not a pem", "RS256")
    with pytest.raises(ValueError):
        Verifier("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "RS256")


# -- settings -----------------------------------------------------------------------------

BASE = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092", "DATABASE_URL": "postgresql://x/y"}
STRONG = {
    "COUPONS_JWT_SECRET": "jwt-9f3c1a7e5b2d4c6a8e0f1b3d5c7a9e1f",
    "COUPONS_CODE_SECRET": "codes-0a2b4c6d8e1f3a5b7c9d1e3f5a7b9c1d",
    "COUPONS_TICKET_SECRET": "tickets-7e5d3c1b9a8f6e4d2c0b1a3e5f7d9c",
}


def settings(**env: str) -> Settings:
    return Settings.from_env({**BASE, **env})


def test_development_derives_the_other_secrets_from_the_hs256_secret() -> None:
    made = settings(COUPONS_JWT_SECRET=SECRET)
    assert (made.code_secret, made.ticket_key, made.jwt.algorithm) == (SECRET, SECRET, "HS256")


def test_exactly_one_kind_of_token_key() -> None:
    with pytest.raises(SettingsError, match="exactly one"):
        settings()
    with pytest.raises(SettingsError, match="exactly one"):
        settings(COUPONS_JWT_SECRET=SECRET, COUPONS_JWT_PUBLIC_KEY=PUBLIC)
    with pytest.raises(SettingsError, match="exactly one"):
        settings(COUPONS_JWT_SECRET=SECRET, COUPONS_JWT_JWKS_URL="https://idp.example/jwks")
    with pytest.raises(SettingsError, match="with a public key or a JWKS"):
        settings(COUPONS_JWT_PUBLIC_KEY=PUBLIC)  # nothing to derive the other secrets from
    with pytest.raises(SettingsError, match="is not an http"):
        settings(COUPONS_JWT_JWKS_URL="file:///etc/keys", COUPONS_CODE_SECRET="c" * 8,
                 COUPONS_TICKET_SECRET="t" * 8)  # fmt: skip
    made = settings(
        COUPONS_JWT_PUBLIC_KEY=PUBLIC, COUPONS_CODE_SECRET="c" * 8, COUPONS_TICKET_SECRET="t" * 8
    )
    assert made.jwt.algorithm == "RS256"


def test_production_refuses_missing_short_placeholder_or_shared_secrets() -> None:
    production = {"COUPONS_ENV": "production"}
    assert settings(**production, **STRONG).environment == "production"
    cases = {
        "must be set": {**STRONG, "COUPONS_TICKET_SECRET": ""},
        "shorter": {**STRONG, "COUPONS_CODE_SECRET": "short"},
        "placeholder": {**STRONG, "COUPONS_JWT_SECRET": "please-change-me-" + "x" * 32},
        "differ": {**STRONG, "COUPONS_TICKET_SECRET": STRONG["COUPONS_CODE_SECRET"]},
    }
    for why, env in cases.items():
        with pytest.raises(SettingsError, match=why):
            settings(**production, **env)


def test_no_secret_appears_in_the_settings_repr() -> None:
    shown = repr(settings(**STRONG))
    assert not [name for name, value in STRONG.items() if value in shown]
    rs = repr(settings(COUPONS_JWT_PUBLIC_KEY=PUBLIC, COUPONS_CODE_SECRET="c" * 40,
                       COUPONS_TICKET_SECRET="t" * 40))  # fmt: skip
    assert "c" * 40 not in rs and "t" * 40 not in rs
