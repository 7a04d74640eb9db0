"""Apache Kafka as production runs it: three KRaft nodes, each broker and controller, the
stack's topics at replication 3 with 2 in sync, producers idempotent. Under a steady claim
load on a coupon with the daily rule (each claim also touches its person's partition),
the node leading the coupon's command partition is SIGKILLed, then the active controller,
each started again on its folder once claims are decided again. Everyone is answered, the
count is granted exactly, nobody twice, nobody told "granted" without the grant stored,
and the database still matches the command log. Apache Kafka only: Tansu is one node."""

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import aiohttp
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from deploy.embedded import Broker, start_postgres
from deploy.kafka_broker import (
    KafkaCluster,
    active_controller,
    out_of_sync,
    partition_leader,
    partitions,
    start_cluster,
)
from deploy.stack import Infra
from schemas.topics import Topics, partition_of
from tests.support.client import (
    PARTITIONS,
    POLL_INTERVAL_S,
    create_coupon,
    grants_of,
    replay,
    wait_for_grants,
)
from tests.support.client import session as client_session
from tests.support.load import Outcome, check, claim_until_answered, report, stored_grants
from tests.support.stack import Stack, broker_kind

pytestmark = [
    pytest.mark.integration,
    pytest.mark.only_on("kafka"),  # deselected in the Tansu half (tests/conftest.py)
    pytest.mark.stack_env(
        KAFKA_REPLICATION_FACTOR="3", KAFKA_MIN_INSYNC_REPLICAS="2", KAFKA_ENABLE_IDEMPOTENCE="1"
    ),
]

# Claims started a second while the nodes die and come back: each is a person of their
# own, so each is granted; the coupon is sold out only at the end, on purpose.
RATE_PER_S = 10
COUNT = 2500  # more than RATE_PER_S claims a second can take in the test's time
DECIDED_AGAIN_S_MAX = 60.0  # after a kill, until a claim sent since is decided
CAUGHT_UP_S_MAX = 120.0  # a node started again: until it is ready and every replica in sync
SELL_OUT_EXTRA = 100  # claims beyond what is left, at the end: some are told sold out
INTERNAL_TOPICS = ["__consumer_offsets"]  # where the allocators' group is coordinated
MIN_IN_SYNC = "min.insync.replicas"


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[KafkaCluster]:
    broker_kind(pytestconfig)  # one line and an exit without Java
    started = start_cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def infra(cluster: KafkaCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    """The stack fixture's broker and PostgreSQL: the cluster (its bootstrap servers name
    every node; the process given is node 1's first, which this test kills or not)."""
    root = tmp_path_factory.mktemp("infra")
    postgres = start_postgres(root / "postgres")
    try:
        first = cluster.nodes[0].process
        assert first
        yield Infra(Broker(first, cluster.bootstrap_servers), postgres, root, "kafka")
    finally:
        postgres.process.stop()


@pytest.mark.timeout(600)  # three JVMs to start on a small machine, two kills, two restarts
async def test_the_partition_leader_then_the_active_controller_killed_mid_load(
    stack: Stack, cluster: KafkaCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    servers = cluster.bootstrap_servers
    topics = Topics(stack.env["COUPONS_TOPIC_PREFIX"])
    every_topic = [topics.commands, topics.decisions, topics.status, topics.edge]
    async with client_session(256, 60) as http:
        coupon = (await create_coupon(http, stack, COUNT))["id"]  # the daily rule on
        partition = partition_of(coupon, PARTITIONS)
        await caught_up(servers, every_topic + INTERNAL_TOPICS)
        assert {len(p.replicas) for p in await partitions(servers, every_topic)} == {3}
        assert await min_in_sync(servers, every_topic) == {"2"}
        stop = asyncio.Event()
        load = asyncio.create_task(claims_until(http, stack, coupon, stop))
        try:
            await wait_for_grants(stack, coupon, RATE_PER_S, timeout_s=60)
            leader = await partition_leader(servers, topics.commands, partition)
            assert leader is not None
            after_leader = await kill_and_restart(stack, cluster, coupon, leader, every_topic)
            controller = await active_controller(servers)
            assert controller is not None
            after_controller = await kill_and_restart(
                stack, cluster, coupon, controller, every_topic
            )
        except BaseException:
            load.cancel()
            raise
        finally:
            stop.set()
        outcomes = await load
        granted = (await grants_of(stack, coupon))[0]
        assert granted < COUNT, "sold out before the kills were over: nothing was tested"
        outcomes += await asyncio.gather(*(
            claim_until_answered(http, stack, [stack.gateway_url], coupon, f"last{i}")
            for i in range(COUNT - granted + SELL_OUT_EXTRA)
        ))  # fmt: skip
    figures = check(outcomes, await stored_grants(stack, coupon), COUNT)
    status, proved = await asyncio.to_thread(replay, stack)
    assert status == 0 and ", 0 mismatch" in proved, proved
    with capsys.disabled():
        report(
            "three Kafka nodes, replication 3, 2 in sync",
            f"partition {partition}'s leader (node {leader}) SIGKILLed: {after_leader}; "
            f"then the active controller (node {controller}): {after_controller}; "
            f"{granted} granted by then",
            figures,
            started,
        )


async def claims_until(
    http: aiohttp.ClientSession, stack: Stack, coupon: str, stop: asyncio.Event
) -> list[Outcome]:
    """Careful clients started at RATE_PER_S, each a person of their own, until `stop`;
    the outcomes of them all."""
    begun = time.monotonic()
    running: list[asyncio.Task[Outcome]] = []
    try:
        while not stop.is_set():
            user = f"k{len(running)}"
            running.append(asyncio.create_task(
                claim_until_answered(http, stack, [stack.gateway_url], coupon, user)
            ))  # fmt: skip
            delay = begun + len(running) / RATE_PER_S - time.monotonic()
            await asyncio.sleep(max(0.0, delay))
        return list(await asyncio.gather(*running))
    finally:
        for claim in running:
            claim.cancel()  # those not done: only when the test failed


async def kill_and_restart(
    stack: Stack, cluster: KafkaCluster, coupon: str, node: int, topics: list[str]
) -> str:
    """SIGKILL a node; once a claim sent since is decided, start it again on its folder
    and wait until every replica is back in sync. What took how long, said."""
    killed_at = datetime.now(UTC)
    cluster.kill(node)
    decided_s = await decided_again(stack, coupon, killed_at)
    launched = time.monotonic()
    wait = cluster.launch(node)  # from this, the main, thread: it dies with the tests
    await asyncio.to_thread(wait, CAUGHT_UP_S_MAX)
    ready_s = time.monotonic() - launched
    await caught_up(cluster.bootstrap_servers, topics + INTERNAL_TOPICS)
    in_sync_s = time.monotonic() - launched
    return (
        f"claims decided again in {decided_s:.1f} s, the node started again ready in "
        f"{ready_s:.1f} s and in sync in {in_sync_s:.1f} s"
    )


async def decided_again(stack: Stack, coupon: str, since: datetime) -> float:
    """Seconds from `since` until a claim the gateway took after it was decided (stored)."""
    deadline = time.monotonic() + DECIDED_AGAIN_S_MAX
    while True:
        first = await stack.fetchval(
            "SELECT min(committed_at) FROM decisions WHERE coupon_id = $1 AND decided_at > $2",
            coupon,
            since,
        )
        if first is not None:
            return float((first - since).total_seconds())
        if time.monotonic() > deadline:
            (allocator,) = stack.allocators
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"{allocator.url}/partitions") as said,
            ):
                owned = await said.text()
            raise AssertionError(f"no claim decided {DECIDED_AGAIN_S_MAX} s after; {owned}")
        await asyncio.sleep(POLL_INTERVAL_S)


async def min_in_sync(servers: str, topics: list[str]) -> set[str]:
    """The min.insync.replicas of `topics`, as the cluster has them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        asked = [ConfigResource(ConfigResourceType.TOPIC, t, {MIN_IN_SYNC: None}) for t in topics]
        answers = await admin.describe_configs(asked)
    finally:
        await admin.close()
    return {
        entry[1]
        for answer in answers
        for resource in answer.resources
        for entry in resource[4]
        if entry[0] == MIN_IN_SYNC
    }


async def caught_up(servers: str, topics: list[str]) -> None:
    """Until every replica of `topics` is in sync."""
    deadline = time.monotonic() + CAUGHT_UP_S_MAX
    while lagging := await out_of_sync(servers, topics):
        assert time.monotonic() < deadline, f"replicas not in sync: {lagging[:5]}"
        await asyncio.sleep(POLL_INTERVAL_S * 10)
