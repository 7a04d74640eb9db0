"""Apache Kafka beside Tansu: one pinned version, run from its own jars with this machine's
Java, one KRaft node (broker and controller in one process) on free loopback ports.

The jars are resolved once with Maven (deploy/kafka/pom.xml) into a cache folder
(COUPONS_KAFKA_CACHE, else ~/.cache/coupons/kafka-<version>); later starts need nothing
from outside. A node's folder is formatted the first time and kept: started again on the
same folder, the broker has every log it had (what Tansu, in memory, cannot). Settings are
for one node: replication 1 for the internal topics, no wait before a group's first
rebalance, sessions as short as a second, no topic made by a client asking for it, and a
heap that leaves room on a two-core machine for PostgreSQL, the parts and the tests.

Without Java, or without Maven before the jars are cached, `KafkaUnavailable` says what is
missing in one line.
"""

import base64
import logging
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

from deploy.embedded import Broker, _claim_port, free_port, spawn, wait_ready

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.4.0"  # deploy/kafka/pom.xml's kafka.version
HERE = Path(__file__).with_name("kafka")
HEAP = ["-Xms128m", "-Xmx512m"]
RESOLVE_TIMEOUT_S = 900.0  # a first resolve downloads about 40 MB
FORMAT_TIMEOUT_S = 60.0
READY_TIMEOUT_S = 90.0
STARTED = b"Kafka Server started"  # KafkaRaftServer's line once it serves clients


class KafkaUnavailable(RuntimeError):
    """Apache Kafka cannot be run here: what is missing, in one line."""


def cache() -> Path:
    given = os.environ.get("COUPONS_KAFKA_CACHE")
    root = Path(given) if given else Path.home() / ".cache" / "coupons"
    return root / f"kafka-{KAFKA_VERSION}"


def missing() -> str | None:
    """Why Apache Kafka cannot run here, or None."""
    if shutil.which("java") is None:
        return "Apache Kafka needs Java 17 or newer: `java` is not on the PATH"
    if not (cache() / "libs" / ".complete").exists() and shutil.which("mvn") is None:
        return (
            f"Apache Kafka {KAFKA_VERSION}'s jars are not in {cache()} and `mvn` (Maven), which"
            " would fetch them, is not on the PATH"
        )
    return None


def resolve() -> Path:
    """The folder of the broker's jars, resolved with Maven the first time."""
    why = missing()
    if why is not None:
        raise KafkaUnavailable(why)
    libs = cache() / "libs"
    if (libs / ".complete").exists():
        return libs
    staging = cache() / f"libs-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    argv = ["mvn", "-q", "-B", "-f", str(HERE / "pom.xml"), "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}"]  # fmt: skip
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=RESOLVE_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise KafkaUnavailable(
            f"Maven did not resolve Apache Kafka within {error.timeout} s"
        ) from None
    if done.returncode != 0:
        said = (done.stdout + done.stderr).strip().splitlines()
        raise KafkaUnavailable(f"Maven could not resolve Apache Kafka {KAFKA_VERSION}: "
                               f"{said[-1] if said else done.returncode}")  # fmt: skip
    (staging / ".complete").write_text(KAFKA_VERSION)
    if (libs / ".complete").exists():  # another process resolved them meanwhile
        shutil.rmtree(staging, ignore_errors=True)
    else:
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
    log.info("resolved Apache Kafka %s in %.1f s into %s", KAFKA_VERSION,
             time.monotonic() - started, libs)  # fmt: skip
    return libs


def start_kafka(
    data_dir: Path, port: int | None = None, ready_timeout_s: float = READY_TIMEOUT_S
) -> Broker:
    """A KRaft node in `data_dir`, formatted the first time, ready to serve."""
    libs = resolve()
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = _claim_port(port)
    properties = data_dir / "server.properties"
    properties.write_text(_settings(data_dir / "logs", port, free_port()))
    if not (data_dir / "logs" / "meta.properties").exists():
        _format(libs, properties, data_dir)
    log_path = data_dir / "kafka.log"
    offset = log_path.stat().st_size if log_path.exists() else 0
    argv = ["java", *HEAP, "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={HERE / 'log4j2.properties'}",
            "-cp", f"{libs}/*", "kafka.Kafka", str(properties)]  # fmt: skip
    process = spawn("kafka", argv, log_path, signal.SIGTERM, cwd=data_dir)
    wait_ready(process, lambda: _said(log_path, offset, STARTED), ready_timeout_s)
    return Broker(process=process, bootstrap_servers=f"127.0.0.1:{port}")


def _settings(logs: Path, port: int, controller: int) -> str:
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{controller}",
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={logs}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=4",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "group.initial.rebalance.delay.ms=0",
            # The fault tests drop a frozen allocator after a 3 s session; Kafka's own
            # floor is 6 s (a shorter session is refused, InvalidSessionTimeoutError).
            "group.min.session.timeout.ms=1000",
            "auto.create.topics.enable=false",
            "",
        ]
    )


def _format(libs: Path, properties: Path, data_dir: Path) -> None:
    """Format the node's log folder once, with a cluster id kept beside it."""
    kept = data_dir / "cluster.id"
    if not kept.exists():
        kept.write_text(_cluster_id())
    cluster = kept.read_text().strip()
    argv = ["java", "-Xmx256m", "-cp", f"{libs}/*", "kafka.tools.StorageTool", "format",
            "-t", cluster, "-c", str(properties), "--ignore-formatted"]  # fmt: skip
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=FORMAT_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"formatting {data_dir} failed: {done.stdout}{done.stderr}")


def _cluster_id() -> str:
    """A cluster id as Kafka makes them: a UUID, base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _said(log_path: Path, offset: int, words: bytes) -> bool:
    try:
        with log_path.open("rb") as log_file:
            log_file.seek(offset)
            return words in log_file.read()
    except OSError:
        return False
