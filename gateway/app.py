"""The gateway process: stateless HTTP front, turning requests into commands."""

import asyncio
import contextlib
import logging
import os
import uuid

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway import audiences, campaigns, claims, coupons, grants
from gateway import web as web_app
from gateway.pipeline import GATEWAY, Gateway
from gateway.replies import Replies
from runtime import db, kafka
from runtime.auth import keys_kept_fresh, keys_problem
from runtime.docs import add_docs_routes, document
from runtime.http import add_ops_routes, errors, serve
from runtime.lifetime import running, started
from runtime.limits import guard
from runtime.produce import Batcher
from runtime.settings import Settings
from runtime.statuses import Statuses
from schemas.topics import Topics

log = logging.getLogger(__name__)

BODY_BYTES_MAX = 64 * 1024


# Each one is in gateway/openapi.yaml. The router tries them in this order: the claim,
# by far the most requested, first.
ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", "/v1/coupons/{coupon_id}/claims", claims.claim),
    ("POST", "/v1/coupons", coupons.create),
    ("GET", "/v1/coupons", coupons.list_coupons),
    ("GET", "/v1/coupons/{coupon_id}", coupons.get_coupon),
    ("DELETE", "/v1/coupons/{coupon_id}", campaigns.close),
    ("POST", "/v1/coupons/{coupon_id}/codes", campaigns.upload_codes),
    ("POST", "/v1/coupons/{coupon_id}/assignments", campaigns.assign),
    ("POST", "/v1/coupons/{coupon_id}/distributions", campaigns.distribute),
    ("GET", "/v1/coupons/{coupon_id}/grants", campaigns.list_grants),
    ("GET", "/v1/coupons/{coupon_id}/stats", campaigns.stats),
    ("GET", "/v1/audiences", audiences.list_audiences),
    ("GET", "/v1/audiences/{name}", audiences.get_audience),
    ("PUT", "/v1/audiences/{name}", audiences.save),
    ("DELETE", "/v1/audiences/{name}", audiences.delete),
    ("GET", "/v1/users/me/grants", coupons.my_grants),
    ("GET", "/v1/grants/{grant_id}", grants.get_grant),
    ("GET", "/v1/grants/{grant_id}/events", grants.grant_events),
    ("POST", "/v1/grants/{grant_id}/{action}", grants.step),
    ("POST", "/v1/dev/token", web_app.dev_token),
]


def build_app(gateway: Gateway) -> web.Application:
    settings = gateway.settings
    limited = guard(settings.limits, settings.jwt, body_s=settings.connections.body_s)
    app = web.Application(middlewares=[errors, limited], client_max_size=BODY_BYTES_MAX)
    app[GATEWAY] = gateway
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    add_docs_routes(app, document("gateway"))
    web_app.add_web_routes(app)
    return app


async def run(settings: Settings, stop: asyncio.Event) -> None:
    async with contextlib.AsyncExitStack() as parts:  # each started is stopped (LIFO)
        await _serve(settings, stop, parts)
        await stop.wait()


async def _serve(settings: Settings, stop: asyncio.Event, parts: contextlib.AsyncExitStack) -> None:
    topics = Topics(settings.topic_prefix)
    gateway_id = settings.gateway_id or f"gw-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    reply_topic = topics.replies(gateway_id)
    ours = {**kafka.core_topics(settings), reply_topic: 1}
    await kafka.ensure_topics(settings, ours)
    pool = await db.create_pool(settings.database_url, settings.db_pool_size_max)
    parts.push_async_callback(pool.close)
    producer = await started(parts, kafka.producer(settings))
    replies = Replies(kafka.consumer(settings), reply_topic)
    statuses = Statuses(kafka.consumer(settings), topics.status)
    for part in (replies, statuses):
        await started(parts, part.consumer)
        await started(parts, part)
    batcher = Batcher(producer, settings.produce_queue_max)
    parts.push_async_callback(batcher.stop)
    gateway = Gateway(
        settings, topics, reply_topic, pool, producer, batcher, replies, statuses, gateway_id
    )

    async def readiness() -> str | None:
        if not replies.healthy:
            return "reply reader stopped"
        return keys_problem(settings.jwt) or await db.unreachable(pool)

    # The last second's edge counts are sent once no more requests come (runner first).
    running(parts, stop, gateway.edge.run(stop), kafka.keep_topics(settings, ours, stop),
            *keys_kept_fresh(settings.jwt, stop))  # fmt: skip
    app = build_app(gateway)
    add_ops_routes(app, readiness)
    runner = await serve(
        app, settings.host, settings.gateway_port, settings.gateway_reuse_port, settings.connections
    )
    parts.push_async_callback(runner.cleanup)
    log.info("gateway %s listening on %s:%d", gateway_id, settings.host, settings.gateway_port)
