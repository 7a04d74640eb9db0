"""Topic names: the only names the parts share about Kafka.

Every topic name carries a prefix so that several stacks (or several tests) can
share one broker without seeing each other's messages.
"""

from dataclasses import dataclass
from functools import lru_cache

from aiokafka.partitioner import murmur2


class _Topic:
    """One of the stack's topics, as an attribute of Topics: the prefix, then `coupon.`
    and the attribute's own name."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = f"coupon.{name}"

    def __get__(self, topics: "Topics", owner: type) -> str:
        return topics.prefix + self.name


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str = ""

    # <prefix>coupon.commands: claims, coupon creations and the allocator's own
    # follow-up commands.
    commands = _Topic()
    # <prefix>coupon.decisions: every final decision, published by the allocator after it
    # is durable.
    decisions = _Topic()
    # <prefix>coupon.status: the latest state of each coupon (compacted in a real
    # cluster), for edge answers.
    status = _Topic()
    # <prefix>coupon.edge: how many claims each gateway answered without the log, per
    # coupon and second.
    edge = _Topic()

    def replies(self, gateway_id: str) -> str:
        """One gateway's answers, forwarded by the notifier."""
        return f"{self.prefix}coupon.replies.{gateway_id}"


def coupon_key(coupon_id: str) -> bytes:
    """Commands about one coupon share a key, so one partition orders them."""
    return coupon_id.encode()


def user_key(user_id: str) -> bytes:
    """Commands about one person's daily quota share a key of their own."""
    return b"user:" + user_id.encode()


@lru_cache(maxsize=65_536)
def partition_for(key: bytes, partitions: int) -> int:
    """The partition the producer's default partitioner picks for a key (remembered:
    murmur2 is pure Python, and a hot coupon's key comes back thousands of times)."""
    hashed: int = murmur2(key)
    return (hashed & 0x7FFFFFFF) % partitions


def partition_of(coupon_id: str, partitions: int) -> int:
    """The partition of a coupon's commands."""
    return partition_for(coupon_key(coupon_id), partitions)
