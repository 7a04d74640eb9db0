"""Coupons: admins create them (through the log), anyone reads them."""

import uuid
from typing import Any

from aiohttp import web

from gateway.pipeline import GATEWAY, rejection
from runtime import requests
from runtime.auth import admin, caller
from runtime.docs import document
from runtime.http import Problem, json_response
from schemas import readmodel
from schemas.codes import DEFAULT_ALPHABET, DEFAULT_PATTERN, CodeFormat, InvalidFormat
from schemas.messages import CouponSpec, CreateCoupon, Decision
from schemas.storable import CODE_CHARS_MAX, DOCUMENTED, SPEC_RULES
from schemas.views import coupon_view, grant_view

# Codes must be sparse: a made-up code is a real one at most once in this many tries.
CODE_SPACE_PER_UNIT_MIN = 10_000
LIST_ITEMS_MAX = 100
# The fields a new coupon may have: as the API's document names them (NewCoupon).
FIELDS = frozenset(document("gateway")["components"]["schemas"]["NewCoupon"]["properties"])


def spec_from(body: dict[str, object]) -> CouponSpec:
    def field(name: str, default: Any = requests.REQUIRED, spec_name: str | None = None) -> Any:
        return requests.ruled(body, name, SPEC_RULES[spec_name or name], default)

    spec = CouponSpec(
        code=requests.text(body, "code", CODE_CHARS_MAX),  # and not blank
        message=field("message", ""),
        description=field("description", ""),
        start_ms=requests.time_ms(body, "start_time"),
        expiry_ms=requests.time_ms(body, "expiry"),
        count=field("count"),
        per_user_limit=field("per_user_limit", 1),
        daily_rule=field("daily_limit", True, spec_name="daily_rule"),
        hold_seconds=field("hold_seconds", 0),
        release_on_disconnect=field("release_on_disconnect", False),
        lock_seconds=field("lock_seconds", 300),
        redemptions_per_grant=field("redemptions_per_grant", 1),
        redemptions_per_user=field("redemptions_per_user", 0),
        code_source=field("code_source", "pattern"),
        code_pattern=_code_pattern(body),
        code_alphabet=field("code_alphabet", DEFAULT_ALPHABET),
    )
    if spec.start_ms >= spec.expiry_ms:
        raise requests.invalid("expiry must be after start_time")
    try:
        code_format = CodeFormat.parse(spec.code_pattern, spec.code_alphabet)
    except InvalidFormat as error:
        raise requests.invalid(f"code_pattern: {error}") from error
    if spec.code_source == "pattern" and code_format.domain < spec.count * CODE_SPACE_PER_UNIT_MIN:
        raise requests.invalid(
            f"code_pattern has {code_format.domain} codes; a count of {spec.count} needs at"
            f" least {spec.count * CODE_SPACE_PER_UNIT_MIN} so that codes cannot be guessed"
        )
    return spec


def _code_pattern(body: dict[str, object]) -> str:
    """The pattern with `{prefix}` spelled out (by default the coupon's code)."""
    pattern: str = requests.ruled(body, "code_pattern", SPEC_RULES["code_pattern"], DEFAULT_PATTERN)
    prefix: str = requests.ruled(
        body, "code_prefix", DOCUMENTED["code_prefix"], str(body.get("code", ""))
    )
    return pattern.replace("{prefix}", prefix.upper())


async def create(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    who = admin(request, gateway.settings.jwt, "create coupons")
    spec = spec_from(await requests.json_object(request, FIELDS))
    sent = gateway.envelope(request, who.user_id, "create")
    coupon_id = str(uuid.uuid5(uuid.UUID(sent["request_id"]), "coupon"))
    command = CreateCoupon(
        **sent,
        coupon_id=coupon_id,
        user_id=who.user_id,
        spec=spec,
    )

    def created(decision: Decision, ticket: str) -> web.Response:
        if decision.coupon is None:
            return rejection(decision, ticket)
        gateway.statuses.learn(decision.coupon)
        view = coupon_view(decision.coupon, gateway.now_ms())
        return json_response(view, status=201, headers={"Location": f"/v1/coupons/{coupon_id}"})

    wait_max_s = gateway.settings.claim_wait_s_max  # a creation waits as long as it may
    wait_s = requests.wait_s(request, wait_max_s, wait_max_s)
    return await gateway.answer(request, command, created, wait_s)


async def list_coupons(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    now_ms = gateway.now_ms()
    if requests.query_flag(request, "live"):
        rows = await gateway.pool.fetch(
            readmodel.LIVE_COUPONS, readmodel.ms_to_dt(now_ms), LIST_ITEMS_MAX
        )
    else:
        rows = await gateway.pool.fetch(readmodel.RECENT_COUPONS, LIST_ITEMS_MAX)
    items = [coupon_view(readmodel.status_from_row(r), now_ms) for r in rows]
    return json_response({"items": items})


async def get_coupon(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    coupon_id = requests.coupon_id(request)
    row = await gateway.pool.fetchrow(readmodel.COUPON_BY_ID, coupon_id)
    if row is None:
        raise Problem("unknown-coupon", f"no coupon {coupon_id}")
    return json_response(coupon_view(readmodel.status_from_row(row), gateway.now_ms()))


async def my_grants(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    who = caller(request, gateway.settings.jwt)
    rows = await gateway.pool.fetch(readmodel.GRANTS_OF_USER, who.user_id, LIST_ITEMS_MAX)
    return json_response({"items": [grant_view(readmodel.grant_from_row(r)) for r in rows]})
