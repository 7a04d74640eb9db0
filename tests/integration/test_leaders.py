"""A reader stuck on a partition leader that is gone (runtime/leaders.py).

The wedge of aio-libs/aiokafka#712, made by hand on a real broker: the reader's metadata
names a node that does not exist as the partition's leader, and its shared metadata
refresh never ends (its metadata task is stopped). Every fetch then goes to that node,
and the refresh each failure asks for is the one that never ends: the reader reads
nothing. That is what one run in eight of the three-node fault test
(tests/faults/test_cluster.py) showed after the leader was SIGKILLed. The leader watch
sees the cluster name another leader at two looks in a row, replaces the reader's
metadata, and the records are read."""

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import REGISTRY

from deploy.stack import Infra
from runtime import leaders

pytestmark = pytest.mark.integration

GONE_NODE = 9_999  # no broker of the cluster has this id
RECORDS = 5
WEDGED_S = 2.0  # read for this long without the watch: nothing may come
READ_AGAIN_S_MAX = 30.0  # with the watch: every record within this


def _replaced() -> float:
    return REGISTRY.get_sample_value("coupons_kafka_leaders_replaced_total") or 0.0


async def _read(reader: AIOKafkaConsumer, tp: TopicPartition, want: int, for_s: float) -> int:
    deadline = time.monotonic() + for_s
    read = 0
    while read < want and time.monotonic() < deadline:
        read += len((await reader.getmany(tp, timeout_ms=100)).get(tp, []))
    return read


async def test_a_reader_wedged_on_a_gone_leader_reads_again(
    infra: Infra, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(leaders, "LEADERS_CHECK_S", 0.5)
    bootstrap = infra.broker.bootstrap_servers
    tp = TopicPartition(f"leaders-{uuid.uuid4().hex[:8]}", 0)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(tp.topic, 1, 1)])
    finally:
        await admin.close()
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await reader.start()
    await producer.start()
    try:
        reader.assign([tp])
        client = reader._client
        while client.cluster.leader_for_partition(tp) in (None, -1):
            await client.force_metadata_update()  # until the reader knows the real leader
        # The refresh that never ends: the client's metadata task stopped (a refresh it had
        # under way could otherwise still land, as it did on Tansu).
        client._sync_task.cancel()
        await asyncio.gather(client._sync_task, return_exceptions=True)
        real = client.cluster._partitions[tp.topic][tp.partition]
        client.cluster._partitions[tp.topic][tp.partition] = real._replace(leader=GONE_NODE)
        for i in range(RECORDS):
            await producer.send_and_wait(tp.topic, f"r{i}".encode(), partition=tp.partition)

        assert await _read(reader, tp, RECORDS, WEDGED_S) == 0, "the wedge did not hold"
        replaced = _replaced()
        watching = asyncio.create_task(leaders.watch(reader, "test reader"))
        try:
            read = await _read(reader, tp, RECORDS, READ_AGAIN_S_MAX)
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
        assert read == RECORDS, f"{read} of {RECORDS} records read with the watch"
        assert _replaced() == replaced + 1
        assert client.cluster.leader_for_partition(tp) == real.leader
    finally:
        await producer.stop()
        await reader.stop()
