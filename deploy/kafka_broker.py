"""Apache Kafka beside Tansu: one pinned version, run from its own jars with this machine's
Java, as one KRaft node (broker and controller in one process) or a cluster of three, on
free loopback ports.

The jars are resolved once with Maven (deploy/kafka/pom.xml) into a cache folder
(COUPONS_KAFKA_CACHE, else ~/.cache/coupons/kafka-<version>); later starts need nothing
from outside. A node's folder is formatted the first time and kept: started again on the
same folder, the node has every log it had (what Tansu, in memory, cannot). Every node:
no wait before a group's first rebalance, sessions as short as a second, no topic made by
a client asking for it. One node: replication 1 everywhere, a heap that leaves room on a
two-core machine for PostgreSQL, the parts and the tests. A cluster (`start_cluster`):
three nodes, each broker and controller (a controller quorum of three), internal topics
and new topics' defaults at replication 3 with 2 in sync, a smaller heap and fewer threads
each, and a dead broker fenced within seconds; `KafkaCluster.kill` and `.start` take one
node down (SIGKILL) and bring it back on its folder. Which node leads a partition and
which controller is active are asked of the cluster (`partition_leader`,
`active_controller`).

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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.metadata import MetadataRequest
from aiokafka.protocol.types import (
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Int64,
    Schema,
    TaggedFields,
)

from deploy.embedded import (
    STOP_GRACE_S_DEFAULT,
    Broker,
    Process,
    _claim_port,
    free_port,
    free_ports,
    spawn,
    stop_together,
    wait_ready,
)
from runtime.errors import CouponsError

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.4.0"  # deploy/kafka/pom.xml's kafka.version
HERE = Path(__file__).with_name("kafka")
JVM = ["-Xms128m", "-Xmx512m", "-XX:+UseG1GC"]
# COUPONS_KAFKA_JVM_OPTS (words split at spaces) replaces JVM for a single node: the test
# suite gives its brokers (and the `coupons dev` it starts) LIGHT_JVM, which spends less
# CPU on compiling a broker that lives minutes.
JVM_OPTS_VARIABLE = "COUPONS_KAFKA_JVM_OPTS"
# Three of these beside PostgreSQL, the parts and the tests on a two-core machine shared
# with others: a node of the fault tests' cluster holds a few small topics, far below this
# heap, and the client-side compiler only and a one-thread collector spare the CPU that
# three JVMs starting (and one starting again under load) would otherwise fight over.
CLUSTER_JVM = ["-Xms64m", "-Xmx320m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]
LIGHT_JVM = ["-Xms64m", "-Xmx384m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]
CLUSTER_NODES = 3
CLUSTER_IN_SYNC_MIN = 2  # min.insync.replicas: one node may die and writes go on
RESOLVE_TIMEOUT_S = 900.0  # a first resolve downloads about 40 MB
FORMAT_TIMEOUT_S = 60.0
READY_TIMEOUT_S = 90.0
ADMIN_TIMEOUT_MS = 5_000  # a question to the cluster, one node of it maybe dead
STARTED = b"Kafka Server started"  # KafkaRaftServer's line once it serves clients
METADATA_TOPIC = "__cluster_metadata"  # the controllers' Raft log: its leader is active


class KafkaUnavailable(CouponsError):
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


@dataclass
class KafkaNode:
    """One KRaft node, broker and controller: its folder and ports are kept, so it starts
    again as itself."""

    node_id: int
    data_dir: Path
    port: int
    voters: dict[int, int]  # every controller's node id: its controller port, this one's too
    process: Process | None = None  # the last one started

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def clustered(self) -> bool:
        return len(self.voters) > 1

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.popen.poll() is None


def start_kafka(
    data_dir: Path, port: int | None = None, ready_timeout_s: float = READY_TIMEOUT_S
) -> Broker:
    """A KRaft node in `data_dir`, formatted the first time, ready to serve."""
    libs = resolve()
    node = KafkaNode(1, data_dir.resolve(), _claim_port(port), {1: free_port()})
    _prepare(libs, [node], _cluster_id(node.data_dir))
    _launch(libs, node)(ready_timeout_s)
    assert node.process
    return Broker(process=node.process, bootstrap_servers=node.address)


@dataclass
class KafkaCluster:
    """KRaft nodes, each broker and controller, started by this process."""

    libs: Path
    nodes: list[KafkaNode] = field(default_factory=list)

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.address for node in self.nodes)

    def node(self, node_id: int) -> KafkaNode:
        (found,) = [node for node in self.nodes if node.node_id == node_id]
        return found

    def kill(self, node_id: int) -> None:
        """SIGKILL a node: no controlled shutdown, nothing handed over, what it had not
        written left to the kernel. The others notice only by its silence."""
        node = self.node(node_id)
        assert node.running and node.process, f"node {node_id} is not running"
        node.process.kill()

    def start(self, node_id: int, ready_timeout_s: float = READY_TIMEOUT_S) -> None:
        """A stopped node started again on its folder and ports, ready: caught up with the
        cluster's metadata and serving (its replicas may still be catching up)."""
        self.launch(node_id)(ready_timeout_s)

    def launch(self, node_id: int) -> Callable[[float], None]:
        """`start` in two steps: the process started now, from this thread (a child started
        from the main thread dies with this process), and what waits until it is ready, for
        another thread to run (at most the seconds it is given)."""
        node = self.node(node_id)
        assert not node.running, f"node {node_id} still runs"
        return _launch(self.libs, node)

    def stop(self, grace_s: float = STOP_GRACE_S_DEFAULT) -> list[Process]:
        """Every running node asked to stop at once, killed if still running `grace_s`
        later; those that had to be killed."""
        running = [node.process for node in self.nodes if node.running and node.process]
        return stop_together(running, grace_s)


def start_cluster(
    root: Path, nodes: int = CLUSTER_NODES, ready_timeout_s: float = READY_TIMEOUT_S
) -> KafkaCluster:
    """`nodes` KRaft nodes in folders node-1... under `root`, each broker and controller,
    formatted the first time, all ready. They start together: none is ready before a
    majority of the controllers has elected a leader."""
    libs = resolve()
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    ports = free_ports(2 * nodes)
    voters = {n: ports[2 * n - 1] for n in range(1, nodes + 1)}
    cluster = KafkaCluster(libs)
    for n in voters:
        cluster.nodes.append(KafkaNode(n, root / f"node-{n}", ports[2 * n - 2], voters))
    try:
        _prepare(libs, cluster.nodes, _cluster_id(root))
        waits = [_launch(libs, node) for node in cluster.nodes]
        deadline = time.monotonic() + ready_timeout_s
        for wait in waits:
            wait(max(0.0, deadline - time.monotonic()))
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _prepare(libs: Path, nodes: list[KafkaNode], cluster_id: str) -> None:
    """Each node's settings written, and its log folder formatted once (all at once: each
    format is a JVM's start)."""
    formats: list[tuple[KafkaNode, subprocess.Popen[str]]] = []
    deadline = time.monotonic() + FORMAT_TIMEOUT_S
    try:
        for node in nodes:
            node.data_dir.mkdir(parents=True, exist_ok=True)
            properties = node.data_dir / "server.properties"
            properties.write_text(_settings(node))
            if not (node.data_dir / "logs" / "meta.properties").exists():
                argv = ["java", "-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp", f"{libs}/*",
                        "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                        "-c", str(properties), "--ignore-formatted"]  # fmt: skip
                formatting = subprocess.Popen(
                    argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
                )
                formats.append((node, formatting))
        for node, formatting in formats:
            said, _ = formatting.communicate(timeout=max(0.0, deadline - time.monotonic()))
            if formatting.returncode != 0:
                raise RuntimeError(f"formatting {node.data_dir} failed: {said}")
    finally:
        for _, formatting in formats:
            if formatting.poll() is None:
                formatting.kill()
                formatting.wait()


def _launch(libs: Path, node: KafkaNode) -> Callable[[float], None]:
    """The node's process started; what waits (at most the seconds given) until it serves."""
    log_path = node.data_dir / "kafka.log"
    offset = log_path.stat().st_size if log_path.exists() else 0
    jvm = CLUSTER_JVM if node.clustered else os.environ.get(JVM_OPTS_VARIABLE, "").split() or JVM
    properties = node.data_dir / "server.properties"
    argv = ["java", *jvm, "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={HERE / 'log4j2.properties'}",
            "-cp", f"{libs}/*", "kafka.Kafka", str(properties)]  # fmt: skip
    name = f"kafka-{node.node_id}" if node.clustered else "kafka"
    process = spawn(name, argv, log_path, signal.SIGTERM, cwd=node.data_dir)
    node.process = process

    def wait(timeout_s: float) -> None:
        wait_ready(process, lambda: _said(log_path, offset, STARTED), timeout_s)

    return wait


def _settings(node: KafkaNode) -> str:
    replicas = min(len(node.voters), CLUSTER_NODES)
    in_sync = min(replicas, CLUSTER_IN_SYNC_MIN)
    voters = ",".join(f"{n}@127.0.0.1:{port}" for n, port in sorted(node.voters.items()))
    controller = node.voters[node.node_id]
    return "\n".join(
        [
            "process.roles=broker,controller",
            f"node.id={node.node_id}",
            f"controller.quorum.voters={voters}",
            f"listeners=PLAINTEXT://{node.address},CONTROLLER://127.0.0.1:{controller}",
            f"advertised.listeners=PLAINTEXT://{node.address}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={node.data_dir / 'logs'}",
            "num.partitions=1",
            f"default.replication.factor={replicas}",
            f"min.insync.replicas={in_sync}",
            f"offsets.topic.replication.factor={replicas}",
            "offsets.topic.num.partitions=4",
            f"transaction.state.log.replication.factor={replicas}",
            f"transaction.state.log.min.isr={in_sync}",
            f"share.coordinator.state.topic.replication.factor={replicas}",
            f"share.coordinator.state.topic.min.isr={in_sync}",
            "group.initial.rebalance.delay.ms=0",
            # The fault tests drop a frozen allocator after a 3 s session; Kafka's own
            # floor is 6 s (a shorter session is refused, InvalidSessionTimeoutError).
            "group.min.session.timeout.ms=1000",
            "auto.create.topics.enable=false",
            *(CLUSTER_SETTINGS if node.clustered else []),
            "",
        ]
    )


# A cluster on a small machine: fewer threads than Kafka's defaults (sized for a server of
# its own), and a SIGKILLed broker fenced (its partitions led elsewhere, dropped from
# every in-sync set) after 4 s of silence rather than Kafka's 9.
CLUSTER_SETTINGS = [
    "num.network.threads=2",
    "num.io.threads=2",
    "background.threads=2",
    "broker.heartbeat.interval.ms=1000",
    "broker.session.timeout.ms=4000",
]


def _cluster_id(folder: Path) -> str:
    """The cluster id kept in `folder`, made the first time as Kafka makes them: a UUID,
    base64 without padding, never starting with "-" (Kafka's Uuid.randomUuid draws again
    too: kafka-storage would read one as an option; one in 64 did, and formatting failed)."""
    kept = folder / "cluster.id"
    if not kept.exists():
        folder.mkdir(parents=True, exist_ok=True)
        made = "-"
        while made.startswith("-"):
            made = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        kept.write_text(made)
    return kept.read_text().strip()


def _said(log_path: Path, offset: int, words: bytes) -> bool:
    try:
        with log_path.open("rb") as log_file:
            log_file.seek(offset)
            return words in log_file.read()
    except OSError:
        return False


@dataclass(frozen=True)
class PartitionState:
    """A partition as the cluster's metadata says it now."""

    topic: str
    partition: int
    leader: int | None  # None while no node leads it
    replicas: tuple[int, ...]
    in_sync: tuple[int, ...]

    @property
    def caught_up(self) -> bool:
        return self.leader is not None and set(self.replicas) == set(self.in_sync)


async def partitions(bootstrap_servers: str, topics: list[str]) -> list[PartitionState]:
    """Every partition of `topics` (none of a topic the cluster does not know)."""
    answer = await _ask(bootstrap_servers, MetadataRequest(topics, False))
    return [
        PartitionState(
            found["topic"],
            each["partition"],
            each["leader"] if each["leader"] >= 0 and not each["error_code"] else None,
            tuple(each["replicas"]),
            tuple(each["isr"]),
        )
        for found in answer.to_object()["topics"]
        if not found["error_code"]
        for each in found["partitions"]
    ]


async def partition_leader(bootstrap_servers: str, topic: str, partition: int) -> int | None:
    """The node that leads a partition now; None while none does."""
    found = await partitions(bootstrap_servers, [topic])
    return next((p.leader for p in found if p.partition == partition), None)


async def out_of_sync(bootstrap_servers: str, topics: list[str]) -> list[str]:
    """The partitions of `topics` (as topic[partition], or a topic unknown) led by no node
    or with a replica not in sync: none once every replica has caught up."""
    found = await partitions(bootstrap_servers, topics)
    unknown = sorted(set(topics) - {p.topic for p in found})
    return unknown + [f"{p.topic}[{p.partition}]" for p in found if not p.caught_up]


async def active_controller(bootstrap_servers: str) -> int | None:
    """The active controller's node id: the leader of the controllers' Raft log, as a
    broker says it (DescribeQuorum, which it forwards to the controllers); None while the
    controllers have no leader. aiokafka has no call for it: its request is below. (A
    KRaft broker's metadata names a random broker as the controller, not the active one.)"""
    answer = await _ask(bootstrap_servers, DescribeQuorumRequest())
    (topic,) = answer.to_object()["topics"]
    (partition,) = topic["partitions"]
    leader = int(partition["leader_id"])
    return None if answer.error_code or partition["error_code"] or leader < 0 else leader


async def _ask(bootstrap_servers: str, request: Any) -> Any:
    """The answer of the first node that gives one: any may be dead, and until the
    cluster has fenced it the metadata still lists it."""
    client = AIOKafkaClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=ADMIN_TIMEOUT_MS
    )
    try:
        await client.bootstrap()
        failures = []
        for node in sorted(client.cluster.brokers(), key=lambda node: node.nodeId):
            try:
                return await client.send(node.nodeId, request)
            except (KafkaError, OSError) as error:
                failures.append(f"node {node.nodeId}: {error!r}")
        raise KafkaConnectionError(f"no node answered: {'; '.join(failures)}")
    finally:
        await client.close()


def _replicas() -> CompactArray:
    return CompactArray(("replica_id", Int32), ("log_end_offset", Int64),
                        ("last_fetch_timestamp", Int64), ("last_caught_up_timestamp", Int64),
                        ("tags", TaggedFields))  # fmt: skip


class DescribeQuorumResponse_v1(Response):  # type: ignore[misc]  # aiokafka is untyped
    API_KEY = 55
    API_VERSION = 1
    SCHEMA = Schema(
        ("error_code", Int16),
        ("topics", CompactArray(
            ("topic_name", CompactString("utf-8")),
            ("partitions", CompactArray(
                ("partition_index", Int32), ("error_code", Int16), ("leader_id", Int32),
                ("leader_epoch", Int32), ("high_watermark", Int64),
                ("current_voters", _replicas()), ("observers", _replicas()),
                ("tags", TaggedFields),
            )),
            ("tags", TaggedFields),
        )),
        ("tags", TaggedFields),
    )  # fmt: skip


class DescribeQuorumRequest_v1(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 55
    API_VERSION = 1
    RESPONSE_TYPE = DescribeQuorumResponse_v1
    SCHEMA = Schema(
        ("topics", CompactArray(
            ("topic_name", CompactString("utf-8")),
            ("partitions", CompactArray(("partition_index", Int32), ("tags", TaggedFields))),
            ("tags", TaggedFields),
        )),
        ("tags", TaggedFields),
    )  # fmt: skip


class DescribeQuorumRequest(Request[DescribeQuorumRequest_v1]):  # type: ignore[misc]
    """DescribeQuorum of the controllers' Raft log (the metadata topic's one partition)."""

    API_KEY = 55

    def build(self, request_struct_class: type[DescribeQuorumRequest_v1]) -> Any:
        return request_struct_class([(METADATA_TOPIC, [(0, {})], {})], {})


def main() -> int:
    """`python -m deploy.kafka_broker`: exit 0 if Apache Kafka can run here; otherwise say
    why in one line and exit 1 (`make test` runs the Kafka half only when it can)."""
    why = missing()
    if why is not None:
        print(why)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
