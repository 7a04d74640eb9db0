"""Decisions → the reply topic named in each original command.

At least once: offsets are committed to Kafka only after the replies are acknowledged,
and gateways ignore replies they are not waiting for.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Histogram

from runtime import hops, kafka, leaders
from runtime.produce import Message, send_all
from runtime.settings import Settings
from schemas.topics import Topics

log = logging.getLogger(__name__)

FORWARDED = Counter("coupons_notifier_replies_total", "Decisions forwarded to a gateway")
DECISION_LATENCY = Histogram(
    "coupons_decision_latency_seconds",
    "From a gateway receiving a request to its decision leaving the notifier",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
STRAY = Counter(
    "coupons_notifier_stray_replies_total", "Decisions naming a reply topic of no gateway"
)
RETRY_BACKOFF_S = 0.5


class Forwarder:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self.reply_topics = self.topics.replies("")  # every gateway's reply topic starts so
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.on_decision: Callable[[dict[str, Any], bytes], None] | None = None  # live streams

    async def start(self) -> None:
        await kafka.ensure_topics(self.settings, kafka.core_topics(self.settings))
        self.producer = kafka.producer(self.settings)
        await self.producer.start()
        group = f"{self.settings.topic_prefix}coupons-notifier"
        self.consumer = kafka.consumer(self.settings, group_id=group, max_records=2000)
        await self.consumer.start()
        partitions = self.consumer.partitions_for_topic(self.topics.decisions) or set()
        if not partitions:
            await self.consumer._client.force_metadata_update()
            partitions = self.consumer.partitions_for_topic(self.topics.decisions) or set()
        self.consumer.assign([TopicPartition(self.topics.decisions, p) for p in partitions])

    async def stop(self) -> None:
        if self.consumer:
            await self.consumer.stop()
        if self.producer:
            await self.producer.stop()

    async def run(self, stop: asyncio.Event) -> None:
        assert self.consumer and self.producer
        watching = asyncio.create_task(leaders.watch(self.consumer, "notifier's forwarder"))
        try:
            await self._forward_until(stop)
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)

    async def _forward_until(self, stop: asyncio.Event) -> None:
        assert self.consumer
        while not stop.is_set():
            batches = await self.consumer.getmany(timeout_ms=100)
            await kafka.follow_new_logs(self.consumer)
            if not batches:
                continue
            for messages in batches.values():
                hops.trip("log_decision", messages)
            try:
                await self._forward([m for ms in batches.values() for m in ms])
                await self.consumer.commit({tp: ms[-1].offset + 1 for tp, ms in batches.items()})
            except KafkaError as error:
                # Not committed: read the same decisions again once the broker answers.
                log.warning("forwarding failed (%s); retrying", error)
                for tp, ms in batches.items():
                    self.consumer.seek(tp, ms[0].offset)
                await asyncio.sleep(RETRY_BACKOFF_S)

    async def _forward(self, messages: list) -> None:  # type: ignore[type-arg]
        assert self.producer
        now = time.time()
        replies: list[Message] = []
        for message in messages:
            decision = orjson.loads(message.value)
            if self.on_decision is not None:
                self.on_decision(decision, message.value)
            reply_to = decision.get("reply_to")
            if not reply_to:
                continue
            if not reply_to.startswith(self.reply_topics):
                # Not a gateway of this stack: a hand-written command named it. Producing
                # there could wait for a topic that never comes, and stall every reply.
                STRAY.inc()
                continue
            DECISION_LATENCY.observe(max(now - decision["at_ms"] / 1000, 0))
            key = decision["request_id"].encode()
            replies.append((reply_to, key, message.value))
        started = time.perf_counter()
        await send_all(self.producer, replies)
        hops.spent("notifier_forward", started)
        FORWARDED.inc(len(replies))
