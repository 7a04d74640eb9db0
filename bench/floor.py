"""The floors under the replay's rate on this machine: the log alone, and storing the
decisions alone.

After the replay, one Python process reads the replay's commands from the start with the
allocator's consumer settings, decodes each as the allocator does, and writes one message
back for each (to a topic of its own), deciding and storing nothing. The CPU it and the
broker spend per record read and written is what any allocator of ours pays for moving a
record through the log before it decides anything; a replayed decision moves about two
(a claim read and its decision written; under the daily rule a winner also writes and
reads a ReserveDay and a DayReserved). Storing each decision's row, and nothing else, is
the other part no allocator can skip.
"""

import time
from typing import Any

import asyncpg
from aiokafka import TopicPartition

from bench import cpu
from runtime import kafka
from runtime.produce import send_all
from runtime.settings import Settings
from schemas import logmarks
from schemas.messages import decode_command
from schemas.topics import Topics

FLOOR_TIMEOUT_S = 120.0


async def log_alone(settings: Settings, records: int, broker_pid: int) -> dict[str, Any]:
    """Read `records` commands of the replay's log and write one message for each."""
    topics = Topics(settings.topic_prefix)
    out = f"{settings.topic_prefix}floor"
    await kafka.ensure_topics(settings, {out: settings.commands_partitions})
    consumer = kafka.consumer(settings, max_records=settings.batch_records_max)
    producer = kafka.producer(settings)
    await consumer.start()
    await producer.start()
    try:
        # The replay's topics were made with this many (a consumer that subscribes to none
        # knows no topic's partitions: Apache Kafka sends it no metadata for them).
        parts = [TopicPartition(topics.commands, p) for p in range(settings.commands_partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        moved, started = 0, time.monotonic()
        reader_before, broker_before = time.process_time(), cpu.of(broker_pid)
        while moved < records and time.monotonic() - started < FLOOR_TIMEOUT_S:
            batches = await consumer.getmany(timeout_ms=100, max_records=settings.batch_records_max)
            back = []
            for messages in batches.values():
                for message in messages:
                    if logmarks.is_mark(message.value):
                        continue  # the allocator's own marks: skipped there too
                    decode_command(message.value or b"")
                    back.append((out, message.key or b"", message.value or b""))
            moved += len(back)
            if back:
                await send_all(producer, back)
        seconds = time.monotonic() - started
        reader = time.process_time() - reader_before
        broker = cpu.of(broker_pid) - broker_before
    finally:
        await consumer.stop()
        await producer.stop()
    return {
        "records": moved,
        "seconds": round(seconds, 3),
        "reader_cpu_us_per_record": round(1e6 * reader / max(moved, 1), 1),
        "broker_cpu_us_per_record": round(1e6 * broker / max(moved, 1), 1),
    }


async def decisions_alone(database: str, batch: int, postgres_pid: int) -> dict[str, Any]:
    """Store the replay's decisions again, and nothing else: each batch of `batch` rows
    COPYed into a table like `decisions` (its indexes too) in a transaction of its own, as
    the allocator's batches are. A decision is durable before it is answered, so no
    allocator stores less than this row."""
    conn = await asyncpg.connect(database)
    try:
        found = await conn.fetch("SELECT * FROM decisions ORDER BY log_offset")
        names = list(found[0].keys()) if found else []
        rows = [tuple(r) for r in found]
        await conn.execute("CREATE TABLE decisions_floor (LIKE decisions INCLUDING ALL)")
        started = time.monotonic()
        before = cpu.of(postgres_pid)
        for at in range(0, len(rows), batch):
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "decisions_floor", columns=names, records=rows[at : at + batch]
                )
        spent = cpu.of(postgres_pid) - before
        seconds = time.monotonic() - started
        await conn.execute("DROP TABLE decisions_floor")
    finally:
        await conn.close()
    return {
        "rows": len(rows),
        "seconds": round(seconds, 3),
        "postgres_cpu_us_per_row": round(1e6 * spent / max(len(rows), 1), 1),
    }
