"""`coupons dev` (what `make run` starts): a part that dies is started again and the
terminal says so; Ctrl-C still stops everything."""

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from deploy.embedded import free_port
from deploy.stack import http_ready
from tests.support.stack import SECRET

pytestmark = pytest.mark.integration

WAIT_S = 60.0


def children(pid: int) -> dict[int, str]:
    """Our child processes and their command lines."""
    found = {}
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            found[int(child)] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue  # gone meanwhile
    return {child: line.decode() for child, line in found.items()}


def test_dev_starts_a_part_that_died_again_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    port = _three_free_ports()
    dev = subprocess.Popen(
        [sys.executable, "-m", "deploy.cli", "dev", "--port", str(port), "--data-dir",
         str(tmp_path)],
        env={**os.environ, "COUPONS_JWT_SECRET": SECRET},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines, reader = _lines(dev)
    try:
        said = _until(lines, "Ctrl-C stops everything")
        gateway = next(pid for pid, line in children(dev.pid).items() if "cli gateway" in line)
        os.kill(gateway, signal.SIGKILL)
        said += _until(lines, "gateway is back")
        assert http_ready(f"http://127.0.0.1:{port}")
        parts = children(dev.pid)
        assert gateway not in parts and any("cli gateway" in line for line in parts.values())
        dev.send_signal(signal.SIGINT)
        assert dev.wait(timeout=WAIT_S) == 0
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.wait()
        reader.join(WAIT_S)  # the output ends with the process
        assert dev.stdout is not None
        dev.stdout.close()
    assert "gateway exited with status -9; starting it again in 1 s" in said
    left = [pid for pid in parts if Path(f"/proc/{pid}").exists()]
    assert not left, f"{[parts[pid] for pid in left]} outlived Ctrl-C"


def _three_free_ports() -> int:
    """A port whose next two are free too: the gateway, the notifier, the allocator."""
    for _ in range(50):
        port = free_port()
        if port + 2 < 65536 and all(_free(port + i) for i in (1, 2)):
            return port
    raise AssertionError("no three free ports in a row")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _lines(process: subprocess.Popen[str]) -> "tuple[queue.Queue[str], threading.Thread]":
    """The process's output, line by line, read beside the test (bounded waits below)."""
    out: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            out.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return out, reader


def _until(lines: "queue.Queue[str]", wanted: str) -> str:
    """Everything said up to and including the line holding `wanted` (at most WAIT_S)."""
    said, deadline = "", time.monotonic() + WAIT_S
    while wanted not in said:
        left = deadline - time.monotonic()
        assert left > 0, f"never said {wanted!r}; said:\n{said}"
        try:
            said += lines.get(timeout=left)
        except queue.Empty:
            continue
    return said
