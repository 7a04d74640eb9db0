"""POST /v1/coupons/{coupon_id}/claims: where a claim enters."""

import time
from typing import get_args

from aiohttp import web
from prometheus_client import Counter, Histogram

from gateway.pipeline import GATEWAY, Gateway, Pending, rejection
from gateway.retries import PROVEN_OVER, Earlier, earlier_from_row
from runtime import requests
from runtime.auth import caller
from runtime.http import Problem, json_response, labelled, refusal
from schemas import readmodel
from schemas.messages import Claim, CouponStatus, Grant
from schemas.reasons import Reason
from schemas.views import EDGE_REASONS, State, grant_view, state_at

CLAIMS = Counter("coupons_claims_total", "Claims answered, by outcome", ["outcome"])
CLAIM_SECONDS = Histogram(
    "coupons_claim_seconds",
    "Time to answer a claim",
    ["outcome"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
_CLAIMS, _CLAIM_SECONDS = labelled(CLAIMS), labelled(CLAIM_SECONDS)
# A claim refused for the request itself (a 4xx: unknown coupon, bad body, no token) is the
# client's error; one that failed (a 5xx: a dependency down, a bug) is ours.
CLIENT_ERROR, SERVER_ERROR = "client_error", "server_error"
# Every outcome counted from 0, so a rate shows the first of each: a labelled counter
# otherwise appears only at its first count.
OUTCOMES = ("granted", "pending", "rejected", *get_args(Reason), CLIENT_ERROR, SERVER_ERROR)
for _outcome in OUTCOMES:
    _CLAIMS(_outcome)


async def claim(request: web.Request) -> web.Response:
    started = time.perf_counter()
    outcome = SERVER_ERROR  # unless answered, or refused as the client's error
    try:
        response, outcome = await _claim(request)
        return response
    except Problem as refused:
        outcome = CLIENT_ERROR if refused.response.status < 500 else SERVER_ERROR
        raise
    except web.HTTPException as refused:
        outcome = CLIENT_ERROR if refused.status < 500 else SERVER_ERROR
        raise
    finally:
        _CLAIMS(outcome).inc()
        _CLAIM_SECONDS(outcome).observe(time.perf_counter() - started)


async def _claim(request: web.Request) -> tuple[web.Response, str]:
    gateway = request.app[GATEWAY]
    settings = gateway.settings
    who = caller(request, settings.jwt)
    coupon_id = requests.coupon_id(request)
    body = await requests.json_object(request, {"user_id"})
    user_id = who.user_id
    if "user_id" in body:
        if not who.admin:
            raise Problem("forbidden", "only an admin may claim for another user")
        user_id = requests.user_id(body, "user_id")
    key = requests.idempotency_key(request)
    wait_s = requests.wait_s(request, settings.claim_wait_s_default, settings.claim_wait_s_max)
    status = await gateway.coupon(coupon_id)
    if status is None:
        raise Problem("unknown-coupon", f"no coupon {coupon_id}")
    now_ms = gateway.now_ms()
    state = state_at(status, now_ms)
    edge = EDGE_REASONS.get(state)
    if edge is not None:
        # A retry (same Idempotency-Key) may have been decided before the coupon was over,
        # through another gateway: that decision is the answer, not the edge's.
        if key is not None:
            request_id = gateway.request_id(key, user_id, coupon_id)
            ticket = gateway.ticket(coupon_id, request_id)
            earlier = await _earlier(gateway, status, state, request_id)
            if earlier is not None:
                gateway.edge.count(coupon_id, "retry", now_ms)
                return _answer(ticket, earlier)
        else:
            ticket = gateway.fresh_ticket(coupon_id)
        # The committed status proves the answer: no need to bother Kafka or PostgreSQL.
        # It is the allocator's answer word for word, with a ticket that says it again.
        gateway.edge.count(coupon_id, edge, now_ms)
        return refusal(edge, ticket=ticket), edge
    request_id = gateway.request_id(key, user_id, coupon_id)  # a fresh one without a key
    command = Claim(request_id, coupon_id, user_id, now_ms, gateway.reply_topic)
    outcome = await gateway.submit(request, command, wait_s)
    if isinstance(outcome, Pending):
        return await gateway.pending(command, outcome.offset), "pending"
    decision, ticket = outcome.decision, gateway.ticket(coupon_id, request_id)
    if decision.grant is None:
        return rejection(decision, ticket), decision.reason or "rejected"
    return _granted(ticket, decision.grant), "granted"


def _answer(ticket: str, earlier: Earlier) -> tuple[web.Response, str]:
    if isinstance(earlier, Grant):
        return _granted(ticket, earlier), "granted"
    return refusal(earlier, ticket=ticket), earlier


def _granted(ticket: str, grant: Grant) -> web.Response:
    body = {"ticket": ticket, "status": "granted", "grant": grant_view(grant)}
    return json_response(body, status=201, headers={"Location": f"/v1/grants/{grant.id}"})


async def _earlier(
    gateway: Gateway, status: CouponStatus, state: State, request_id: str
) -> Earlier | None:
    """The decision this request already has, if any: held by the gateway for a coupon its
    status proves over (gateway/retries.py), else read for this request alone."""
    if state in PROVEN_OVER:
        return await gateway.retries.earlier(status, state, request_id)
    row = await gateway.pool.fetchrow(readmodel.DECISION_BY_REQUEST, request_id)
    return None if row is None else earlier_from_row(row)
