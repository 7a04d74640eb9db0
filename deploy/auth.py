"""Who is asking: a Bearer JWT (HS256 with a shared secret), its `sub` and roles."""

import time
from dataclasses import dataclass

import jwt
from aiohttp import web

from deploy.http import Problem

ALGORITHMS = ["HS256"]
LEEWAY_S = 30
TOKEN_TTL_S_DEFAULT = 24 * 3600


@dataclass(frozen=True, slots=True)
class Caller:
    user_id: str
    admin: bool


def mint_token(secret: str, sub: str, admin: bool = False, ttl_s: int = TOKEN_TTL_S_DEFAULT) -> str:
    now = int(time.time())
    claims = {"sub": sub, "iat": now, "exp": now + ttl_s, "roles": ["admin"] if admin else []}
    return jwt.encode(claims, secret, algorithm="HS256")


def caller(request: web.Request, secret: str) -> Caller:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Problem(
            401, "unauthenticated", "Authentication required", "send Authorization: Bearer <token>"
        )
    try:
        claims = jwt.decode(
            token.strip(),
            secret,
            algorithms=ALGORITHMS,
            leeway=LEEWAY_S,
            options={"require": ["exp", "sub"]},
        )
    except jwt.PyJWTError as error:
        raise Problem(401, "unauthenticated", "Invalid token", str(error)) from error
    sub = claims["sub"]
    roles = claims.get("roles", [])
    if not isinstance(sub, str) or not sub or len(sub) > 200:
        raise Problem(401, "unauthenticated", "Invalid token", "sub must be a short string")
    return Caller(user_id=sub, admin=isinstance(roles, list) and "admin" in roles)
