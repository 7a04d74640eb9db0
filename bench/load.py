"""The load generator: pre-built HTTP/1.1 requests over raw keep-alive connections.

Each request is built once before the clock starts (one token per person), then written
to a socket as bytes; a response is read as a status line, headers and a body of its
Content-Length. Generator processes split the people and the connections between them
and start together at one wall-clock moment, like people clicking at noon. Each process
reports the CPU it used, so a run can show that the generator was not the bottleneck.

Closed loop (the default), each connection sends its next request when the last is
answered. Open loop (`rate_per_s`), requests *arrive* on a schedule whatever the answers
do: each takes one of `connections` opened before T (a load balancer's pool), or waits
for one; its latency counts from when it was due, so a slow answer delays nobody's clock.
"""

import asyncio
import multiprocessing
import os
import resource
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized

from runtime.auth import mint_token

HEADER_BYTES_MAX = 64 * 1024
BODY_BYTES_MAX = 1024 * 1024
START_MARGIN_S = 0.3  # from the last process being ready to T
ANSWER_TIMEOUT_S = 15.0  # open loop: a request not answered by then counts as unanswered


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    port: int
    path: str  # e.g. /v1/coupons/<id>/claims
    jwt_secret: str
    body: bytes = b"{}"
    prefer_wait_s: int = 10
    keyed: bool = False  # an Idempotency-Key on every claim, as careful clients send


@dataclass(slots=True)
class Slice:
    """One generator process's share: people [first, last) over `connections`."""

    target: Target
    user_prefix: str
    first: int
    last: int
    connections: int
    rate_per_s: float = 0.0  # open loop: this process's share of the arrival rate


@dataclass(slots=True)
class Result:
    """Per request: when it was sent (s after T), how long it took (s), its status."""

    sent: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    status: list[int] = field(default_factory=list)
    lag: list[float] = field(default_factory=list)  # open loop: sent this long after due
    cpu_s: float = 0.0
    wall_s: float = 0.0
    errors: int = 0  # transport errors and, open loop, answers later than ANSWER_TIMEOUT_S

    def extend(self, other: "Result") -> None:
        self.sent.extend(other.sent)
        self.latency.extend(other.latency)
        self.status.extend(other.status)
        self.lag.extend(other.lag)
        self.cpu_s += other.cpu_s
        self.wall_s = max(self.wall_s, other.wall_s)
        self.errors += other.errors


def request_bytes(target: Target, user_id: str) -> bytes:
    token = mint_token(target.jwt_secret, user_id, ttl_s=3600)
    key = f"Idempotency-Key: claim-{user_id}\r\n" if target.keyed else ""
    head = (
        f"POST {target.path} HTTP/1.1\r\n"
        f"Host: {target.host}:{target.port}\r\n"
        f"Authorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\n"
        f"Prefer: wait={target.prefer_wait_s}\r\n"
        f"{key}"
        f"Content-Length: {len(target.body)}\r\n\r\n"
    )
    return head.encode() + target.body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, whether the server will close the connection)."""
    head = await reader.readuntil(b"\r\n\r\n")
    assert len(head) <= HEADER_BYTES_MAX, "response headers too large"
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, closing = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            closing = True
    assert length <= BODY_BYTES_MAX, "response body too large"
    if length:
        await reader.readexactly(length)
    return status, closing


async def _connection(
    target: Target, requests: list[bytes], cursor: list[int], result: Result, t0: float,
    done: Synchronized,  # type: ignore[type-arg]
) -> None:  # fmt: skip
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while cursor[0] < len(requests):
        index = cursor[0]
        cursor[0] += 1
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(target.host, target.port)
            assert reader is not None
            sent = time.perf_counter()
            writer.write(requests[index])
            status, closing = await _read_response(reader)
            result.sent.append(sent - t0)
            result.latency.append(time.perf_counter() - sent)
            result.status.append(status)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            result.errors += 1
            closing = True
        if closing and writer is not None:
            writer.close()
            writer = None
        with done.get_lock():
            done.value += 1
    if writer is not None:
        writer.close()


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]
OPENING_AT_ONCE = 128


async def _open(target: Target, count: int) -> list[Connection]:
    """`count` connections, opened a few at a time."""
    opened: list[Connection] = []
    while len(opened) < count:
        wave = min(OPENING_AT_ONCE, count - len(opened))
        opened += await asyncio.gather(
            *(asyncio.open_connection(target.host, target.port) for _ in range(wave))
        )
    return opened


async def _arrivals(
    part: Slice, requests: list[bytes], result: Result, t0: float,
    done: Synchronized, idle: list[Connection],  # type: ignore[type-arg]
) -> None:  # fmt: skip
    """Open loop: request i is due at T + i / rate, sent then on an idle connection (or as
    soon as one is free), and timed from when it was due."""
    target = part.target
    slots = asyncio.Semaphore(part.connections)

    async def send(request: bytes, due: float) -> None:
        async with slots:
            sent = time.perf_counter()
            connection: Connection | None = None
            try:
                async with asyncio.timeout(ANSWER_TIMEOUT_S - (sent - due)):
                    connection = (
                        idle.pop()
                        if idle
                        else await asyncio.open_connection(target.host, target.port)
                    )
                    connection[1].write(request)
                    status, closing = await _read_response(connection[0])
            except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError):
                result.errors += 1
                status, closing = 0, True
            if connection is not None and closing:
                connection[1].close()
            elif connection is not None:
                idle.append(connection)
        if status:
            result.sent.append(due - t0)
            result.latency.append(time.perf_counter() - due)
            result.status.append(status)
            result.lag.append(sent - due)
        with done.get_lock():
            done.value += 1

    pending = []
    for index, request in enumerate(requests):
        due = t0 + index / part.rate_per_s
        if (ahead := due - time.perf_counter()) > 0:
            await asyncio.sleep(ahead)
        pending.append(asyncio.create_task(send(request, due)))
    await asyncio.gather(*pending)
    for _, writer in idle:
        writer.close()


@dataclass(frozen=True, slots=True)
class Shared:
    """Counters the generator processes share with the parent."""

    done: Synchronized  # type: ignore[type-arg]  # responses received, for the progress bar
    ready: Synchronized  # type: ignore[type-arg]  # processes with their requests built
    start_at: Synchronized  # type: ignore[type-arg]  # T (time.time()), 0 until all are ready


_shared: Shared | None = None


def _init(shared: Shared) -> None:
    global _shared
    _shared = shared


def run_slice(part: Slice) -> Result:
    """Runs in a generator process: build the requests, say so, wait for T, send them all."""
    shared = _shared
    assert shared is not None, "started through generate()"
    requests = [
        request_bytes(part.target, f"{part.user_prefix}{i}") for i in range(part.first, part.last)
    ]
    import uvloop

    return uvloop.run(_send_all(part, requests, shared))


async def _send_all(part: Slice, requests: list[bytes], shared: Shared) -> Result:
    result = Result()
    # Open loop: the connections are opened before T, as a load balancer's pool in front
    # of the gateways would be; thousands opened at once at T would measure the kernel's
    # accept queue overflowing (SYNs retried after 1, 3, 7 s), not the service.
    idle = await _open(part.target, part.connections) if part.rate_per_s > 0 else []
    with shared.ready.get_lock():
        shared.ready.value += 1
    start_at = await asyncio.to_thread(_start_at, shared)
    await asyncio.sleep(max(0.0, start_at - time.time()))
    cpu_before = _cpu_s()
    t0 = time.perf_counter() - (time.time() - start_at)
    done = shared.done
    if part.rate_per_s > 0:
        await _arrivals(part, requests, result, t0, done, idle)
    else:
        cursor = [0]
        await asyncio.gather(
            *(
                _connection(part.target, requests, cursor, result, t0, done)
                for _ in range(part.connections)
            )
        )
    result.wall_s = time.perf_counter() - t0
    result.cpu_s = _cpu_s() - cpu_before
    return result


def _start_at(shared: Shared) -> float:
    """T, once the parent has set it (every process is ready): another process's signal."""
    while shared.start_at.value == 0:
        time.sleep(0.005)
    return float(shared.start_at.value)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def generate(
    target: Target,
    users: int,
    connections: int,
    processes: int,
    user_prefix: str,
    on_progress: Callable[[int], None] | None = None,
    rate_per_s: float = 0.0,
) -> Result:
    """Send one request per person, from `processes` processes starting together; closed
    loop, or open loop at `rate_per_s` arrivals a second in all."""
    processes = max(1, min(processes, connections, users))
    context = multiprocessing.get_context("spawn")
    shared = Shared(context.Value("q", 0), context.Value("i", 0), context.Value("d", 0.0))
    share, extra = divmod(users, processes)
    slices, first = [], 0
    for index in range(processes):
        last = first + share + (1 if index < extra else 0)
        conns = connections // processes + (1 if index < connections % processes else 0)
        slices.append(Slice(target, user_prefix, first, last, conns, rate_per_s / processes))
        first = last
    result = Result()
    with ProcessPoolExecutor(
        processes, mp_context=context, initializer=_init, initargs=(shared,)
    ) as pool:
        futures = [pool.submit(run_slice, part) for part in slices]
        while shared.ready.value < processes and not any(f.done() for f in futures):
            time.sleep(0.01)  # every process is building its requests
        shared.start_at.value = time.time() + START_MARGIN_S  # T: the coupon goes live
        while not all(f.done() for f in futures):
            time.sleep(0.1)
            if on_progress is not None:
                on_progress(int(shared.done.value))
        for future in futures:
            result.extend(future.result())
    if on_progress is not None:
        on_progress(int(shared.done.value))
    return result


def cores() -> int:
    return os.cpu_count() or 1
