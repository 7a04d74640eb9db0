"""Who is asking: a Bearer JWT, its `sub` and roles.

Tokens are HS256 with a shared secret, RS256 with the issuer's public key, or signed by an
OpenID Connect provider whose keys are fetched from its JWKS (runtime/jwks.py). The
verifier accepts exactly the one configured algorithm, or with a JWKS the named key's own
asymmetric one (never `none`, and never an HS256 token signed with a public key). `exp`
and `sub` are required; `aud` and `iss` are checked when configured; clock-skew leeway is
bounded.
"""

import asyncio
import functools
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import jwt
from aiohttp import web
from jwt.algorithms import HMACAlgorithm, RSAAlgorithm

from runtime.http import Problem
from runtime.jwks import KeySet
from schemas.storable import user_id_fault

LEEWAY_S_DEFAULT = 30
LEEWAY_S_MAX = 300
TOKEN_TTL_S_DEFAULT = 24 * 3600

Algorithm = Literal["HS256", "RS256"]
KEYS_PREPARED_MAX = 16  # a process verifies with one key; tests make a few


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request, as its verified token says."""

    user_id: str
    admin: bool


class _HMACPreparedOnce(HMACAlgorithm):
    """HS256 whose key is checked and converted once, not for every token: PyJWT prepares
    the key on each decode, and its PEM check was a tenth of a gateway's time."""

    def prepare_key(self, key: Any) -> bytes:
        return _prepare_once(self, key, super().prepare_key)  # type: ignore[no-any-return]


class _RSAPreparedOnce(RSAAlgorithm):
    """RS256 whose PEM key is parsed once, not for every token (a provider's keys come
    parsed already, from its JWKS)."""

    def prepare_key(self, key: Any) -> Any:
        return _prepare_once(self, key, super().prepare_key)


def _prepare_once(algorithm: object, key: Any, prepare: Any) -> Any:
    if isinstance(key, str | bytes):
        return _prepare_text(algorithm, key, prepare)
    return prepare(key)


@functools.lru_cache(maxsize=KEYS_PREPARED_MAX)
def _prepare_text(algorithm: object, key: str | bytes, prepare: Any) -> Any:
    return prepare(key)


# PyJWT's documented registry (jwt.register_algorithm): the same algorithms, keys prepared once.
for _name, _prepared in (
    ("HS256", _HMACPreparedOnce(HMACAlgorithm.SHA256)),
    ("RS256", _RSAPreparedOnce(RSAAlgorithm.SHA256)),
):
    jwt.unregister_algorithm(_name)
    jwt.register_algorithm(_name, _prepared)


@dataclass(frozen=True)
class Verifier:
    key: str = field(repr=False)  # the HS256 secret or the RS256 public key (PEM)
    algorithm: Algorithm = "HS256"
    audience: str | None = None
    issuer: str | None = None
    leeway_s: int = LEEWAY_S_DEFAULT
    keys: KeySet | None = field(default=None, compare=False)  # a provider's, by kid

    def __post_init__(self) -> None:
        if not 0 <= self.leeway_s <= LEEWAY_S_MAX:
            raise ValueError(f"JWT leeway must be 0 to {LEEWAY_S_MAX} s, not {self.leeway_s}")
        if self.keys is not None:
            return  # keys come from the provider, each with its own algorithm
        if self.algorithm == "RS256" and "PUBLIC KEY" not in self.key:
            raise ValueError("an RS256 key must be a PEM public key")
        # Parse the key now, so a bad one stops the process at start, not at each request.
        try:
            jwt.get_algorithm_by_name(self.algorithm).prepare_key(self.key)
        except (jwt.PyJWTError, ValueError, TypeError) as error:
            raise ValueError(f"the {self.algorithm} key cannot be used: {error}") from error

    def verify(self, token: str) -> Caller:
        required = (
            ["exp", "sub"] + (["aud"] if self.audience else []) + (["iss"] if self.issuer else [])
        )
        if not token.isascii():  # base64url and dots; a header's other bytes are not a JWT
            raise Problem("unauthenticated", "a token is ASCII text")
        key, algorithm = self._key(token)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": required, "verify_aud": self.audience is not None},
            )
        except jwt.PyJWTError as error:
            raise Problem("unauthenticated", str(error)) from error
        sub = claims["sub"]
        # The identity provider's choice: held to the rule every id is (schemas/storable.py),
        # or the core would refuse this person's every request as unstorable.
        why = user_id_fault(sub)
        if why is not None:
            raise Problem("unauthenticated", f"sub {why}")
        roles = claims.get("roles", [])
        return Caller(user_id=sub, admin=isinstance(roles, list) and "admin" in roles)

    def _key(self, token: str) -> tuple[Any, str]:
        """The key and algorithm to verify `token` with: configured, or the provider's key
        the token names (its `kid`)."""
        if self.keys is None:
            return self.key, self.algorithm
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as error:
            raise Problem("unauthenticated", str(error)) from error
        if not isinstance(kid, str) or not kid:
            raise Problem("unauthenticated", "the token names no key (kid)")
        found = self.keys.key(kid)
        return found.key, str(found.algorithm_name)


def keys_kept_fresh(verifier: Verifier, stop: asyncio.Event) -> list["asyncio.Task[None]"]:
    """With a provider's keys: the task that keeps them fresh until `stop` (else none)."""
    return [asyncio.create_task(verifier.keys.run(stop))] if verifier.keys else []


def keys_problem(verifier: Verifier) -> str | None:
    """Why tokens cannot be verified now (the provider's keys are not in hand), or None."""
    return verifier.keys.problem if verifier.keys and not verifier.keys.keys else None


def mint_token(
    key: str,
    sub: str,
    admin: bool = False,
    ttl_s: int = TOKEN_TTL_S_DEFAULT,
    algorithm: Algorithm = "HS256",
    **claims: object,
) -> str:
    """A token as an issuer makes it: HS256 with the shared secret, or RS256 with the
    issuer's private key (PEM). Extra claims (`aud`, `iss`) go in as given."""
    now = int(time.time())
    body = {"sub": sub, "iat": now, "exp": now + ttl_s, "roles": ["admin"] if admin else []}
    return jwt.encode({**body, **claims}, key, algorithm=algorithm)


def caller(request: web.Request, verifier: Verifier) -> Caller:
    """The request's caller, verified once per request (the rate limiter may ask first)."""
    known = request.get(CALLER)
    if isinstance(known, Caller):
        return known
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem("unauthenticated", "send Authorization: Bearer <token>")
    request[CALLER] = who = verifier.verify(token.strip())
    return who


def admin(request: web.Request, verifier: Verifier, doing: str) -> Caller:
    """The request's caller, who must be an admin to be `doing` what it asks."""
    who = caller(request, verifier)
    if not who.admin:
        raise Problem("forbidden", f"only an admin may {doing}")
    return who


CALLER = "coupons.caller"
