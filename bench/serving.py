"""Serving a comparison app the way the gateway is served (uvloop; several processes may
share the port, as gateway workers do), until SIGTERM or SIGINT."""

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any

import uvloop
from aiohttp import web

from runtime.http import serve


async def ready(_: web.Request) -> web.Response:
    return web.Response(text="ready")


async def serve_until_stopped(app: web.Application, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = await serve(app, "127.0.0.1", port, reuse_port=True)
    print(f"listening on 127.0.0.1:{port}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def run(main: Coroutine[Any, Any, None]) -> None:
    uvloop.run(main)
