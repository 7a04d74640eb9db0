"""Batched producing against the real broker: every sender learns its own message's offset,
and the log holds exactly what was acknowledged, where it was acknowledged."""

import asyncio
import time
import uuid

from aiokafka import TopicPartition

from deploy.stack import Infra
from runtime import kafka
from runtime.produce import Batcher, send_all
from runtime.settings import Settings
from schemas.topics import partition_for

PARTITIONS = 3
READ_IDLE_S = 5.0


def settings(infra: Infra) -> Settings:
    return Settings.from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": infra.broker.bootstrap_servers,
            "DATABASE_URL": infra.postgres.url,
            "COUPONS_JWT_SECRET": "unused-by-this-test",
        }
    )


async def read_back(config: Settings, topic: str, expected: int) -> dict[tuple[int, int], bytes]:
    """The topic's messages by (partition, offset): reads until `expected` are in or it has
    read nothing new for READ_IDLE_S. (Not until the end offsets: the embedded broker
    reports a partition's end as its last batch's first offset + 1.)"""
    consumer = kafka.consumer(config)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(parts)
        for part in parts:
            await consumer.seek_to_beginning(part)
        found: dict[tuple[int, int], bytes] = {}
        idle_since = time.monotonic()
        while len(found) < expected and time.monotonic() - idle_since < READ_IDLE_S:
            for tp, messages in (await consumer.getmany(timeout_ms=200)).items():
                found.update({(tp.partition, m.offset): m.value or b"" for m in messages})
                idle_since = time.monotonic()
        return found
    finally:
        await consumer.stop()


def test_concurrent_senders_each_get_their_own_offset(infra: Infra) -> None:
    async def scenario() -> None:
        config = settings(infra)
        topic = f"produce-{uuid.uuid4().hex[:8]}"
        await kafka.ensure_topics(config, {topic: PARTITIONS})
        producer = kafka.producer(config)
        await producer.start()
        batcher = Batcher(producer)
        try:
            # Enough that some turns of the loop carry more than one batch per partition.
            values = [f"m{i}".encode() * 2_000 for i in range(600)]
            keys = [f"k{i % 37}".encode() for i in range(len(values))]
            offsets = await asyncio.gather(
                *(batcher.send(topic, k, v) for k, v in zip(keys, values, strict=True))
            )
            # Plus a list over every partition sent at once, the allocator's way.
            listed = [(topic, f"l{i}".encode(), f"listed-{i}".encode()) for i in range(60)]
            await send_all(producer, listed)
        finally:
            await batcher.stop()
            await producer.stop()
        stored = await read_back(config, topic, len(values) + len(listed))
        placed = {
            (partition_for(k, PARTITIONS), o): v
            for k, v, o in zip(keys, values, offsets, strict=True)
        }
        assert len(placed) == len(values)  # no two senders were told the same place
        assert {at: stored.get(at) for at in placed} == placed
        rest = sorted(v for at, v in stored.items() if at not in placed)
        assert rest == sorted(v for _, _, v in listed)
        print(f"batcher: {len(values)} concurrent sends, every offset its own message's")

    asyncio.run(scenario())
