"""Saved audiences (admins only): named lists of people to distribute a coupon to.

Written straight to PostgreSQL, not through the log (schemas/saved_audiences.py says why).
Every answer carries the audience's version as its ETag; `If-Match` saves or deletes only
over that version, `If-None-Match: *` saves only a new name.
"""

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from gateway.pipeline import GATEWAY, Gateway
from runtime import requests
from runtime.auth import Caller, admin
from runtime.http import Problem, Refused, json_response
from schemas import saved_audiences
from schemas.readmodel import dt_to_ms
from schemas.storable import USER_ID, user_ids_fault
from schemas.views import rfc3339


async def _admin(request: web.Request, doing: str) -> tuple[Gateway, Caller]:
    gateway = request.app[GATEWAY]
    return gateway, admin(request, gateway.settings.jwt, doing)


def _name(request: web.Request) -> str:
    return _checked(request.match_info["name"])


def _checked(name: str) -> str:
    fault = saved_audiences.name_fault(name)
    if fault is not None:
        raise requests.invalid(fault)
    return name


def _unknown(name: str) -> Problem:
    return Problem("unknown-audience", f"no audience named {name!r}")


def _stale(name: str, expected: int | None) -> Problem:
    held = "exists" if expected is None else f"is not at version {expected}"
    return Problem("precondition-failed", f"audience {name!r} {held}; read it again and decide")


def _etag(version: int) -> dict[str, str]:
    return {"ETag": f'"{version}"'}


def _if_match(request: web.Request) -> int | None:
    """The version `If-Match` names (one strong tag), or None when it is absent."""
    raw = request.headers.get("If-Match")
    if raw is None:
        return None
    tag = raw.strip()
    if not (tag.startswith('"') and tag.endswith('"') and tag[1:-1].isdigit()):
        raise requests.invalid('If-Match must be one version as its ETag gives it, e.g. "12"')
    return int(tag[1:-1])


def _if_none_match(request: web.Request) -> bool:
    """`If-None-Match: *` (save only a new name); any other value is refused."""
    raw = request.headers.get("If-None-Match")
    if raw is not None and raw.strip() != "*":
        raise requests.invalid("If-None-Match may only be * (save only a name not taken)")
    return raw is not None


def _summary(row: Mapping[str, Any], size: int) -> dict[str, Any]:
    return {
        "name": row["name"],
        "version": row["version"],
        "size": size,
        "saved_at": rfc3339(dt_to_ms(row["saved_at"])),
        "saved_by": row["saved_by"],
    }


async def list_audiences(request: web.Request) -> web.Response:
    gateway, _ = await _admin(request, "read audiences")
    rows = await gateway.pool.fetch(saved_audiences.LIST)
    return json_response({"items": [_summary(r, r["size"]) for r in rows]})


async def get_audience(request: web.Request) -> web.Response:
    gateway, _ = await _admin(request, "read audiences")
    name = _name(request)
    row = await gateway.pool.fetchrow(saved_audiences.BY_NAME, name)
    if row is None:
        raise _unknown(name)
    members = list(row["members"])
    body = {**_summary(row, len(members)), "members": members}
    return json_response(body, headers=_etag(row["version"]))


async def _members(request: web.Request) -> tuple[tuple[str, ...], int]:
    """The people a body names: JSON `{"members": [...]}`, or a CSV whose first column
    holds them (a header `user_id` or `id` is skipped). Each is held to the id rule
    (schemas/storable.py), exactly as sent in JSON, trimmed in a CSV's cells."""
    request = requests.upload(request)
    raw: object
    if request.content_type == "text/csv":
        raw = await requests.csv_column(request, {"user_id", "id"}, "members", USER_ID)
    else:
        raw = (await requests.json_object(request, {"members"})).get("members")
    if not isinstance(raw, list):
        raise requests.invalid("members must be a list of user ids")
    try:
        return saved_audiences.members(raw)
    except ValueError as error:
        raise requests.invalid(str(error)) from error


async def save(request: web.Request) -> web.Response:
    gateway, who = await _admin(request, "save audiences")
    name = _name(request)
    expected = _if_match(request)
    create_only = _if_none_match(request)
    members, dropped = await _members(request)
    if expected is not None:
        row = await gateway.pool.fetchrow(
            saved_audiences.REPLACE, name, members, who.user_id, expected
        )
    elif create_only:
        row = await gateway.pool.fetchrow(saved_audiences.CREATE, name, members, who.user_id)
    else:
        row = await gateway.pool.fetchrow(saved_audiences.SAVE, name, members, who.user_id)
    if row is None:
        raise _stale(name, expected)  # If-Match, or else If-None-Match: *
    saved = {**dict(row), "name": name, "saved_by": who.user_id}
    body = {**_summary(saved, len(members)), "dropped": dropped}  # repeats, kept once
    headers = _etag(row["version"])
    if row["created"]:
        headers["Location"] = f"/v1/audiences/{name}"
    return json_response(body, status=201 if row["created"] else 200, headers=headers)


async def delete(request: web.Request) -> web.Response:
    gateway, _ = await _admin(request, "delete audiences")
    name = _name(request)
    expected = _if_match(request)
    gone = await gateway.pool.fetchval(saved_audiences.DELETE, name, expected)
    if gone is None:
        if expected is None or await gateway.pool.fetchval(saved_audiences.BY_NAME, name) is None:
            raise _unknown(name)
        raise _stale(name, expected)
    return web.Response(status=204)


async def members_of(gateway: Gateway, name: str, version: int | None) -> tuple[int, list[str]]:
    """An audience's version and members, for a distribution; 404 when there is none, 409
    when `version` is given and the audience has been saved since."""
    row = await gateway.pool.fetchrow(saved_audiences.BY_NAME, _checked(name))
    if row is None:
        raise _unknown(name)
    unfit = user_ids_fault(row["members"], "members")
    if unfit is not None:  # saved before the id rule held audiences to it
        raise Refused("unstorable", f"audience {name!r}: {unfit}; save it again without it")
    if version is not None and row["version"] != version:
        raise Refused(
            "audience_changed",
            f"audience {name!r} was saved again after version {version} (now"
            f" {row['version']}); preview the distribution again",
        )
    return row["version"], list(row["members"])
