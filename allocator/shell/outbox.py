"""The outbox: a batch's outgoing messages, kept in the partition's row until published.

Framed bytes (lengths, then topic, key and value), not JSON: values are JSON already, and
escaping a whole batch of them again cost more than deciding it.
"""

import asyncio
import logging
import struct

from aiokafka import AIOKafkaProducer

from allocator.core.effects import Effects
from allocator.shell import readiness
from allocator.shell.readiness import Unready
from runtime import errors
from runtime.produce import Message, send_all
from schemas.messages import ReleaseDay, ReserveDay, encode
from schemas.topics import Topics, coupon_key, user_key

log = logging.getLogger(__name__)

FRAME = struct.Struct(">HII")
PUBLISH_BACKOFF_S_MAX = 2.0


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


class Publisher:
    """Publishes until the broker has every message; a crash meanwhile replays the outbox.
    An outage is waited out (the allocator says it is not ready while it lasts); a refusal
    of what a message is (none can be too large: schemas/messages.py bounds them) is raised,
    never retried as an outage."""

    def __init__(self, producer: AIOKafkaProducer, unready: Unready) -> None:
        self.producer = producer
        self.unready = unready

    async def __call__(self, messages: list[Message]) -> None:
        attempt = 0
        while True:
            try:
                await send_all(self.producer, messages)
                break
            except Exception as error:
                if not errors.retriable(error):
                    raise
                attempt += 1
                self.unready.say(readiness.BROKER, f"broker: {errors.said(error)}")
                log.warning("publish failed (%s); attempt %d", errors.said(error), attempt)
                await asyncio.sleep(min(PUBLISH_BACKOFF_S_MAX, 0.1 * attempt))
        self.unready.clear(readiness.BROKER)
