"""The one stack builder: a broker and PostgreSQL, and the parts as processes on them.

`coupons dev`, `coupons bench` and the tests all build their stacks here, so what they run
is started the same way: the same environment (`stack_env`), the same readiness checks,
and every process stopped by its PID.
"""

import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from deploy.embedded import (
    STOP_GRACE_S_DEFAULT,
    Broker,
    Postgres,
    Process,
    free_port,
    free_ports,
    spawn,
    start_broker,
    start_postgres,
    stop_together,
)

READY_TIMEOUT_S = 60.0
POLL_INTERVAL_S = 0.05  # between looks at a condition that has a deadline
T = TypeVar("T")


@dataclass
class Part:
    name: str
    process: Process
    url: str
    # Starts the same part again (same settings, port and log), ready; `coupons dev` uses it.
    again: Callable[[], "Part"] | None = field(default=None, repr=False, compare=False)


def http_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_part(
    name: str,
    env: dict[str, str],
    port: int,
    log_dir: Path,
    label: str | None = None,
    module: str = "cli",
    wait: bool = True,
    coupons: list[str] | None = None,
) -> Part:
    """Run `coupons <name>` (or `python -m <module>`) as a child process and wait until its
    /readyz answers 200 (with `wait=False`, not: `wait_part` does). `coupons`: the command
    to run instead of this Python's `python -m cli`, such as an installed entry point."""
    label = label or name
    log_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", module] + ([name] if module == "cli" else [])
    if coupons is not None:
        argv = [*coupons, name]
    process = spawn(
        label,
        argv,
        log_dir / f"{label}.log",
        15,  # SIGTERM: drain and stop
        env={**os.environ, **env},
    )

    def again() -> Part:
        return start_part(name, env, port, log_dir, label, module, coupons=coupons)

    part = Part(label, process, f"http://127.0.0.1:{port}", again)
    if wait:
        wait_part(part)
    return part


def wait_part(part: Part, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Until the part's /readyz answers 200; a part that exits, or is not ready within
    `timeout_s`, is stopped and said."""
    deadline = time.monotonic() + timeout_s
    try:
        # Alive and answering: a part that could not listen must not pass for ready because
        # something else answers on its port.
        while not (http_ready(part.url) and part.process.popen.poll() is None):
            code = part.process.popen.poll()
            if code is not None:
                tail = part.process.log_path.read_text()[-3000:]
                raise RuntimeError(f"{part.name} exited with {code}:\n{tail}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{part.name} not ready after {timeout_s}s")
            time.sleep(POLL_INTERVAL_S)
    except BaseException:
        part.process.stop()  # not ready, or interrupted: never leave it running unowned
        raise


def listening(port: int) -> int:
    """How many sockets listen on a local TCP port (/proc/net/tcp; state 0A is LISTEN)."""
    rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return sum(1 for row in rows if row[1].endswith(f":{port:04X}") and row[3] == "0A")


def wait_until(found: Callable[[], T | None], timeout_s: float, why: Callable[[], str]) -> T:
    """Look until `found()` gives something (not None), at most `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while (result := found()) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{why()} after {timeout_s}s")
        time.sleep(POLL_INTERVAL_S)
    return result


def wait_listening(port: int, count: int, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Until exactly `count` processes listen on the port: workers that share it by
    SO_REUSEPORT, all started, or one of them gone."""
    wait_until(
        lambda: True if listening(port) == count else None,
        timeout_s,
        lambda: f"{listening(port)} listeners on port {port}, not {count}",
    )


BROKERS = ("tansu", "kafka")  # Tansu (in memory) or Apache Kafka (deploy/kafka_broker.py)


def start_broker_of(kind: str, data_dir: Path, port: int | None = None) -> Broker:
    """A broker of `kind` in `data_dir` (on `port`, else a free one), ready."""
    assert kind in BROKERS, kind
    if kind == "kafka":
        from deploy.kafka_broker import start_kafka  # Java only when asked for

        return start_kafka(data_dir, port)
    return start_broker(data_dir, port)


@dataclass
class Infra:
    """An embedded broker and PostgreSQL server started by this process (deploy/embedded.py)."""

    broker: Broker
    postgres: Postgres
    root: Path
    broker_kind: str = "tansu"

    def stop(self) -> None:
        self.postgres.process.stop()  # the one running now: a fault test may restart it
        self.broker.process.stop()


def start_infra(root: Path, broker_kind: str = "tansu") -> Infra:
    broker = start_broker_of(broker_kind, root / "broker")
    try:
        postgres = start_postgres(root / "postgres")
    except BaseException:
        broker.process.stop()
        raise
    return Infra(broker, postgres, root, broker_kind)


# What the parts need on Tansu, where it differs from Apache Kafka: Tansu holds a fetch
# until its wait runs out even when records arrive, so each trip through the log costs
# the wait; 10 ms instead of 100 (runtime/settings.py), at the price of idle readers
# asking 100 times a second.
TANSU_ENV = {"KAFKA_FETCH_WAIT_MS": "10"}


def stack_env(
    kafka: str,
    database: str,
    jwt_secret: str,
    code_secret: str,
    port: int,
    prefix: str,
    broker_kind: str = "kafka",
) -> dict[str, str]:
    """Every part's settings for one stack on a broker of `broker_kind` (BROKERS): the
    gateway on `port`, the notifier on the next, an allocator on the one after."""
    return {
        **(TANSU_ENV if broker_kind == "tansu" else {}),
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "DATABASE_URL": database,
        "COUPONS_JWT_SECRET": jwt_secret,
        "COUPONS_CODE_SECRET": code_secret,
        "COUPONS_TOPIC_PREFIX": prefix,
        "GATEWAY_PORT": str(port),
        "NOTIFIER_PORT": str(port + 1),
        "ALLOCATOR_PORT": str(port + 2),
        "NOTIFIER_PUBLIC_URL": f"http://127.0.0.1:{port + 1}",
    }


@dataclass
class Stack:
    """The parts of one stack, running; `stop()` stops every one this object started."""

    env: dict[str, str]
    log_dir: Path
    gateway: Part | None = None
    notifier: Part | None = None
    allocators: list[Part] = field(default_factory=list)
    extra: list[Part] = field(default_factory=list)  # parts started beside; stopped too
    allocators_started: int = 0  # the first gets ALLOCATOR_PORT, later ones a free port
    gateway_workers: int = 1

    @property
    def gateway_url(self) -> str:
        assert self.gateway, "the stack has no gateway"
        return self.gateway.url

    def start_allocator(
        self, partitions: str | None = None, label: str | None = None, wait: bool = True
    ) -> Part:
        """An allocator; `partitions` as ALLOCATOR_PARTITIONS ("0,1" or "all"), or None for a
        member of the allocators' group."""
        first = self.allocators_started == 0
        label = label or ("allocator" if first else f"allocator{self.allocators_started}")
        port = int(self.env["ALLOCATOR_PORT"]) if first else free_port()
        env = {**self.env, "ALLOCATOR_PORT": str(port), "ALLOCATOR_ID": label}
        env.pop("ALLOCATOR_PARTITIONS", None)
        if partitions is not None:
            env["ALLOCATOR_PARTITIONS"] = partitions
        part = start_part("allocator", env, port, self.log_dir, label=label, wait=wait)
        self.allocators_started += 1
        self.allocators.append(part)
        return part

    def start_notifier(self, label: str = "notifier", wait: bool = True) -> Part:
        port = int(self.env["NOTIFIER_PORT"])
        self.notifier = start_part("notifier", self.env, port, self.log_dir, label, wait=wait)
        return self.notifier

    def start_gateway(self, workers: int = 1, wait: bool = True) -> Part:
        port = int(self.env["GATEWAY_PORT"])
        env = {**self.env, "GATEWAY_WORKERS": str(workers)}
        self.gateway = start_part("gateway", env, port, self.log_dir, wait=wait)
        self.gateway_workers = workers
        if wait:
            wait_listening(port, workers)
        return self.gateway

    def launch(self, allocators: list[str | None] | None = None, gateway_workers: int = 1) -> None:
        """Allocators (one per entry, as ALLOCATOR_PARTITIONS; by default one member of the
        allocators' group), the notifier and the gateway, started at once and not waited
        for: `wait()` does. None needs another to start (each creates the topics it is
        missing), so together they are ready in the time of the slowest, not the sum."""
        try:
            for partitions in allocators if allocators is not None else [None]:
                self.start_allocator(partitions, wait=False)
            self.start_notifier(wait=False)
            self.start_gateway(gateway_workers, wait=False)
        except BaseException:
            self.stop()
            raise

    def wait(self) -> None:
        """Until every part `launch()` started is ready; if one is not, all are stopped."""
        try:
            for part in self.parts:
                wait_part(part)
            wait_listening(int(self.env["GATEWAY_PORT"]), self.gateway_workers)
        except BaseException:
            self.stop()
            raise

    def start_another_gateway(self, label: str) -> Part:
        """Another gateway on the same broker and database, on a port of its own."""
        port = free_port()
        env = {**self.env, "GATEWAY_PORT": str(port)}
        part = start_part("gateway", env, port, self.log_dir, label=label)
        self.extra.append(part)
        return part

    @property
    def parts(self) -> list[Part]:
        return [p for p in [self.gateway, self.notifier, *self.allocators, *self.extra] if p]

    def replace(self, old: Part, new: Part) -> None:
        """`new` where `old` was (a part started again)."""
        if self.gateway is old:
            self.gateway = new
        elif self.notifier is old:
            self.notifier = new
        for parts in (self.allocators, self.extra):
            parts[:] = [new if p is old else p for p in parts]

    def stop(self, grace_s: float = STOP_GRACE_S_DEFAULT) -> list[Process]:
        """Every part asked to stop at once, and killed if still running `grace_s` later;
        those that had to be killed."""
        return stop_together([part.process for part in self.parts], grace_s)


def build_stack(
    env: dict[str, str],
    log_dir: Path,
    allocators: list[str | None] | None = None,
    gateway_workers: int = 1,
) -> Stack:
    """Allocators (one per entry, as ALLOCATOR_PARTITIONS; by default one member of the
    allocators' group), the notifier and the gateway, all ready."""
    stack = Stack(env, log_dir)
    stack.launch(allocators, gateway_workers)
    stack.wait()
    return stack


def free_ports_env(env: dict[str, str]) -> dict[str, str]:
    """`env` with the gateway, notifier and first allocator on free ports."""
    gateway, notifier, allocator = free_ports(3)
    return {
        **env,
        "GATEWAY_PORT": str(gateway),
        "NOTIFIER_PORT": str(notifier),
        "ALLOCATOR_PORT": str(allocator),
        "NOTIFIER_PUBLIC_URL": f"http://127.0.0.1:{notifier}",
    }
