"""The outbox: a batch's outgoing messages, kept in the partition's row until published.

Framed bytes (lengths, then topic, key and value), not JSON: values are JSON already, and
escaping a whole batch of them again cost more than deciding it.
"""

import struct

from aiokafka import AIOKafkaProducer

from schemas.topics import partition_for

Message = tuple[str, bytes, bytes]  # topic, key, value
FRAME = struct.Struct(">HII")


def pack(messages: list[Message]) -> bytes:
    parts = []
    for topic, key, value in messages:
        name = topic.encode()
        parts.append(FRAME.pack(len(name), len(key), len(value)))
        parts += (name, key, value)
    return b"".join(parts)


def unpack(stored: bytes) -> list[Message]:
    messages, at = [], 0
    while at < len(stored):
        topic_len, key_len, value_len = FRAME.unpack_from(stored, at)
        at += FRAME.size
        topic = stored[at : at + topic_len].decode()
        at += topic_len
        key = stored[at : at + key_len]
        at += key_len
        messages.append((topic, key, stored[at : at + value_len]))
        at += value_len
    return messages


async def send(producer: AIOKafkaProducer, messages: list[Message]) -> None:
    """Hand every message to the broker in batches per partition, in order; wait for all.
    One batch per partition instead of one send() per message: per-message sends from a
    busy loop are where aiokafka spends its time."""
    groups: dict[tuple[str, int], list[tuple[bytes, bytes]]] = {}
    partitions: dict[str, int] = {}
    for topic, key, value in messages:
        if topic not in partitions:
            partitions[topic] = len(await producer.partitions_for(topic))
        groups.setdefault((topic, partition_for(key, partitions[topic])), []).append((key, value))
    futures = []
    for (topic, partition), items in groups.items():
        batch = producer.create_batch()
        for key, value in items:
            if batch.append(key=key, value=value, timestamp=None) is None:
                batch.close()
                futures.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                appended = batch.append(key=key, value=value, timestamp=None)
                assert appended is not None, "a message larger than a whole batch"
        batch.close()
        futures.append(await producer.send_batch(batch, topic, partition=partition))
    for future in futures:
        await future
