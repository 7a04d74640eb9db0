"""What one HTTP connection may hold of a process: time to send its headers, time to send
its body, time idle between requests, and a share of the file descriptors.

aiohttp bounds none of the first two, and a client that sends half a request and waits
holds its connection (and, with a body, a place among the requests in flight) for as long
as it likes: thousands of them refuse everyone else. So each bound here is a setting with
a default a real client never meets, each is counted when met, and the connection is
closed (or its request answered 408) instead of waiting:

    HTTP_HEADERS_S       first byte of a request to the end of its headers
    HTTP_BODY_S          end of the headers to the end of the body (read before the
                         request counts in flight: runtime/limits.py)
    HTTP_IDLE_S          between requests on a kept-alive connection (and before the first)
    HTTP_CONNECTIONS_MAX open connections, past which a new one is closed at once; never
                         more than the descriptors the process may open leave room for
"""

import asyncio
import logging
import resource
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server
from prometheus_client import Counter, Gauge

from runtime.environment import variable

log = logging.getLogger(__name__)

# After an answer given before its request's body was read whole (a 408, a 413), the rest
# is read and dropped for this long, so that the client hears the answer, then the
# connection is closed (aiohttp's own default: 10 s).
LINGER_S = 1.0
# Descriptors kept for what is not a client's connection: the broker, PostgreSQL's pool,
# log files, the listening sockets.
DESCRIPTORS_SPARE = 256

CONNECTIONS = Gauge(
    "coupons_http_connections", "Open HTTP connections", ["state"], multiprocess_mode="livesum"
)
CONNECTIONS_MAX = Gauge(
    "coupons_http_connections_max",
    "Open HTTP connections past which a new one is closed at once",
    multiprocess_mode="livesum",
)
CLOSED = Counter(
    "coupons_http_connections_closed_total",
    "Connections closed for a bound they met (headers, body, over_limit)",
    ["bound"],
)
_OPEN = CONNECTIONS.labels("open")
_HEADERS = CONNECTIONS.labels("reading_headers")


@dataclass(frozen=True)
class ConnectionBounds:
    headers_s: float = variable(
        "HTTP_HEADERS_S",
        5.0,
        "a request's headers must arrive within this from its first byte; past it the connection "
        "is closed (`runtime/connections.py`)",
    )
    body_s: float = variable(
        "HTTP_BODY_S",
        10.0,
        "a request's body must arrive within this of its headers; past it, `408` and the "
        "connection closes. A body is read before the request counts in flight, so slow senders "
        "never fill `COUPONS_IN_FLIGHT_MAX`",
    )
    idle_s: float = variable(
        "HTTP_IDLE_S",
        15.0,
        "a kept-alive connection with no request, and a new one that sends nothing, is closed "
        "after this",
    )
    connections_max: int = variable(
        "HTTP_CONNECTIONS_MAX",
        20_000,
        "open connections per process; a new one past it is closed at once. Never more than the "
        "descriptors allow (their soft limit is raised to the hard one at start, 256 kept for the "
        "broker, PostgreSQL and logs)",
    )

    def __post_init__(self) -> None:
        for name in ("headers_s", "body_s", "idle_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"HTTP_{name[:-2].upper()}_S must be more than 0")
        if self.connections_max < 1:
            raise ValueError("HTTP_CONNECTIONS_MAX must be at least 1")

    def connections_allowed(self) -> int:
        """HTTP_CONNECTIONS_MAX, or fewer when the descriptors this process may open would
        run out first (their soft limit is raised to the hard one first)."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        if soft == resource.RLIM_INFINITY:
            return self.connections_max
        return max(1, min(self.connections_max, soft - DESCRIPTORS_SPARE))


class BoundedHandler(RequestHandler):
    """aiohttp's connection, with a deadline on a request's headers and a cap on how many
    are open. (It reads RequestHandler's `_messages` and `_request_in_progress`: a request
    whose headers are parsed, and one being handled.)"""

    __slots__ = ("_bounds", "_headers_due", "_allowed")

    def __init__(self, server: Server, bounds: ConnectionBounds, allowed: int, **kw: Any) -> None:
        super().__init__(server, **kw)
        self._bounds = bounds
        self._allowed = allowed
        self._headers_due: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        _OPEN.inc()
        manager = self._manager
        if manager is not None and len(manager._connections) > self._allowed:
            CLOSED.labels("over_limit").inc()
            self.force_close()
            transport.close()

    def connection_lost(self, exc: BaseException | None) -> None:
        _OPEN.dec()
        self._headers_read()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        parsed = len(self._messages)
        super().data_received(data)
        if len(self._messages) > parsed or self._request_in_progress:
            self._headers_read()
        elif self._headers_due is None and not self._messages:
            _HEADERS.inc()
            self._headers_due = self._loop.call_later(self._bounds.headers_s, self._headers_late)

    def _headers_read(self) -> None:
        if self._headers_due is not None:
            self._headers_due.cancel()
            self._headers_due = None
            _HEADERS.dec()

    def _headers_late(self) -> None:
        self._headers_due = None
        _HEADERS.dec()
        CLOSED.labels("headers").inc()
        if self.transport is not None:
            self.transport.close()  # nothing to answer: the request never arrived whole


class BoundedServer(Server):
    def __init__(self, bounds: ConnectionBounds, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._bounds = bounds
        self._allowed = bounds.connections_allowed()
        CONNECTIONS_MAX.set(self._allowed)

    def __call__(self) -> RequestHandler:
        return BoundedHandler(self, self._bounds, self._allowed, loop=self._loop, **self._kwargs)


class BoundedRunner(web.AppRunner):
    """An AppRunner whose connections are BoundedHandlers."""

    def __init__(self, app: web.Application, bounds: ConnectionBounds, **kwargs: Any) -> None:
        super().__init__(app, keepalive_timeout=bounds.idle_s, lingering_time=LINGER_S, **kwargs)
        self._bounds = bounds

    async def _make_server(self) -> Server:
        made = await super()._make_server()
        return BoundedServer(
            self._bounds, made.request_handler, request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation, loop=made._loop, **made._kwargs,
        )  # fmt: skip


BODY_DEADLINE = "coupons.body_deadline"  # the loop's time by which a body must be here


async def read_body(request: web.Request, body_s: float) -> None:
    """Read the request's body now, within `body_s`; aiohttp keeps it for the handler, so
    a slow sender never counts among requests in flight. A body that says it is larger
    than the app takes, or does not say, is left to its route (an upload route allows
    more): it must still come within `body_s` of now (`body`)."""
    request[BODY_DEADLINE] = asyncio.get_running_loop().time() + body_s
    length = request.content_length
    if request.body_exists and length is not None and length <= request.client_max_size:
        await body(request)


async def body(request: web.Request) -> bytes:
    """The request's body, read by its deadline (HTTP_BODY_S after it was asked for); a
    body that comes slower is a 408 (a problem, by the errors middleware), and the
    connection is closed after it."""
    if request.content.is_eof():  # every byte is here (or was read before): nothing to wait for
        return await request.read()
    deadline = request.get(BODY_DEADLINE)
    if deadline is None:  # not through the guard: the default bound from now
        deadline = asyncio.get_running_loop().time() + ConnectionBounds().body_s
    try:
        async with asyncio.timeout_at(deadline):
            return await request.read()
    except TimeoutError:
        CLOSED.labels("body").inc()
        raise web.HTTPRequestTimeout(
            text="the request's body did not arrive within HTTP_BODY_S",
            headers={"Connection": "close"},
        ) from None
