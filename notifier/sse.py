"""Server-sent events: how every live stream of the notifier is framed and fed.

A stream is a bounded queue of framed events per reader. A reader that falls
`QUEUE_EVENTS_MAX` events behind is cut off (it reconnects and reads a fresh snapshot)
instead of making the notifier hold an unbounded backlog for it.
"""

import asyncio
import time

import orjson
from aiohttp import web

QUEUE_EVENTS_MAX = 256  # a stream this far behind is closed: its reader is not reading
LIVENESS_CHECK_S = 0.5  # how soon a closed connection is noticed
KEEPALIVE_S = 15.0

Events = asyncio.Queue[bytes]


def event(name: str, data: object) -> bytes:
    """One event, its data as JSON (bytes are taken as JSON already)."""
    payload = data if isinstance(data, bytes) else orjson.dumps(data)
    return b"event: " + name.encode() + b"\ndata: " + payload + b"\n\n"


def offer(queue: Events, framed: bytes) -> None:
    """Queue an event unless the reader is too far behind (its pump then closes it)."""
    if not queue.full():
        queue.put_nowait(framed)


def new_queue() -> Events:
    return asyncio.Queue(QUEUE_EVENTS_MAX)


async def open_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # a proxy in front must not hold events back
            **request.get("cors", {}),  # runtime/http.cross_origin: the web app reads it
        }
    )
    await response.prepare(request)
    return response


async def pump(request: web.Request, response: web.StreamResponse, queue: Events) -> None:
    """Write queued events until the reader leaves or falls too far behind."""
    quiet_since = time.monotonic()
    while request.transport is not None and not request.transport.is_closing():
        if queue.full():
            return  # too far behind: better to reconnect and read the snapshot
        try:
            framed = await asyncio.wait_for(queue.get(), LIVENESS_CHECK_S)
        except TimeoutError:
            if time.monotonic() - quiet_since < KEEPALIVE_S:
                continue
            framed = b": keep-alive\n\n"
        try:
            await response.write(framed)
        except (ConnectionResetError, RuntimeError):
            return
        quiet_since = time.monotonic()
