"""Starting the parts as processes, for `coupons dev` and for the integration tests."""

import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from deploy.embedded import Process, spawn

READY_TIMEOUT_S = 60.0
POLL_INTERVAL_S = 0.05  # between looks at a condition that has a deadline
T = TypeVar("T")


@dataclass
class Part:
    name: str
    process: Process
    url: str


def _http_ready(url: str) -> bool:
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
    module: str = "deploy.cli",
) -> Part:
    """Run `coupons <name>` (or `python -m <module>`) as a child process and wait until its
    /readyz answers 200."""
    label = label or name
    log_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", module] + ([name] if module == "deploy.cli" else [])
    process = spawn(
        label,
        argv,
        log_dir / f"{label}.log",
        15,  # SIGTERM: drain and stop
        env={**os.environ, **env},
    )
    url = f"http://127.0.0.1:{port}"
    wait_part(Part(label, process, url))
    return Part(label, process, url)


def wait_part(part: Part, timeout_s: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not _http_ready(part.url):
        code = part.process.popen.poll()
        if code is not None:
            tail = part.process.log_path.read_text()[-3000:]
            raise RuntimeError(f"{part.name} exited with {code}:\n{tail}")
        if time.monotonic() > deadline:
            part.process.kill()
            raise TimeoutError(f"{part.name} not ready after {timeout_s}s")
        time.sleep(POLL_INTERVAL_S)


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
