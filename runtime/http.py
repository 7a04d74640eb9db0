"""HTTP plumbing every service shares: one error shape (RFC 9457), and the ops routes."""

import importlib.metadata
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from runtime import errors as failures
from runtime.connections import BoundedRunner, ConnectionBounds
from schemas import reasons
from schemas.problems import OF_STATUS, PROBLEMS, TYPE_BASE, Kind, of_reason, slug

log = logging.getLogger(__name__)

RETRY_AFTER_S = 1

# Names and labels as Prometheus' own HTTP instrumentation has them (code, method, route).
HTTP_REQUESTS = Counter(
    "coupons_http_requests_total", "HTTP requests answered", ["method", "route", "code"]
)
HTTP_DURATION = Histogram(
    "coupons_http_request_duration_seconds",
    "Time to answer an HTTP request (live streams are not observed: they last by design)",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# A gauge, not an Info: Info has no multiprocess mode (gateway workers: `_exposition`).
BUILD = Gauge("coupons_build_info", "The running build", ["version"], multiprocess_mode="max")


def labelled(metric: Counter | Histogram) -> Callable[..., Any]:
    """`metric.labels` remembered per label values without its lock: a handful of values,
    asked for on every request (the client's own lookup was 4% of a gateway's time)."""
    children: dict[tuple[str, ...], Any] = {}

    def child(*values: str) -> Any:
        found = children.get(values)
        if found is None:
            found = children[values] = metric.labels(*values)
        return found

    return child


BOUNDS: "list[Bound]" = []  # every bound a part may export, each once it has it


class Bound:
    """A gauge of a bound, made at its first `set`: a part without the bound shows no
    series, rather than a 0 that a ratio would divide by (issue 26: the saturation panel
    read in-flight / 0 on the allocator). Even unset, a gauge made at import would show 0,
    in a worker's multiprocess file too. Summed over gateway workers, as the gauge it is
    read against is."""

    def __init__(self, name: str, documentation: str) -> None:
        self.name, self.documentation = name, documentation
        self.gauge: Gauge | None = None
        BOUNDS.append(self)

    def set(self, value: float) -> None:
        if self.gauge is None:
            self.gauge = Gauge(self.name, self.documentation, multiprocess_mode="livesum")
        self.gauge.set(value)


_HTTP_REQUESTS = labelled(HTTP_REQUESTS)
_HTTP_DURATION = labelled(HTTP_DURATION)
BUILD.labels(importlib.metadata.version("coupons")).set(1)

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


def _exposition() -> bytes:
    """Every metric of this process; under `coupons gateway --workers N`, which gives its
    workers a PROMETHEUS_MULTIPROC_DIR, the sums over every worker, whichever one answers
    the scrape (the client library's process_* and python_* series are per process, and
    are left out then)."""
    if not os.environ.get(MULTIPROC_DIR):
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


Readiness = Callable[[], Awaitable[str | None]]  # None when ready, else why not


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


PROBLEM_CONTENT_TYPE = "application/problem+json"


def problem(
    name: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    """An answer of the problem `name` of the catalogue (schemas/problems.py)."""
    return _problem(TYPE_BASE + name, PROBLEMS[name], detail, headers, extra)


def refusal(
    reason: str, detail: str | None = None, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    """A refusal decided on the log, or that the log would decide: the problem named after
    its reason, in the reason's own words unless `detail` says more."""
    extra["reason"] = reason
    kind = of_reason(reason)
    return _problem(
        TYPE_BASE + slug(reason), kind, detail or reasons.detail(reason), headers, extra
    )


def _problem(
    type_: str, kind: Kind, detail: str, headers: dict[str, str] | None, extra: dict[str, Any]
) -> web.Response:
    body = {"type": type_, "title": kind.title, "status": kind.status, "detail": detail}
    body.update(extra)
    return web.Response(
        body=orjson.dumps(body),
        status=kind.status,
        headers={"Content-Type": PROBLEM_CONTENT_TYPE, **(headers or {})},
    )


def http_problem(error: web.HTTPException) -> web.Response:
    """aiohttp's own refusal (an unknown route, a method the route lacks, a body past its
    size) as the catalogue's problem; a status it lacks as RFC 9457's `about:blank`."""
    name = OF_STATUS.get(error.status)
    detail = error.text or error.reason
    if name is not None:
        return problem(name, detail)
    return _problem("about:blank", Kind(error.status, error.reason), detail, None, {})


def unavailable(detail: str) -> web.Response:
    return problem("unavailable", detail, headers={"Retry-After": str(RETRY_AFTER_S)})


ACCEPTED = "coupons.accepted"


def accept(request: web.Request, pending: Callable[[], web.Response]) -> None:
    """The request is in the log now: from here on, a failure is answered with `pending()`
    (`202` and the ticket: the decision will come), never with a 5xx that leaves its
    sender guessing whether it was taken."""
    request[ACCEPTED] = pending


class Problem(Exception):
    """Raised by handlers for an expected failure (a problem of the catalogue, by name);
    the middleware renders it."""

    def __init__(
        self, name: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.response = problem(name, detail, headers, **extra)


class Refused(Problem):
    """Raised for a refusal the log would decide (`refusal`), found before it is sent."""

    def __init__(self, reason: str, detail: str | None = None, **extra: Any) -> None:
        Exception.__init__(self, detail or reason)
        self.response = refusal(reason, detail, **extra)


UNAVAILABLE_SAID_EVERY_S = 1.0  # a dependency down: a line a second per route, not a request
_unavailable_said: dict[str, tuple[float, int]] = {}  # route: when said, how many held back


def say_unavailable(route: str, error: BaseException, now: float) -> None:
    """Log a dependency failure on a route: the first, then at most one line every
    UNAVAILABLE_SAID_EVERY_S saying how many it stands for (an outage under load once
    wrote 38 MB of the same line in two minutes; the 503s are counted in the metrics)."""
    said, held = _unavailable_said.get(route, (float("-inf"), 0))
    if now - said < UNAVAILABLE_SAID_EVERY_S:
        _unavailable_said[route] = (said, held + 1)
        return
    _unavailable_said[route] = (now, 0)
    more = f" (and {held} more since the last line)" if held else ""
    log.warning("dependency failure on %s: %s%s", route, error, more)


# The client hung up before its answer (nginx's code for it): no response goes out.
CLIENT_GONE_STATUS = 499
CLIENT_GONE = Counter(
    "coupons_http_client_gone_total", "Requests whose client hung up before they were answered"
)


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


@web.middleware
async def errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    route = request.match_info.route.resource
    name = route.canonical if route is not None else "unmatched"
    started = time.perf_counter()
    try:
        response = await handler(request)
    except Problem as failure:
        response = failure.response
    except web.HTTPException as http:
        if http.status < 400:
            raise
        response = http_problem(http)
    except Exception as error:
        if _client_gone(request):
            CLIENT_GONE.inc()  # an answer nobody reads: counted, not logged as a failure
            response = web.Response(status=CLIENT_GONE_STATUS)
        elif failures.unavailable(error):
            say_unavailable(name, error, time.monotonic())
            response = unavailable("a dependency is unavailable; retry shortly")
        else:
            log.exception("unhandled error on %s", name)
            response = problem("internal", "an unexpected error occurred")
    if response.status >= 500 and ACCEPTED in request:
        response = request[ACCEPTED]()
    _HTTP_REQUESTS(request.method, name, str(response.status)).inc()
    if not response.prepared:  # a live stream is prepared by its handler, long before here
        _HTTP_DURATION(request.method, name).observe(time.perf_counter() - started)
    return response


# The codes CouponsHttpErrors takes the rate of, counted from 0 on every route when the part
# starts: a labelled counter otherwise appears only at its first count, and a rate misses
# that first burst (deploy/prometheus/alerts.yml).
CODES_FROM_ZERO = ("500", "503")


async def _count_from_zero(app: web.Application) -> None:
    for route in app.router.routes():
        if route.resource is None or route.method not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            continue
        for code in CODES_FROM_ZERO:
            _HTTP_REQUESTS(route.method, route.resource.canonical, code)


def add_ops_routes(
    app: web.Application,
    readiness: Readiness,
    about: Callable[[], dict[str, Any]] | None = None,
) -> None:
    """/healthz, /readyz and /metrics; `about` adds what the part says of itself to
    /readyz (an allocator: the partitions it decides). Every route's 5xx counts start at 0
    when the app starts."""
    app.on_startup.append(_count_from_zero)

    async def healthz(_: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        why = await readiness()
        said = about() if about else {}
        if why is None:
            return json_response({"status": "ready", **said})
        return json_response({"status": "not_ready", "detail": why, **said}, status=503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=_exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)


def cross_origin(origins: tuple[str, ...]) -> Any:
    """A middleware letting the web app on these origins (or "*") read this part's answers
    and streams from a browser: CORS headers on the answers, preflights answered 204."""
    allowed = set(origins)

    @web.middleware
    async def cors(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None or not ("*" in allowed or origin in allowed):
            return await handler(request)
        headers = {"Access-Control-Allow-Origin": "*" if "*" in allowed else origin,
                   "Access-Control-Expose-Headers": "Retry-After, Location",
                   "Vary": "Origin"}  # fmt: skip
        if request.method == "OPTIONS":
            headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type, Last-Event-ID"
            headers["Access-Control-Max-Age"] = "600"
            return web.Response(status=204, headers=headers)
        request["cors"] = headers
        response = await handler(request)
        if not response.prepared:  # a stream sets them itself, before it starts
            response.headers.update(headers)
        return response

    return cors


MALFORMED = Counter(
    "coupons_http_malformed_total", "Requests refused 400 by the HTTP parser, before any route"
)


class Malformed(logging.Filter):
    """aiohttp logs a request its parser refuses (a control byte in a header, say) as an
    ERROR with a traceback, though the client got its 400: anyone could fill the log with
    them. Counted instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, BadHttpMessage):
            MALFORMED.inc()
            return False
        return True


async def serve(
    app: web.Application,
    host: str,
    port: int,
    reuse_port: bool = False,
    bounds: ConnectionBounds | None = None,
) -> web.AppRunner:
    """Listen; with `reuse_port`, beside other processes on the same port (SO_REUSEPORT);
    each connection held to `bounds` (runtime/connections.py), or to the defaults."""
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, Malformed) for f in server_log.filters):
        server_log.addFilter(Malformed())
    runner = BoundedRunner(app, bounds or ConnectionBounds(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True, reuse_port=reuse_port, backlog=4096)
    try:
        await site.start()
    except BaseException:  # a port taken, say: nothing of the runner is left behind
        await runner.cleanup()
        raise
    return runner
