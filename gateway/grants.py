"""/v1/grants/{grant_id}: a grant, its audit trail, and the steps of its life.

Steps (confirm, cancel, lock, unlock, redeem) go through the log like claims do, so
fifty concurrent redeems of one grant are decided one after another: one wins.
"""

import uuid
from typing import Any, cast

from aiohttp import web

from gateway.pipeline import GATEWAY, rejection
from runtime import requests
from runtime.auth import Caller, caller
from runtime.http import Problem, json_response
from schemas import readmodel
from schemas.messages import Action, Decision, Grant, GrantAction
from schemas.storable import LOCK_ID_CHARS_MAX
from schemas.views import grant_view, rfc3339

ACTIONS: frozenset[str] = frozenset({"confirm", "cancel", "lock", "unlock", "redeem"})


async def _grant(request: web.Request) -> tuple[Caller, Grant]:
    """The grant named in the path, if the caller may see it (its owner, or an admin)."""
    gateway = request.app[GATEWAY]
    who = caller(request, gateway.settings.jwt)
    raw = request.match_info["grant_id"]
    try:
        grant_id = str(uuid.UUID(raw))
    except ValueError:
        grant_id = None
    row = await gateway.pool.fetchrow(readmodel.GRANT_BY_ID, grant_id) if grant_id else None
    grant = readmodel.grant_from_row(row) if row is not None else None
    if grant is None or not (who.admin or grant.user_id == who.user_id):
        # Someone else's grant is as unknown to you as one that does not exist.
        raise Problem("unknown-grant", f"no grant {raw!r} of yours")
    return who, grant


async def get_grant(request: web.Request) -> web.Response:
    _, grant = await _grant(request)
    return json_response(grant_view(grant))


async def grant_events(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    _, grant = await _grant(request)
    rows = await gateway.pool.fetch(readmodel.GRANT_EVENTS, grant.id)
    items = [
        {
            "from": row["before"],
            "to": row["after"],
            "cause": row["cause"],
            "request_id": str(row["request_id"]),
            "log": {"partition": row["log_partition"], "offset": row["log_offset"]},
            "at": rfc3339(readmodel.dt_to_ms(row["at"])),
        }
        for row in rows
    ]
    return json_response({"grant_id": grant.id, "items": items})


async def step(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    action = request.match_info["action"]
    if action not in ACTIONS:
        raise Problem("not-found", f"grants have no {action!r} step")
    body = await requests.json_object(request, {"lock_id"})
    lock_id = body.get("lock_id")
    if lock_id is not None and (not isinstance(lock_id, str) or len(lock_id) > LOCK_ID_CHARS_MAX):
        raise requests.invalid("lock_id must be the string a lock answered with")
    who, grant = await _grant(request)
    sent = gateway.envelope(request, who.user_id, f"{grant.id}/{action}")
    command = GrantAction(
        **sent, coupon_id=grant.coupon_id, user_id=who.user_id,
        grant_id=grant.id, action=cast(Action, action), lock_id=lock_id,
    )  # fmt: skip

    def stepped(decision: Decision, ticket: str) -> web.Response:
        if decision.outcome != "applied" or decision.grant is None:
            return rejection(decision, ticket)
        body_out: dict[str, Any] = {"ticket": ticket, **grant_view(decision.grant)}
        if action == "lock":
            body_out["lock_id"] = decision.grant.lock_id  # the key to redeem or unlock with
        return json_response(body_out)

    return await gateway.answer(request, command, stepped)
