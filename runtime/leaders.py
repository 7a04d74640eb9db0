"""A reader's idea of who leads its partitions, checked against the cluster's own.

aiokafka asks for metadata again when a fetch fails, through one shared refresh
(`force_metadata_update`) that can stay pending for as long as the metadata's age, five
minutes (aio-libs/aiokafka#712): every fetch meanwhile goes to the leader it knew. With
three Apache Kafka nodes and the partition leader SIGKILLed under claims, about one run in
eight left the allocator fetching from the dead node and deciding nothing.

So a reader's leaders are compared, every LEADERS_CHECK_S, with what the cluster says when
asked directly (a request of our own, beside the shared refresh). A difference seen at two
checks in a row is no refresh on its way: the reader's metadata is then replaced with the
answer, and its fetches go to the leaders the cluster names. One metadata request per
reader every few seconds, for the reader's own topics only, is the whole cost.
"""

import asyncio
import logging
from collections.abc import Iterable, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.cluster import ClusterMetadata
from aiokafka.errors import KafkaConnectionError
from prometheus_client import Counter

from runtime import errors

log = logging.getLogger(__name__)

LEADERS_CHECK_S = 5.0
LEADERS_ASK_S = 10.0  # one look: its request bounded; a look that fails is tried at the next

REPLACED = Counter(
    "coupons_kafka_leaders_replaced_total",
    "Times a reader's partition leaders were replaced with the cluster's, as its own "
    "metadata refresh had not brought them",
)

Leaders = Mapping[TopicPartition, int | None]


def stale(
    ours: Leaders, cluster: Leaders, before: Iterable[TopicPartition]
) -> tuple[set[TopicPartition], set[TopicPartition]]:
    """The partitions whose leader differs now, and those of them that differed at the last
    look too (`before`): only these are taken to be stuck. A partition the cluster names no
    leader for (an election under way) is not compared."""
    differ = {
        tp for tp, leader in cluster.items() if leader not in (None, -1) and ours.get(tp) != leader
    }
    return differ, differ & set(before)


async def watch(reader: AIOKafkaConsumer, name: str) -> None:
    """For ever (cancel to stop): the reader's leaders checked, and replaced when stuck."""
    before: set[TopicPartition] = set()
    while True:
        await asyncio.sleep(LEADERS_CHECK_S)
        try:
            before = await asyncio.wait_for(_look(reader, name, before), LEADERS_ASK_S)
        except Exception as error:
            if not errors.known(error):
                raise
            log.info("%s: could not ask the cluster for leaders (%s)", name, errors.said(error))


async def _look(
    reader: AIOKafkaConsumer, name: str, before: set[TopicPartition]
) -> set[TopicPartition]:
    assigned = reader.assignment()
    if not assigned:
        return set()
    client = reader._client  # no public call asks for metadata apart from the shared refresh
    # The reader's topics only: fetch_all_metadata would ask for every topic on the broker
    # (hundreds, beside per-gateway reply topics), every few seconds, for each reader.
    fresh = ClusterMetadata()
    if not await client._metadata_update(fresh, {tp.topic for tp in assigned}):
        raise KafkaConnectionError("no node answered a metadata request")
    cluster = {tp: fresh.leader_for_partition(tp) for tp in assigned}
    ours = {tp: client.cluster.leader_for_partition(tp) for tp in assigned}
    differ, stuck = stale(ours, cluster, before)
    if stuck:
        moved = ", ".join(f"{tp.topic}[{tp.partition}] {ours[tp]}→{cluster[tp]}" for tp in stuck)
        log.warning("%s: its metadata still names old leaders (%s): replaced", name, moved)
        REPLACED.inc()
        await client._metadata_update(client.cluster, set(client._topics))
        return set()
    return differ
