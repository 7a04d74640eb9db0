"""Running a campaign (admins only): close, upload codes, assign a code, distribute in
bulk, list the grants and read the statistics."""

from collections.abc import Callable
from typing import Any, cast

from aiohttp import web

from gateway.audiences import members_of as audience_members
from gateway.pipeline import GATEWAY, Gateway, Render, rejection, unless_rejected
from runtime import requests
from runtime.auth import Caller, admin
from runtime.http import Problem, json_response
from schemas import readmodel, saved_audiences, storable
from schemas.messages import (
    AddCodes,
    AssignCode,
    CloseCoupon,
    CouponStatus,
    Decision,
    Distribute,
    Plan,
    Strategy,
)
from schemas.storable import (
    CODE_CHARS_MAX,
    CODES_PER_UPLOAD_MAX,
    GRANTS_PER_COMMAND_MAX,
    SEED_CHARS_MAX,
    USERS_PER_DISTRIBUTION_MAX,
)
from schemas.views import coupon_view, grant_view

STRATEGIES = ("fcfs", "random", "equal")


async def _admin(request: web.Request, doing: str) -> tuple[Gateway, Caller, CouponStatus]:
    gateway = request.app[GATEWAY]
    who = admin(request, gateway.settings.jwt, doing)
    coupon_id = requests.coupon_id(request)
    status = await gateway.coupon(coupon_id)
    if status is None:
        raise Problem("unknown-coupon", f"no coupon {coupon_id}")
    return gateway, who, status


def _coupon_answer(
    gateway: Gateway, view: Callable[[CouponStatus, Decision], dict[str, Any]]
) -> Render:
    """How a decision about a whole coupon is answered: the coupon as the decision left it,
    known to this gateway's edge answers at once, shown by `view`; a rejection as such."""

    def applied(decision: Decision, _: str) -> web.Response:
        assert decision.coupon is not None, "a decision about a whole coupon carries its status"
        gateway.statuses.learn(decision.coupon)
        return json_response(view(decision.coupon, decision))

    return unless_rejected(applied)


async def close(request: web.Request) -> web.Response:
    gateway, who, status = await _admin(request, "close coupons")
    revoke = requests.query_flag(request, "revoke")
    sent = gateway.envelope(request, who.user_id, f"{status.coupon_id}/close/{revoke}")
    command = CloseCoupon(**sent, coupon_id=status.coupon_id, user_id=who.user_id, revoke=revoke)

    def closed(coupon: CouponStatus, decision: Decision) -> dict[str, Any]:
        return {
            **coupon_view(coupon, gateway.now_ms()),
            "revoked": decision.revoked,
            "revoking": coupon.revoking,
        }

    return await gateway.answer(request, command, _coupon_answer(gateway, closed))


async def upload_codes(request: web.Request) -> web.Response:
    gateway, who, status = await _admin(request, "upload codes")
    codes = await _codes(request)
    sent = gateway.envelope(request, who.user_id, f"{status.coupon_id}/codes")
    command = AddCodes(**sent, coupon_id=status.coupon_id, user_id=who.user_id, codes=codes)

    def added(coupon: CouponStatus, _: Decision) -> dict[str, Any]:
        return {"added": len(codes), "codes_left": coupon.codes_left}

    return await gateway.answer(request, command, _coupon_answer(gateway, added))


async def _codes(request: web.Request) -> tuple[str, ...]:
    """Codes from a JSON body `{"codes": [...]}` or a CSV body (first column; a header
    named `code` is skipped)."""
    request = requests.upload(request)
    if request.content_type == "text/csv":
        codes = await requests.csv_column(request, {"code"}, "codes")
    else:
        codes = requests.strings(await requests.json_object(request, {"codes"}), "codes")
    if not 1 <= len(codes) <= CODES_PER_UPLOAD_MAX:
        raise requests.invalid(f"an upload has 1 to {CODES_PER_UPLOAD_MAX} codes")
    bad = [c for c in codes if not c or len(c) > CODE_CHARS_MAX or not c.isprintable()]
    if bad:
        raise requests.invalid(
            f"codes are 1 to {CODE_CHARS_MAX} printable characters; not {bad[0]!r}"
        )
    return tuple(codes)


async def assign(request: web.Request) -> web.Response:
    gateway, who, status = await _admin(request, "assign codes")
    body = await requests.json_object(request, {"user_id", "code"})
    owner = requests.user_id(body, "user_id")
    code = requests.text(body, "code", CODE_CHARS_MAX)
    sent = gateway.envelope(request, who.user_id, f"{status.coupon_id}/assign/{owner}/{code}")
    command = AssignCode(
        **sent,
        coupon_id=status.coupon_id,
        user_id=who.user_id,
        owner_id=owner,
        code=code,
    )

    def assigned(decision: Decision, _: str) -> web.Response:
        assert decision.grant is not None, "an assignment that is not rejected grants"
        location = f"/v1/grants/{decision.grant.id}"
        return json_response(grant_view(decision.grant), status=201, headers={"Location": location})

    return await gateway.answer(request, command, unless_rejected(assigned))


async def distribute(request: web.Request) -> web.Response:
    gateway, who, status = await _admin(request, "distribute coupons")
    fields = {"users", "audience", "audience_version", "strategy", "per_user", "seed", "dry_run"}
    body = await requests.json_object(request, fields)
    users, audience = await _people(gateway, body)
    strategy = body.get("strategy", "fcfs")
    if strategy not in STRATEGIES:
        raise requests.invalid(f"strategy must be one of {', '.join(STRATEGIES)}")
    per_user = requests.integer(body, "per_user", 1, status.spec.per_user_limit, default=1)
    if strategy != "equal" and per_user != 1:
        raise requests.invalid("per_user applies to the equal strategy only")
    if len(users) * per_user > GRANTS_PER_COMMAND_MAX:
        raise requests.invalid(
            f"one distribution makes at most {GRANTS_PER_COMMAND_MAX} grants; this one would"
            f" make {len(users) * per_user} ({len(users)} people x {per_user}): split it"
        )
    dry_run = requests.boolean(body, "dry_run", default=False)
    sent = gateway.envelope(request, who.user_id, f"{status.coupon_id}/distribute/{dry_run}")
    seed = requests.text(body, "seed", SEED_CHARS_MAX, default=sent["request_id"])
    command = Distribute(
        **sent, coupon_id=status.coupon_id, user_id=who.user_id,
        users=users, strategy=cast(Strategy, strategy), per_user=per_user, seed=seed,
        dry_run=dry_run,
    )  # fmt: skip

    def planned(decision: Decision, ticket: str) -> web.Response:
        plan = _plan_view(decision.plan, seed, audience) if decision.plan else None
        if decision.outcome == "rejected":
            return rejection(decision, ticket, plan=plan)
        assert plan is not None, "a distribution that is not rejected has its plan"
        return json_response(plan, status=200 if dry_run else 201)

    return await gateway.answer(request, command, planned)


async def _people(
    gateway: Gateway, body: dict[str, Any]
) -> tuple[tuple[str, ...], dict[str, Any] | None]:
    """Whom a distribution is to: the `users` it lists, or the members of a saved
    `audience` (at `audience_version`, when given: the version its preview showed)."""
    if ("users" in body) == ("audience" in body):
        raise requests.invalid("name either users or a saved audience")
    if "audience" in body:
        name = requests.text(body, "audience", saved_audiences.NAME_CHARS_MAX)
        asked = body.get("audience_version")
        if asked is not None:
            asked = requests.integer(body, "audience_version", 1, 2**63 - 1)
        version, members = await audience_members(gateway, name, asked)
        return tuple(members), {"name": name, "version": version, "size": len(members)}
    if "audience_version" in body:
        raise requests.invalid("audience_version goes with audience")
    return requests.user_ids(body, "users", USERS_PER_DISTRIBUTION_MAX), None


def _plan_view(plan: Plan, seed: str, audience: dict[str, Any] | None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "strategy": plan.strategy,
        "dry_run": plan.dry_run,
        "seed": seed,
        "granted": sum(n for _, n in plan.granted),
        "plan": [{"user_id": u, "grants": n} for u, n in plan.granted],
        "skipped": [{"user_id": u, "reason": r} for u, r in plan.skipped],
    }
    if audience is not None:
        view["audience"] = audience
    return view


async def list_grants(request: web.Request) -> web.Response:
    gateway, _, status = await _admin(request, "list a coupon's grants")
    after = _query_int(request, "after", 0, 2**31 - 1, 0)
    limit = _query_int(request, "limit", 1, storable.PAGE_ITEMS_MAX, 100)
    rows = await gateway.pool.fetch(readmodel.COUPON_GRANTS, status.coupon_id, after, limit)
    items = [
        {
            **grant_view(readmodel.grant_from_row(r)),
            "seq": r["seq"],
            "display_name": r["display_name"],
        }
        for r in rows
    ]
    page: dict[str, Any] = {"items": items}
    if len(rows) == limit:
        page["next"] = (
            f"/v1/coupons/{status.coupon_id}/grants?after={rows[-1]['seq']}&limit={limit}"
        )
    return json_response(page)


def _query_int(request: web.Request, name: str, low: int, high: int, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise requests.invalid(f"{name} must be an integer from {low} to {high}")
    return int(raw)


async def stats(request: web.Request) -> web.Response:
    gateway, _, status = await _admin(request, "read a coupon's statistics")
    row = await gateway.pool.fetchrow(readmodel.COUPON_STATS, status.coupon_id)
    fresh = await gateway.pool.fetchrow(readmodel.COUPON_BY_ID, status.coupon_id)
    assert row is not None and fresh is not None
    current = readmodel.status_from_row(fresh)
    return json_response(
        {
            "coupon_id": current.coupon_id,
            "count": current.spec.count,
            "issued": current.issued,
            "held": row["held"],
            "assigned": row["assigned"],
            "locked": row["locked"],
            "redeemed": row["redeemed"],
            "redemptions": row["redemptions"],
            "released": row["released"],
            "revoked": row["revoked"],
            "remaining": max(current.spec.count - current.issued, 0),
            "line": row["line"],
            "codes_left": current.codes_left,
        }
    )
