"""The outbox: a batch's outgoing messages, kept in the partition's row until published.

Framed bytes (lengths, then topic, key and value), not JSON: values are JSON already, and
escaping a whole batch of them again cost more than deciding it.
"""

import struct

from allocator.core.effects import Effects
from runtime.produce import Message
from schemas.messages import ReleaseDay, ReserveDay, encode
from schemas.topics import Topics, coupon_key, user_key

FRAME = struct.Struct(">HII")


def messages(effects: Effects, topics: Topics) -> list[Message]:
    """What a batch publishes: its decisions (and echoes of earlier ones), the statuses of
    the coupons it changed, and the commands it sends on (a day asked for or given back
    goes to the person's partition)."""
    out: list[Message] = []
    for row in effects.decisions:
        decision = row.decision
        out.append((topics.decisions, coupon_key(decision.coupon_id), encode(decision)))
    for echo in effects.echoes:
        out.append((topics.decisions, coupon_key(echo.coupon_id), encode(echo)))
    for status in effects.changed.values():
        out.append((topics.status, coupon_key(status.coupon_id), encode(status)))
    for command in effects.commands:
        key = (
            user_key(command.user_id)
            if isinstance(command, ReserveDay | ReleaseDay)
            else coupon_key(command.coupon_id)
        )
        out.append((topics.commands, key, encode(command)))
    return out


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
