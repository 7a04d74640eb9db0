"""Reading what a client sent: JSON bodies, ids, times and the Prefer header, strictly."""

import uuid
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web

from deploy.http import Problem

IDEMPOTENCY_KEY_CHARS_MAX = 200


def invalid(detail: str) -> Problem:
    return Problem(400, "invalid-request", "Invalid request", detail)


async def json_object(request: web.Request, allowed: set[str]) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise invalid(f"body is not JSON: {error}") from error
    if not isinstance(body, dict):
        raise invalid("body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise invalid(f"unknown fields: {', '.join(unknown)}")
    return body


def coupon_id(request: web.Request) -> str:
    raw = request.match_info["coupon_id"]
    try:
        return str(uuid.UUID(raw))
    except ValueError as error:
        raise Problem(404, "unknown-coupon", "Unknown coupon", f"no coupon {raw!r}") from error


def text(body: dict[str, Any], name: str, chars_max: int, default: str | None = None) -> str:
    value = body.get(name, default)
    if not isinstance(value, str) or (default is None and not value.strip()):
        raise invalid(f"{name} must be a non-empty string")
    if len(value) > chars_max:
        raise invalid(f"{name} must be at most {chars_max} characters")
    return value


def integer(
    body: dict[str, Any], name: str, low: int, high: int, default: int | None = None
) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid(f"{name} must be an integer from {low} to {high}")
    return value


def boolean(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise invalid(f"{name} must be true or false")
    return value


def query_flag(request: web.Request, name: str) -> bool:
    """A `?name=true|false` query parameter; absent is false."""
    value = request.query.get(name, "false")
    if value not in ("true", "false"):
        raise invalid(f"{name} must be true or false")
    return value == "true"


def time_ms(body: dict[str, Any], name: str) -> int:
    value = body.get(name)
    if not isinstance(value, str):
        raise invalid(f"{name} must be an RFC 3339 time with an offset")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as error:
        raise invalid(f"{name}: {error}") from error
    if moment.tzinfo is None:
        raise invalid(f"{name} must carry an offset, such as Z or +09:00")
    return int(moment.timestamp() * 1000)


def wait_s(request: web.Request, default_s: float, max_s: float) -> float:
    """`Prefer: wait=N` (RFC 7240); preferences we cannot honour are ignored, as it says."""
    for preference in request.headers.get("Prefer", "").split(","):
        name, _, value = preference.strip().partition("=")
        if name.strip().lower() == "wait":
            try:
                return min(max(float(value.strip().strip('"')), 0.0), max_s)
            except ValueError:
                return default_s
    return default_s


def idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not key or len(key) > IDEMPOTENCY_KEY_CHARS_MAX or not key.isprintable():
        raise invalid(
            f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_CHARS_MAX} printable characters"
        )
    return key
