"""The allocator process: owns its partitions and serves the ops routes."""

import asyncio
import contextlib
import logging
from typing import Any

from aiohttp import web

from allocator.shell.partitions import Given, Partitions
from allocator.shell.service import Allocator
from runtime import kafka
from runtime.http import add_ops_routes, errors, json_response, serve
from runtime.lifetime import running, started
from runtime.settings import Settings, SettingsError

log = logging.getLogger(__name__)


async def run(settings: Settings, stop: asyncio.Event) -> None:
    if settings.allocator_static_member and not settings.allocator_id_given:
        raise SettingsError(
            "ALLOCATOR_STATIC_MEMBER needs ALLOCATOR_ID: a name the allocator keeps when"
            " started again (the default has the process id in it)"
        )
    async with contextlib.AsyncExitStack() as parts:  # each started is stopped (LIFO)
        deciding = await _serve(settings, stop, parts)
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait([deciding, stopped], return_when=asyncio.FIRST_COMPLETED)
        if deciding.done() and deciding.exception():
            raise deciding.exception()  # type: ignore[misc]


async def _serve(
    settings: Settings, stop: asyncio.Event, parts: contextlib.AsyncExitStack
) -> "asyncio.Task[None]":
    """The allocator started and its routes served; the task that decides."""
    allocator = await started(parts, Allocator(settings))
    deciding, _ = running(
        parts,
        stop,
        allocator.run(stop),
        kafka.keep_topics(settings, kafka.core_topics(settings), stop),
    )

    async def readiness() -> str | None:
        if deciding.done():
            return "allocator stopped"
        return allocator.unready.first() or allocator.table.unready()

    def owned() -> dict[str, Any]:
        """Every partition given to this allocator and its phase (allocator/shell/partitions.py);
        for those it holds, the epoch (the fence), its position and lag; and how it came to
        be given them."""
        return {
            "allocator": settings.allocator_id,
            "ownership": f"group {settings.allocator_group}" if allocator.grouped else "static",
            "partitions": [_listed(allocator.table, given) for given in allocator.table.listed()],
        }

    async def partitions(_: web.Request) -> web.Response:
        return json_response(owned())

    app = web.Application(middlewares=[errors])
    add_ops_routes(app, readiness, owned)
    app.router.add_get("/partitions", partitions)
    runner = await serve(app, settings.host, settings.allocator_port, bounds=settings.connections)
    parts.push_async_callback(runner.cleanup)
    if allocator.grouped:
        log.info("allocator %s joins group %s", settings.allocator_id, settings.allocator_group)
    else:
        held = [h.tp.partition for h in allocator.table.held()]
        log.info("allocator %s holds partitions %s", settings.allocator_id, held)
    return deciding


def _listed(table: Partitions, given: Given) -> dict[str, Any]:
    listed = {"topic": given.tp.topic, "partition": given.tp.partition}
    listed |= {"phase": given.phase.value, "problem": given.troubles.first()}
    held = given.held  # held, or set aside while the group decides (LEAVING)
    if held is None:
        return listed | {"epoch": None, "position": None, "lag": None}
    return listed | {
        "epoch": held.epoch,
        "position": held.next_offset,
        "lag": table.lag(held),  # None while LEAVING: assigned to no one
    }
