"""Kafka clients with every option that matters passed explicitly.

The embedded broker (Tansu) supports neither the idempotent nor the transactional
producer (the idempotent one is a setting, KAFKA_ENABLE_IDEMPOTENCE, for Apache Kafka), and
answers a fetch only when its wait runs out: fetch waits are short.
"""

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator
from difflib import SequenceMatcher
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError, for_code

from runtime import errors
from runtime.errors import CouponsError
from runtime.settings import Settings
from schemas import logmarks
from schemas.messages import MESSAGE_BYTES_MAX, Command, decode_command
from schemas.topics import Topics

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_MS = 10_000
REQUEST_BYTES_MAX = 1024 * 1024  # aiokafka's max_request_size, passed as Kafka's default
# A record's framing and its batch's header, with a key of at most a coupon id: a message
# of MESSAGE_BYTES_MAX and this fits wherever the broker or the producer sets the limit.
FRAMING_BYTES_MAX = 4 * 1024
assert MESSAGE_BYTES_MAX + FRAMING_BYTES_MAX <= REQUEST_BYTES_MAX


class MessageLimitTooLow(CouponsError):
    """The broker takes smaller messages than ours may be: some would be refused."""


def producer(settings: Settings, linger_ms: int = 1) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",  # every in-sync replica has it: KAFKA_MIN_INSYNC_REPLICAS at least
        enable_idempotence=settings.kafka_idempotence,
        linger_ms=linger_ms,
        max_batch_size=256 * 1024,
        max_request_size=REQUEST_BYTES_MAX,
        request_timeout_ms=REQUEST_TIMEOUT_MS,
        retry_backoff_ms=100,
    )


def consumer(
    settings: Settings,
    group_id: str | None = None,
    max_records: int | None = None,
    partition_fetch_bytes: int = 1024 * 1024,
    session_timeout_ms: int = 10_000,
    instance_id: str | None = None,
) -> AIOKafkaConsumer:
    """A reader; with `group_id`, a member of that group (offsets are never committed to
    the broker: every reader keeps its position elsewhere or starts over), a static one
    under `instance_id` when given."""
    return AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group_id,
        group_instance_id=instance_id,
        session_timeout_ms=session_timeout_ms,
        heartbeat_interval_ms=max(100, session_timeout_ms // 6),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.kafka_fetch_wait_ms,
        max_poll_records=max_records,
        max_partition_fetch_bytes=partition_fetch_bytes,
        request_timeout_ms=REQUEST_TIMEOUT_MS,
        isolation_level="read_uncommitted",
    )


NEW_LOG_AFTER_S = 10.0  # a log end below the position for this long is a new log
_below_since: "weakref.WeakKeyDictionary[AIOKafkaConsumer, dict[TopicPartition, float]]" = (
    weakref.WeakKeyDictionary()
)


async def follow_new_logs(consumer: AIOKafkaConsumer) -> None:
    """For a reader that follows logs live (replies, statuses, decisions to forward): when
    a log ends below the reader's position for NEW_LOG_AFTER_S, the broker restarted empty
    (the embedded one keeps its logs in memory). Go on from the new log's start instead of
    waiting, unheard, for it to grow past the old position. Only when it lasts: on Apache
    Kafka, a partition's new leader may say a high watermark below what its old one had
    served for a moment after a failover, and reading a live log again from its start
    would forward every decision again."""
    below = _below_since.setdefault(consumer, {})
    for tp in consumer.assignment():
        end = consumer.highwater(tp)
        if end is None or await consumer.position(tp) <= end:
            below.pop(tp, None)
        elif time.monotonic() - below.setdefault(tp, time.monotonic()) >= NEW_LOG_AFTER_S:
            log.warning("%s[%d] ends at %d, below our position: a new log", *tp, end)
            await consumer.seek_to_beginning(tp)
            below.pop(tp, None)


async def follow(
    consumer: AIOKafkaConsumer, timeout_ms: int
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Every record of the consumer's partitions as it comes, for ever, going on from a new
    log's start when the broker restarted empty (`follow_new_logs`)."""
    while True:
        batches = await consumer.getmany(timeout_ms=timeout_ms)
        await follow_new_logs(consumer)
        for messages in batches.values():
            for message in messages:
                yield message


async def ensure_topics(settings: Settings, topics: dict[str, int]) -> None:
    """Create the topics that do not exist yet, with the given partition counts, and the
    replication the settings say (a topic that exists is left as it is)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers, request_timeout_ms=REQUEST_TIMEOUT_MS
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        replicas = settings.kafka_replication_factor
        in_sync = {"min.insync.replicas": str(settings.kafka_min_insync_replicas)}
        wanted = [
            NewTopic(name, partitions, replicas, topic_configs=in_sync)
            for name, partitions in topics.items()
            if name not in existing
        ]
        if wanted:
            _raise_refusal(await admin.create_topics(wanted))
            log.info("created topics %s", [t.name for t in wanted])
        await _until_led(admin, topics)
        await _check_message_limit(admin, sorted(topics))
    finally:
        await admin.close()


TOPICS_LED_S = 30.0  # a topic just made (here or by a part starting beside) has leaders within


async def _until_led(admin: AIOKafkaAdminClient, topics: dict[str, int]) -> None:
    """Until the broker's metadata has every partition of `topics` with a leader. A topic
    made a moment ago (by another part starting at the same time, say) may have none yet,
    and a group member that joined then was given no partitions and asked for none again
    (seen on Apache Kafka: an allocator idle for good)."""
    deadline = time.monotonic() + TOPICS_LED_S
    while True:
        described = {t["topic"]: t for t in await admin.describe_topics(sorted(topics))}
        unled = [
            name
            for name, count in topics.items()
            if described.get(name, {}).get("error_code", -1) != 0
            or len(described[name]["partitions"]) < count
            or any(p["leader"] < 0 or p["error_code"] for p in described[name]["partitions"])
        ]
        if not unled:
            return
        if time.monotonic() > deadline:
            raise errors.BrokerUnavailable(f"topics {unled} have no leader after {TOPICS_LED_S} s")
        await asyncio.sleep(0.05)


def _raise_refusal(answer: Any) -> None:
    """A CreateTopics answer says each topic's error (aiokafka raises none): a topic another
    process created first is none of ours; any other is (more replicas than brokers, say)."""
    for topic in answer.to_object()["topic_errors"]:
        if topic["error_code"] not in (0, TopicAlreadyExistsError.errno):
            said = topic.get("error_message") or ""
            raise for_code(topic["error_code"])(f"creating topic {topic['topic']}: {said}")


async def _check_message_limit(admin: AIOKafkaAdminClient, topics: list[str]) -> None:
    """Refuse to start on topics that would refuse a message we may make: a decision the
    allocator cannot publish would hold its partition. Brokers that do not say
    (DescribeConfigs unanswered) are taken at Apache Kafka's default, which fits."""
    asked = {"max.message.bytes": None}
    wanted = [ConfigResource(ConfigResourceType.TOPIC, t, asked) for t in topics]
    try:
        responses = await admin.describe_configs(wanted)
    except Exception as error:
        if not errors.known(error):
            raise
        log.info("the broker does not say its message limit (%s)", errors.said(error))
        return
    for response in responses:
        for resource in response.resources:
            for entry in resource[4]:
                if entry[0] == "max.message.bytes" and entry[1] is not None:
                    limit = int(entry[1])
                    if limit < MESSAGE_BYTES_MAX + FRAMING_BYTES_MAX:
                        raise MessageLimitTooLow(
                            f"topic {resource[3]} takes messages of at most {limit} bytes;"
                            f" ours may be {MESSAGE_BYTES_MAX + FRAMING_BYTES_MAX}: raise its"
                            " max.message.bytes"
                        )


def core_topics(settings: Settings) -> dict[str, int]:
    topics = Topics(settings.topic_prefix)
    return {
        topics.commands: settings.commands_partitions,
        topics.decisions: settings.commands_partitions,
        topics.status: 1,
        topics.edge: settings.commands_partitions,
    }


READ_TO_END_TIMEOUT_S = 600.0


async def start_or_close(reader: AIOKafkaConsumer) -> None:
    """Start a reader; one that cannot reach the broker is closed, not left open."""
    try:
        await reader.start()
    except BaseException:
        await reader.stop()
        raise


PREFIXES_SAID_MAX = 5  # a missing topic names this many prefixes the broker has, at most


class MissingTopic(CouponsError):
    """An analysts' tool asked for a topic the broker does not have (a wrong prefix)."""


async def partitions_for(reader: AIOKafkaConsumer, topic: str) -> set[int] | None:
    """A topic's partitions as the broker says them now, or None when it has no such topic.
    A reader answers `partitions_for_topic` from the metadata of the topics it tracks, and
    Apache Kafka sends metadata of the topics asked about only (Tansu sent every topic's):
    the topic is added to what the reader's client tracks, and its metadata fetched.
    (`topics()` fetches into a copy the reader does not keep: no public call does this.)
    A topic tracked but missing from the metadata (asked about while a broker that restarted
    empty had not made it again) is asked about again, at most every METADATA_AGAIN_S: the
    client would otherwise not ask before its metadata's age runs out (5 minutes)."""
    known = reader.partitions_for_topic(topic)
    if known:
        return set(known)
    client = reader._client
    if topic not in client._topics:
        await client.add_topic(topic)
    elif time.monotonic() - _asked_again.get(reader, 0.0) >= METADATA_AGAIN_S:
        _asked_again[reader] = time.monotonic()
        await client.force_metadata_update()
    return set(reader.partitions_for_topic(topic) or ()) or None


METADATA_AGAIN_S = 1.0
_asked_again: "weakref.WeakKeyDictionary[AIOKafkaConsumer, float]" = weakref.WeakKeyDictionary()


async def partitions_of(reader: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """A topic's partitions, or MissingTopic naming the prefixes the broker does have."""
    every = await reader.topics()  # fresh metadata, every topic
    found = await partitions_for(reader, topic) if topic in every else None
    if found:
        return [TopicPartition(topic, p) for p in sorted(found)]
    name = ".".join(topic.rsplit(".", 2)[-2:])  # e.g. coupon.commands
    asked = topic[: -len(name)]
    prefixes = {t[: -len(name)] for t in every if t.endswith(name)}
    # The likeliest meant first: a prefix mistyped is closest to the one it should be.
    nearest = sorted(prefixes, key=lambda p: (-SequenceMatcher(None, asked, p).ratio(), p))
    known = ", ".join(repr(p) for p in nearest[:PREFIXES_SAID_MAX]) or "none"
    if len(nearest) > PREFIXES_SAID_MAX:
        known += f" and {len(nearest) - PREFIXES_SAID_MAX} more"
    raise MissingTopic(
        f"the broker has no topic {topic} (is COUPONS_TOPIC_PREFIX right? prefixes with a "
        f"{name} topic there, nearest first: {known})"
    )


async def read_to_end(
    settings: Settings,
    topic: str,
    timeout_s: float = READ_TO_END_TIMEOUT_S,
    only: int | None = None,
) -> AsyncIterator[list[ConsumerRecord[bytes, bytes]]]:
    """A whole topic (or its partition `only`), every partition from its first record, in
    batches, until the reader is at each partition's high watermark (as a fetch reports it:
    the embedded broker's end offsets read low). For analysts' tools, not live readers."""
    reader = consumer(settings, max_records=5000)
    await start_or_close(reader)
    try:
        tps = [tp for tp in await partitions_of(reader, topic) if only in (None, tp.partition)]
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batches = await reader.getmany(timeout_ms=500)
            for messages in batches.values():
                yield messages
            ends = [(reader.highwater(tp) or 0, await reader.position(tp)) for tp in tps]
            if not batches and all(end <= position for end, position in ends):
                return
        raise TimeoutError(f"{topic} was not read to its end in {timeout_s:.0f} s")
    finally:
        await reader.stop()


async def topic_size(settings: Settings, topic: str) -> int:
    """Records in a topic, about (for progress bars: the embedded broker reads low)."""
    reader = consumer(settings)
    await start_or_close(reader)
    try:
        tps = await partitions_of(reader, topic)
        firsts, ends = await reader.beginning_offsets(tps), await reader.end_offsets(tps)
        return sum(ends[tp] - firsts[tp] for tp in tps)
    finally:
        await reader.stop()


async def read_commands(
    settings: Settings, only: int | None = None
) -> AsyncIterator[tuple[ConsumerRecord[bytes, bytes], Command | None]]:
    """The command log to its end (or its partition `only`): each record with its command,
    or None for an unreadable one; log marks skipped, as the allocator skips them."""
    async for records in read_to_end(settings, Topics(settings.topic_prefix).commands, only=only):
        for record in records:
            if logmarks.is_mark(record.value):
                continue
            try:
                yield record, decode_command(record.value or b"")
            except (ValueError, TypeError, KeyError):
                yield record, None


TOPICS_CHECK_S = 5.0  # how often a part looks that its topics are still there


async def keep_topics(settings: Settings, topics: dict[str, int], stop: asyncio.Event) -> None:
    """Until `stop`: every TOPICS_CHECK_S, make again any of `topics` that has gone (a
    broker that lost its log, a topic deleted by hand). Nothing would make them otherwise:
    Apache Kafka makes no topic for a client that asks (auto-creation is off), so every
    produce would fail and every reader wait, for ever. A look that fails (the broker
    away) is tried again at the next."""
    while True:
        try:
            await asyncio.wait_for(stop.wait(), TOPICS_CHECK_S)
            return
        except TimeoutError:
            pass
        try:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=settings.kafka_bootstrap_servers,
                request_timeout_ms=REQUEST_TIMEOUT_MS,
            )
            await admin.start()
            try:
                gone = sorted(set(topics) - set(await admin.list_topics()))
            finally:
                await admin.close()
            if gone:
                log.warning("topics %s are gone from the broker: making them again", gone)
                await ensure_topics(settings, topics)
        except Exception as error:
            if not errors.known(error):
                raise
            log.info("could not look at the topics (%s)", errors.said(error))
