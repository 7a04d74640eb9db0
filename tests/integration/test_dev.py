"""`coupons dev` (what `make run` starts): a part that dies is started again and the
terminal says so; Ctrl-C stops everything within a bound, and nothing it started outlives
it, even when it is killed itself. Stopped and started again, it keeps every answer it gave,
and `coupons replay` proves the database from the log: the whole history on Apache Kafka,
whose log is kept; on Tansu, whose log is not, what the new log holds, saying so."""

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deploy import local
from deploy.dev import STOP_GRACE_S
from deploy.embedded import free_port, start_postgres
from deploy.stack import http_ready, wait_until
from tests.support.stack import SECRET, broker_kind
from tests.support.terminal import coupons_in

pytestmark = pytest.mark.integration

WAIT_S = 60.0
READY = "Ctrl-C stops everything"
READY_S = {"tansu": WAIT_S, "kafka": 180.0}  # a JVM's first start on a busy two-core machine
ORPHANS_GONE_S_MAX = 5.0  # what `coupons dev` started is gone this long after it ends
STOP_SLACK_S = 2.0  # beyond the stuck part's grace: the others, the broker and PostgreSQL

# What `coupons dev` does with its processes (a part that dies, Ctrl-C, a kill, a stale or
# unreadable lock) is the same on either broker, and these tests start it on Tansu whatever
# the suite's: they run once, in the Tansu half. The restart test runs on each broker.
ONCE = pytest.mark.only_on("embedded")

Family = dict[int, tuple[str, str]]  # pid: its command line, its start time


def children(pid: int) -> dict[int, str]:
    """Our child processes (forked by any of our threads) and their command lines."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                found[int(child)] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue  # gone meanwhile
    return {child: line.decode() for child, line in found.items()}


def family(pid: int) -> Family:
    """Our children, theirs, and so on (PostgreSQL's backends, say), while they run."""
    found: Family = {}
    for child, line in children(pid).items():
        started = started_at(child)
        if started is None:
            continue
        found[child] = (line, started)
        with contextlib.suppress(OSError):  # gone meanwhile
            found |= family(child)
    return found


def started_at(pid: int) -> str | None:
    """A running process's start time (None when gone or a zombie): with its PID, it names
    one process even after the PID is used again."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, *fields = stat.rpartition(")")[2].split()
    return None if state == "Z" else fields[18]


def left(processes: Family) -> list[str]:
    """The command lines of those still running."""
    return [line for pid, (line, started) in processes.items() if started_at(pid) == started]


def kill_left(processes: Family) -> None:
    for pid, (_, started) in processes.items():
        if started_at(pid) == started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@dataclass
class Dev:
    """A `coupons dev` started by a test, what it said, and what it started."""

    process: "subprocess.Popen[str]"
    lines: "queue.Queue[str | None]"
    said: str = ""
    started: Family = field(default_factory=dict)

    def until(self, wanted: str, timeout_s: float = WAIT_S) -> str:
        self.said += _until(self.lines, wanted, timeout_s)
        return self.said

    def ready(self, timeout_s: float = WAIT_S) -> None:
        """Until it says it is ready; then what it started is known."""
        self.until(READY, timeout_s)
        self.started = family(self.process.pid)

    def stop(self) -> None:
        """Ctrl-C, and until it has stopped (bounded): cleanly, with nothing left running."""
        self.process.send_signal(signal.SIGINT)
        assert self.process.wait(timeout=WAIT_S) == 0, self.said
        _none_left(self.started, "Ctrl-C")


@contextlib.contextmanager
def running_dev(port: int, data_dir: Path, broker: str = "tansu") -> Iterator[Dev]:
    """`coupons dev` on `port` and `data_dir`; at the end stopped, and whatever it started
    and left behind killed, by PID."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "dev", "--port", str(port), "--data-dir",
         str(data_dir), "--broker", broker],
        env={**os.environ, "COUPONS_JWT_SECRET": SECRET},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines, reader = _lines(process)
    dev = Dev(process, lines)
    try:
        yield dev
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=WAIT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        kill_left(dev.started)
        reader.join(WAIT_S)  # the output ends with the process
        assert process.stdout is not None
        process.stdout.close()


@ONCE
def test_dev_says_where_each_part_answers_starts_one_that_died_again_and_ctrl_c_stops_all(
    tmp_path: Path,
) -> None:
    port = _three_free_ports()
    with running_dev(port, tmp_path) as dev:
        dev.ready()
        _each_address_answers(dev.said, local.read(tmp_path / local.FILE_NAME))
        gateway = next(pid for pid, (line, _) in dev.started.items() if "cli gateway" in line)
        os.kill(gateway, signal.SIGKILL)
        dev.until("gateway is back")
        assert http_ready(f"http://127.0.0.1:{port}")
        parts = children(dev.process.pid)
        assert gateway not in parts and any("cli gateway" in line for line in parts.values())
        dev.started |= family(dev.process.pid)
        dev.process.send_signal(signal.SIGINT)
        assert dev.process.wait(timeout=WAIT_S) == 0
        _none_left(dev.started, "Ctrl-C")
    assert "gateway exited with status -9; starting it again in 1 s" in dev.said


@ONCE
def test_dev_killed_takes_what_it_started_along_and_starts_again(tmp_path: Path) -> None:
    port = _three_free_ports()
    with running_dev(port, tmp_path) as dev:
        dev.ready()
        dev.process.kill()  # SIGKILL: no chance to stop anything itself
        dev.process.wait(timeout=WAIT_S)
        _none_left(dev.started, "SIGKILL of `coupons dev`")
    with running_dev(port, tmp_path) as again:
        again.ready()  # the same data folder: PostgreSQL's files, its lock file


@ONCE
def test_ctrl_c_stops_a_stack_with_a_stuck_part_within_the_bound(tmp_path: Path) -> None:
    port = _three_free_ports()
    with running_dev(port, tmp_path) as dev:
        dev.ready()
        allocator = next(pid for pid, (line, _) in dev.started.items() if "cli allocator" in line)
        os.kill(allocator, signal.SIGSTOP)  # stuck: SIGTERM waits until SIGCONT, which never comes
        asked_at = time.monotonic()
        dev.process.send_signal(signal.SIGINT)
        dev.process.wait(timeout=WAIT_S)
        stop_s = time.monotonic() - asked_at
        assert stop_s <= STOP_GRACE_S + STOP_SLACK_S, f"stopping took {stop_s:.1f} s\n{dev.said}"
        _none_left(dev.started, "Ctrl-C")
        said = dev.until("killed")
    assert "allocator did not stop" in said


@ONCE
def test_dev_stops_a_postgres_left_running_on_its_data_dir(tmp_path: Path) -> None:
    former = start_postgres(tmp_path / "postgres")  # as a `coupons dev` killed long ago left it
    try:
        with running_dev(_three_free_ports(), tmp_path) as dev:
            dev.ready()
        assert former.process.popen.poll() is not None, "the former PostgreSQL still runs"
    finally:
        former.process.stop()
    assert f"stopped a PostgreSQL left running on {tmp_path / 'postgres'}" in dev.said


@ONCE
def test_a_second_dev_on_the_same_data_dir_leaves_the_first_alone(tmp_path: Path) -> None:
    with running_dev(_three_free_ports(), tmp_path) as first:
        first.ready()
        parts = children(first.process.pid)  # the broker, PostgreSQL and the parts
        with running_dev(_three_free_ports(), tmp_path) as second:
            assert second.process.wait(timeout=WAIT_S) == 1
            said = second.until("already runs")
        assert children(first.process.pid) == parts
    assert len(said.splitlines()) == 1, said


@ONCE
def test_dev_says_what_to_do_with_a_lock_file_it_cannot_read(tmp_path: Path) -> None:
    lock = tmp_path / "postgres" / "pgdata" / "postmaster.pid"
    lock.parent.mkdir(parents=True)
    lock.write_text("not a pid\n")
    with running_dev(_three_free_ports(), tmp_path) as dev:
        code = dev.process.wait(timeout=WAIT_S)
        said = dev.until(str(lock))
    assert code == 1
    assert "Traceback" not in said and len(said.splitlines()) == 1, said


@ONCE
def test_dev_that_cannot_start_a_part_says_so_in_one_line_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    port = _three_free_ports()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))  # the gateway's port: it cannot listen there
        taken.listen()
        with running_dev(port, tmp_path) as dev:
            code = dev.process.wait(timeout=WAIT_S)
            said = dev.until("did not start")
    problem = [line for line in said.splitlines() if line.startswith("coupons:")]
    assert code == 1 and "Traceback" not in said, said
    assert problem == [f"coupons: the stack did not start: gateway exited with 1 (logs in "
                       f"{tmp_path / 'logs'})"], said  # fmt: skip
    assert _free(port + 1) and _free(port + 2), "the notifier or the allocator still listens"
    assert not (tmp_path / "postgres" / "pgdata" / "postmaster.pid").exists()


@pytest.fixture
def broker(pytestconfig: pytest.Config) -> str:
    """The suite's broker (`--backend`): the restart test holds on each, and runs once on the
    broker of the run (Apache Kafka's run fails, not skips, without Java)."""
    return broker_kind(pytestconfig)


def test_dev_started_again_keeps_its_answers_and_replay_proves_them(
    tmp_path: Path, broker: str
) -> None:
    data, port = tmp_path / local.DATA_DIR, _three_free_ports()
    with running_dev(port, data, broker) as dev:
        dev.ready(READY_S[broker])
        first_run = local.read(data / local.FILE_NAME)
        before = _created(tmp_path, "BEFORE")
        granted = _claimed(tmp_path, before, "alice")
        dev.stop()
    with running_dev(port, data, broker) as dev:
        dev.ready(READY_S[broker])
        second_run = local.read(data / local.FILE_NAME)
        again = _claimed(tmp_path, before, "alice")
        after = _created(tmp_path, "AFTER")
        bob, alice = _claimed(tmp_path, after, "bob"), _claimed(tmp_path, after, "alice")
        status, proved, err = coupons_in(tmp_path, "replay")
        claims = _claims_kcat_reads(second_run) if broker == "kafka" else []
    print(f"\n{proved.strip()}")
    assert granted["status"] == "granted" and bob["status"] == "granted"
    assert again["reason"] == "already_claimed" and alice["reason"] == "daily_limit"
    assert status == 0 and ", 0 mismatch" in proved and not err, proved + err
    prefixes = (first_run["COUPONS_TOPIC_PREFIX"], second_run["COUPONS_TOPIC_PREFIX"])
    if broker == "kafka":  # the same log: every decision, from both runs, is compared
        assert prefixes[0] == prefixes[1]
        assert "compared 6 decisions: 6 match" in proved and "begins after" not in proved
        assert claims == ["alice", "alice", "bob", "alice"]  # docs/features.md's kcat, both runs
    else:  # a new log: what it holds (the coupon made after, and its two claims) is compared
        assert prefixes[0] != prefixes[1]
        assert "compared 3 decisions: 3 match" in proved
        [said] = [line for line in proved.splitlines() if "begins after" in line]
        assert "2 decisions in PostgreSQL came from an earlier log" in said, said
        assert "1 in this log about coupons created in that one" in said, said


@ONCE
def test_dev_on_kafka_without_java_says_what_is_missing_in_one_line(tmp_path: Path) -> None:
    hidden = {**os.environ, "PATH": str(tmp_path / "empty")}  # no `java` (nor anything) found
    hidden.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    argv = [sys.executable, "-m", "cli", "dev", "--broker", "kafka", "--data-dir",
            str(tmp_path / local.DATA_DIR), "--port", str(_three_free_ports())]  # fmt: skip
    done = subprocess.run(argv, env=hidden, capture_output=True, text=True, timeout=WAIT_S)
    said = done.stdout + done.stderr
    assert done.returncode == 1 and len(said.splitlines()) == 1, said
    assert said.startswith("coupons: --broker kafka: ") and "`java` is not on the PATH" in said
    assert not (tmp_path / local.DATA_DIR).exists()  # nothing started, nothing made


def _claims_kcat_reads(settings: dict[str, str]) -> list[str]:
    """Who claimed, in log order, as Debian's kcat reads the command log (docs/features.md, "For
    analysts"): the broker and the topic prefix from the settings file."""
    kcat = shutil.which("kcat")
    assert kcat, "kcat is not installed: `make kcat` (as root: apt-get install kcat)"
    topic = f"{settings['COUPONS_TOPIC_PREFIX']}coupon.commands"
    argv = [kcat, "-b", settings["KAFKA_BOOTSTRAP_SERVERS"], "-C", "-t", topic, "-o", "beginning",
            "-e", "-q", "-f", "%T %s\n"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT_S, check=True)
    stamped = (line.split(" ", 1) for line in done.stdout.splitlines())
    commands = [json.loads(value) for _, value in sorted((int(t), v) for t, v in stamped)]
    return [c["user_id"] for c in commands if c.get("kind") == "claim"]


def _created(folder: Path, code: str) -> str:
    """A live coupon of 3 units (the daily rule on), by `coupons create`; its id."""
    status, out, err = coupons_in(folder, "create", "--code", code, "--message", code,
                                  "--count", "3", "--as", "ops", "--admin", "--json")  # fmt: skip
    assert status == 0, out + err
    return str(json.loads(out)["id"])


def _claimed(folder: Path, coupon: str, person: str) -> dict[str, str]:
    """`coupons claim` waiting for its decision: the decision."""
    status, out, err = coupons_in(folder, "claim", coupon, "--as", person, "--wait", "10",
                                  "--json")  # fmt: skip
    assert status in (0, 1), out + err  # granted, or refused: decided either way
    decided: dict[str, str] = json.loads(out)
    return decided


def _none_left(processes: Family, after: str) -> None:
    wait_until(
        lambda: True if not left(processes) else None,
        ORPHANS_GONE_S_MAX,
        lambda: f"{left(processes)} outlived {after}",
    )


def _each_address_answers(said: str, settings: dict[str, str]) -> None:
    """Every part's address `coupons dev` printed answers each route it names beside it,
    and the settings file names the gateway's and the allocator's (/partitions, /metrics:
    what operators and scrapers point at)."""
    found = dict(
        (name, (url, routes.split(", ")))
        for name, url, routes in re.findall(r"^(\w+): +(http://\S+)  \((.+)\)$", said, re.M)
    )
    assert set(found) == {"gateway", "notifier", "allocator"}, said
    for url, routes in found.values():
        for route in routes:
            with urllib.request.urlopen(f"{url}{route}", timeout=WAIT_S) as answer:
                assert answer.status == 200, (url, route)
    assert settings["COUPONS_URL"] == found["gateway"][0]
    assert settings[local.ALLOCATOR_URL] == found["allocator"][0]
    assert settings["NOTIFIER_PUBLIC_URL"] == found["notifier"][0]


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


def _lines(process: "subprocess.Popen[str]") -> "tuple[queue.Queue[str | None], threading.Thread]":
    """The process's output, line by line, read beside the test (bounded waits below); None
    when it ends."""
    out: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            out.put(line)
        out.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return out, reader


def _until(lines: "queue.Queue[str | None]", wanted: str, timeout_s: float = WAIT_S) -> str:
    """Everything said up to and including the line holding `wanted` (at most `timeout_s`)."""
    said, deadline = "", time.monotonic() + timeout_s
    while wanted not in said:
        left_s = deadline - time.monotonic()
        assert left_s > 0, f"never said {wanted!r}; said:\n{said}"
        try:
            line = lines.get(timeout=left_s)
        except queue.Empty:
            continue
        if line is None:
            lines.put(None)  # for the next look too
            raise AssertionError(f"ended without saying {wanted!r}; said:\n{said}")
        said += line
    return said
