"""The notifier process: forwards decisions to gateways, answers ticket polls and
keeps live streams."""

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.typedefs import Handler
from aiokafka import AIOKafkaConsumer

from notifier import coupon_events, dashboard, streams, tickets
from notifier.forwarder import Forwarder
from runtime import db, kafka
from runtime.auth import keys_kept_fresh, keys_problem
from runtime.docs import add_docs_routes, document
from runtime.http import add_ops_routes, cross_origin, errors, serve
from runtime.lifetime import running, started
from runtime.limits import guard
from runtime.settings import Settings
from runtime.statuses import Statuses
from schemas.topics import Topics

log = logging.getLogger(__name__)

STREAM_PATHS = ("/v1/users/me/events", "/v1/events")
ROUTES: list[tuple[str, str, Handler]] = [  # each one is in notifier/openapi.yaml
    ("GET", "/v1/tickets/{ticket}", tickets.ticket),
    ("GET", STREAM_PATHS[0], streams.my_events),
    ("GET", STREAM_PATHS[1], coupon_events.coupon_events),
    ("GET", "/dashboard", dashboard.page),
    ("GET", "/dashboard/events", dashboard.events),
]


async def run(settings: Settings, stop: asyncio.Event) -> None:
    async with contextlib.AsyncExitStack() as parts:  # each started is stopped (LIFO)
        await _serve(settings, stop, parts)
        await stop.wait()


async def _serve(settings: Settings, stop: asyncio.Event, parts: contextlib.AsyncExitStack) -> None:
    forwarder = await started(parts, Forwarder(settings))
    pool = await db.create_pool(settings.database_url, settings.db_pool_size_max)
    parts.push_async_callback(pool.close)
    offsets = await started(parts, kafka.consumer(settings))
    await offsets.topics()
    tails = await started(parts, kafka.consumer(settings, max_records=2000))
    assert forwarder.producer is not None
    live = streams.Streams(pool, forwarder.producer, Topics(settings.topic_prefix), settings.jwt)
    board = dashboard.Dashboard(pool, offsets, Topics(settings.topic_prefix))

    def on_decision(decision: dict[str, Any], payload: bytes) -> None:
        live.publish(decision, payload)
        board.observe(decision, payload)

    forwarder.on_decision = on_decision
    statuses = Statuses(kafka.consumer(settings), Topics(settings.topic_prefix).status)
    await started(parts, statuses.consumer)
    watch = coupon_events.CouponWatch(pool, statuses)
    await started(parts, statuses)
    tasks = running(
        parts, stop, forwarder.run(stop), live.feed.run(stop), watch.run(stop), board.run(stop),
        kafka.keep_topics(settings, kafka.core_topics(settings), stop),
        *keys_kept_fresh(settings.jwt, stop), cancel=True,
    )  # fmt: skip

    async def readiness() -> str | None:
        if any(task.done() for task in tasks):
            return "a notifier task stopped"  # its exception is in the log
        return keys_problem(settings.jwt) or await db.unreachable(pool)

    app = _application(settings, pool, offsets, tails, live, watch, board)
    add_ops_routes(app, readiness)
    runner = await serve(app, settings.host, settings.notifier_port, bounds=settings.connections)
    parts.push_async_callback(runner.cleanup)
    parts.callback(setattr, live, "closing", True)  # first: streams end before the server
    log.info("notifier listening on %s:%d", settings.host, settings.notifier_port)


def _application(
    settings: Settings,
    pool: asyncpg.Pool,
    offsets: AIOKafkaConsumer,
    tails: AIOKafkaConsumer,
    live: streams.Streams,
    watch: coupon_events.CouponWatch,
    board: dashboard.Dashboard,
) -> web.Application:
    limited = guard(
        settings.limits, settings.jwt, streaming=lambda r: r.path in STREAM_PATHS,
        body_s=settings.connections.body_s,
    )  # fmt: skip
    app = web.Application(
        middlewares=[cross_origin(settings.web_origins), errors, limited],
        client_max_size=16 * 1024,
    )
    app[tickets.POOL] = pool
    app[tickets.TICKET_SECRET] = settings.ticket_secret
    app[tickets.TOPICS] = Topics(settings.topic_prefix)
    app[tickets.OFFSETS] = offsets
    app[tickets.STATUSES] = watch.statuses
    app[tickets.TAILS] = tickets.Tails(tails)
    app[streams.STREAMS] = live
    app[coupon_events.WATCH] = watch
    app[dashboard.DASHBOARD] = board
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    add_docs_routes(app, document("notifier"))
    return app
