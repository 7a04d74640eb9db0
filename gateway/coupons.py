"""Coupons: admins create them (through the log), anyone reads them."""

import uuid

from aiohttp import web

from deploy.http import Problem, json_response
from gateway import requests
from gateway.auth import caller
from gateway.pipeline import GATEWAY, rejection
from schemas import readmodel
from schemas.coupons import coupon_view, grant_view
from schemas.messages import CouponSpec, CreateCoupon
from schemas.tickets import request_id_for

COUNT_MAX = 10_000_000
PER_USER_LIMIT_MAX = 1_000
LIST_ITEMS_MAX = 100
FIELDS = {
    "code",
    "message",
    "description",
    "start_time",
    "expiry",
    "count",
    "per_user_limit",
    "daily_limit",
}


def spec_from(body: dict[str, object]) -> CouponSpec:
    spec = CouponSpec(
        code=requests.text(body, "code", 64),
        message=requests.text(body, "message", 500, default=""),
        description=requests.text(body, "description", 5_000, default=""),
        start_ms=requests.time_ms(body, "start_time"),
        expiry_ms=requests.time_ms(body, "expiry"),
        count=requests.integer(body, "count", 0, COUNT_MAX),
        per_user_limit=requests.integer(body, "per_user_limit", 1, PER_USER_LIMIT_MAX, default=1),
        daily_rule=requests.boolean(body, "daily_limit", default=True),
    )
    if spec.start_ms >= spec.expiry_ms:
        raise requests.invalid("expiry must be after start_time")
    return spec


async def create(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    who = caller(request, gateway.settings.jwt_secret)
    if not who.admin:
        raise Problem(403, "forbidden", "Forbidden", "only an admin may create coupons")
    spec = spec_from(await requests.json_object(request, FIELDS))
    key = requests.idempotency_key(request)
    secret = gateway.settings.ticket_secret
    request_id = request_id_for(secret, who.user_id, "create", key) if key else str(uuid.uuid4())
    coupon_id = str(uuid.uuid5(uuid.UUID(request_id), "coupon"))
    command = CreateCoupon(
        request_id, coupon_id, who.user_id, spec, gateway.now_ms(), gateway.reply_topic
    )
    settings = gateway.settings
    answer = await gateway.submit(
        command, requests.wait_s(request, settings.claim_wait_s_max, settings.claim_wait_s_max)
    )
    if isinstance(answer, int):
        return await gateway.pending(command, answer)
    if answer.coupon is None:
        return rejection(answer, gateway.ticket(coupon_id, request_id))
    gateway.statuses.learn(answer.coupon)
    return json_response(
        coupon_view(answer.coupon, gateway.now_ms()),
        status=201,
        headers={"Location": f"/v1/coupons/{coupon_id}"},
    )


async def list_coupons(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    now_ms = gateway.now_ms()
    if request.query.get("live", "").lower() in ("1", "true", "yes"):
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
        raise Problem(404, "unknown-coupon", "Unknown coupon", f"no coupon {coupon_id}")
    return json_response(coupon_view(readmodel.status_from_row(row), gateway.now_ms()))


async def my_grants(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    who = caller(request, gateway.settings.jwt_secret)
    rows = await gateway.pool.fetch(readmodel.GRANTS_OF_USER, who.user_id, LIST_ITEMS_MAX)
    return json_response({"items": [grant_view(readmodel.grant_from_row(r)) for r in rows]})
