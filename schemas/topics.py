"""Topic names: the only names the parts share about Kafka.

Every topic name carries a prefix so that several stacks (or several tests) can
share one broker without seeing each other's messages.
"""

from dataclasses import dataclass
from functools import lru_cache

from aiokafka.partitioner import murmur2


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str = ""

    @property
    def commands(self) -> str:
        """Claims, coupon creations and the allocator's own follow-up commands."""
        return f"{self.prefix}coupon.commands"

    @property
    def decisions(self) -> str:
        """Every final decision, published by the allocator after it is durable."""
        return f"{self.prefix}coupon.decisions"

    @property
    def status(self) -> str:
        """Latest state of each coupon (compacted in a real cluster), for edge answers."""
        return f"{self.prefix}coupon.status"

    @property
    def edge(self) -> str:
        """How many claims each gateway answered without the log, per coupon and second."""
        return f"{self.prefix}coupon.edge"

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
