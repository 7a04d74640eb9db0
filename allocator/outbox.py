"""The outbox: a batch's outgoing messages, kept in the partition's row until published.

Framed bytes (lengths, then topic, key and value), not JSON: values are JSON already, and
escaping a whole batch of them again cost more than deciding it.
"""

import struct

from runtime.produce import Message

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
