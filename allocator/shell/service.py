"""The allocator's IO shell: read a batch, decide it in memory, commit, then publish.

One allocator owns the partitions it is given. Per batch of one partition: load what the
core needs, decide, write effects plus the next offset in one fenced transaction, then
publish decisions, coupon statuses and follow-up commands. The published messages are
kept in the partition's row (the outbox) and published again on start, so a crash
between commit and publish loses nothing.
"""

import asyncio
import collections
import contextlib
import logging
import time
import uuid
from collections import defaultdict

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from prometheus_client import Counter, Histogram

from allocator.core import budget
from allocator.core.decide import PartitionCore
from allocator.core.effects import Effects, Record
from allocator.core.state import CoreConfig
from allocator.shell import isolation, outbox, readiness, which_log
from allocator.shell.handover import Handover
from allocator.shell.isolation import Batch
from allocator.shell.outbox import Publisher
from allocator.shell.partitions import (
    BATCH,
    DEADLINES,
    DECIDING,
    LAG,
    HeldPartition,
    Partitions,
    Phase,
)
from allocator.shell.readiness import Unready
from allocator.shell.store import Fenced, Landed
from runtime import db, errors, hops, kafka, leaders
from runtime.http import labelled
from runtime.produce import Message
from runtime.settings import Settings
from schemas import logmarks
from schemas.messages import (
    Claim,
    DayReserved,
    ReserveDay,
    Tick,
    decode_command,
    encode,
)
from schemas.topics import Topics, coupon_key

log = logging.getLogger(__name__)

BATCHES = Histogram(
    "coupons_allocator_batch_records",
    "Records decided per batch",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
)
COMMIT_SECONDS = Histogram(
    "coupons_allocator_commit_seconds", "Time to write one batch to PostgreSQL"
)
DECISIONS = Counter(
    "coupons_allocator_decisions_total", "Final decisions made", ["outcome", "reason"]
)
_DECISIONS = labelled(DECISIONS)
UNREADABLE = Counter("coupons_allocator_unreadable_total", "Commands skipped as unreadable")
UNSTORABLE = Counter(
    "coupons_allocator_unstorable_total",
    "Commands refused for holding what cannot be stored (found by the core or by PostgreSQL)",
)
FAILURES = Counter("coupons_allocator_batch_failures_total", "Batches retried after an error")

# Each command's trip through the log is its own hop (runtime/hops.py).
TRIPS = {Claim: "log_claim", ReserveDay: "log_reserve_day", DayReserved: "log_day_reserved"}
RETRY_BACKOFF_S_MAX = 2.0
# A batch that fails this often in a row, while the database answers, is split to find the
# record at fault instead of being tried as it is again.
BATCH_FAILURES_MAX = 3
TIMER_TICK_MS = 100  # how often deadlines are looked at: a hold lapses at most this late
TICK_RESEND_S = 1.0  # a Tick not decided by then is sent again
TICKS = Counter("coupons_allocator_ticks_total", "Timer commands appended to the log")
FORGOTTEN = Counter(
    "coupons_allocator_forgotten_total", "Idle coupons and people dropped from memory"
)
FORGET_EVERY_S = 5.0
LANE_STOP_S = 5.0  # at stop, how long a batch in hand may take to finish


class Allocator:
    """The process's parts, started and stopped together: the partitions' table, the
    handover that fills it, the log watch, the publisher; and the loop that decides."""

    # Made by `start`, with what they are handed.
    pool: asyncpg.Pool
    producer: AIOKafkaProducer
    consumer: AIOKafkaConsumer
    table: Partitions
    publish: Publisher
    logs: which_log.LogWatch
    handover: Handover

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self.config = CoreConfig(settings.code_secret.encode(), settings.day_zone)
        self.unready = Unready()
        self.unready.say(readiness.STARTING, "starting")
        self.ticking: dict[str, float] = {}  # coupon id: when its Tick was sent
        self.forget_at = 0.0  # monotonic time of the next look for idle state
        self.checker = which_log.Checker(settings)
        self.parts = contextlib.AsyncExitStack()  # what `start` started, for `stop`

    @property
    def grouped(self) -> bool:
        return self.settings.allocator_partitions is None

    async def start(self) -> None:
        """Each part started is stopped by `stop`, and by a failure of a later one."""
        settings = self.settings
        async with contextlib.AsyncExitStack() as parts:
            await kafka.ensure_topics(settings, kafka.core_topics(settings))
            self.pool = await db.create_pool(settings.database_url, settings.db_pool_size_max)
            parts.push_async_callback(self.pool.close)
            self.producer = kafka.producer(settings)
            parts.push_async_callback(self.producer.stop)  # stops what a failed start began
            await self.producer.start()
            self.consumer = kafka.consumer(
                settings,
                group_id=settings.allocator_group if self.grouped else None,
                max_records=settings.batch_records_max,
                session_timeout_ms=settings.allocator_session_timeout_ms,
                instance_id=settings.allocator_id if settings.allocator_static_member else None,
            )
            parts.push_async_callback(self.consumer.stop)
            await self.consumer.start()
            parts.push_async_callback(self.checker.stop)
            self._assemble()
            await self.handover.own(self.topics.commands)
            self.parts = parts.pop_all()

    def _assemble(self) -> None:
        """The shell's components, each handed what it works with."""
        grouped_session_s = self.settings.allocator_session_timeout_ms / 1000
        self.table = Partitions(self.consumer, grouped_session_s if self.grouped else None)
        self.publish = Publisher(self.producer, self.unready)
        self.logs = which_log.LogWatch(
            table=self.table, consumer=self.consumer, producer=self.producer,
            publish=self.publish, config=self.config, topics=self.topics, checker=self.checker,
        )  # fmt: skip
        self.handover = Handover(
            settings=self.settings, config=self.config, table=self.table,
            consumer=self.consumer, pool=self.pool, logs=self.logs, publish=self.publish,
            unready=self.unready,
        )  # fmt: skip

    async def stop(self) -> None:
        await self.parts.aclose()

    async def run(self, stop: asyncio.Event) -> None:
        """Decide batches until `stop` is set."""
        beside = [
            asyncio.create_task(self.logs.verify_marks()),
            asyncio.create_task(leaders.watch(self.consumer, "allocator")),
        ]
        try:
            await self._decide_until(stop)
        finally:
            for task in beside:
                task.cancel()
            await asyncio.gather(*beside, return_exceptions=True)

    async def _decide_until(self, stop: asyncio.Event) -> None:
        """Each partition is decided in a lane of its own (`_lane`), so one whose batch is
        slow (a big command, a failing statement) holds no other. This loop starts a lane
        for each partition taken, and every tick does what spans partitions."""
        lanes: dict[TopicPartition, tuple[HeldPartition, asyncio.Task[None]]] = {}
        try:
            while not stop.is_set():
                if self.handover.broken is not None:
                    raise self.handover.broken
                self._start_lanes(lanes, stop)
                async with self.handover.lock:  # the group's changes wait for these
                    await self.handover.take_waiting()
                    await self.logs.watch()
                    await self._tick()
                self._forget_idle()
                self._measure_lag()
                running = [task for _, task in lanes.values()]
                if running:
                    await asyncio.wait(
                        running, timeout=TIMER_TICK_MS / 1000, return_when=asyncio.FIRST_COMPLETED
                    )
                else:
                    await asyncio.sleep(TIMER_TICK_MS / 1000)
        finally:
            await _end_lanes([task for _, task in lanes.values()])

    def _start_lanes(
        self,
        lanes: dict[TopicPartition, tuple[HeldPartition, asyncio.Task[None]]],
        stop: asyncio.Event,
    ) -> None:
        """A lane for each partition decided now; a lane that failed fails the allocator."""
        for tp, (_, task) in list(lanes.items()):
            if task.done():
                del lanes[tp]
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        for held in self.table.held():
            if held.tp not in lanes:  # one lane per partition: a lane let go of ends first
                lanes[held.tp] = (held, asyncio.create_task(self._lane(held, stop)))

    async def _lane(self, held: HeldPartition, stop: asyncio.Event) -> None:
        """Read and decide this partition's batches while it is ours."""
        tp = held.tp
        while not stop.is_set() and self.table.holding(tp) is held:
            seeks = held.seeks
            batches = await self.consumer.getmany(
                tp, timeout_ms=TIMER_TICK_MS, max_records=self.settings.batch_records_max
            )
            messages = batches.get(tp)
            if not messages:
                continue
            async with held.lock:
                if self.table.holding(tp) is held and held.seeks == seeks:
                    await self._handle(held, messages)
                    continue
            await self._read_again(tp)

    async def _read_again(self, tp: TopicPartition) -> None:
        """Records read for a position that was set again meanwhile (or by an owner let
        go) are not decided: whoever decides the partition now reads on from its own."""
        current = self.table.holding(tp)
        if current is not None:
            async with current.lock:
                self.table.seek(current, current.next_offset - current.base)

    async def _tick(self) -> None:
        """Append a Tick for each coupon whose deadline has come: the core reads no clock."""
        now_ms = int(time.time() * 1000)
        now = time.monotonic()
        due: list[Message] = []
        for held in self.table.held():
            if held.lock.locked():
                continue  # a batch in hand: its deadlines are looked at next tick
            async with held.lock:
                phase = self.table.phase(held)
                if phase not in DECIDING:
                    continue
                if phase is Phase.COLD and not await self._warm(held):
                    continue
                coupons = held.core.due(now_ms)
            for coupon_id in coupons:
                sent = self.ticking.get(coupon_id)
                if sent is not None and now - sent < TICK_RESEND_S:
                    continue
                self.ticking[coupon_id] = now
                tick = Tick(str(uuid.uuid4()), coupon_id, now_ms)
                due.append((self.topics.commands, coupon_key(coupon_id), encode(tick)))
        if due:
            TICKS.inc(len(due))
            await self.publish(due)

    async def _warm(self, held: HeldPartition) -> bool:
        """Load this partition's coupons that have deadlines, so their timers run."""
        try:
            ids = await held.store.timed_coupons()
            mine = set(filter(self.table.owns(held.tp), ids))
            needs = held.core.needs([])
            needs.coupon_ids = mine - set(held.core.books)
            loaded, _ = await held.store.load(needs)
        except Exception as error:
            if not errors.known(error):
                raise
            self.table.trouble(held, DEADLINES, f"database: {errors.said(error)}")
            await db.forget_connections(self.pool)
            return False
        held.core.load(loaded)
        self.table.warmed(held)
        return True

    def _forget_idle(self) -> None:
        """Between batches, now and then: memory holds the working set, not the history."""
        now, idle_s = time.monotonic(), self.settings.forget_idle_s
        if now < self.forget_at:
            return
        self.forget_at = now + min(FORGET_EVERY_S, idle_s)
        for held in self.table.held():
            if not held.lock.locked():  # a batch in hand counts on what its core loaded
                FORGOTTEN.inc(held.core.forget_idle(now, idle_s))

    def _measure_lag(self) -> None:
        for held in self.table.held():
            lag = self.table.lag(held)
            if lag is not None:
                LAG.labels(str(held.tp.partition)).set(lag)

    async def _handle(
        self, held: HeldPartition, messages: list[ConsumerRecord[bytes, bytes]]
    ) -> None:
        if not self.table.deciding(held):
            # Fetched before the pause (the mark check runs beside this loop): these records
            # were handed over, so the consumer is past them. Go back, to read them again
            # once the log is known (a new log seeks to its start anyway).
            self.table.seek(held, held.next_offset - held.base)
            return
        # Positions below the committed one were decided already (a seek raced a fetch).
        base = held.base
        fresh = [m for m in messages if m.offset + base >= held.next_offset]
        if not fresh:
            return
        records = _records(fresh, base)
        next_offset = fresh[-1].offset + base + 1
        left = budget.cut(records, {m.offset + base: len(m.value or b"") for m in fresh})
        if left is not None:  # the rest wait for the next batch
            records, next_offset = [r for r in records if r.offset < left], left
        isolating = held.failures >= BATCH_FAILURES_MAX
        try:
            done = await self._commit(held, records, next_offset, isolating)
        except Fenced as fenced:
            self.table.fenced(held, fenced)
            return
        except Exception as error:
            if not errors.retriable(error):
                raise
            await self._failed(held, error)
            return
        if isinstance(done, Landed):
            # Our last commit landed unheard: what it decided is durable; its messages are
            # in the outbox. Publish them, and go on from the row's offset with a cold core.
            log.warning("%s[%d]: %s; resuming there", *held.tp, done)
            await self.handover.resume(held, done.row)
            return
        effects, messages = done
        held.failures = 0
        self.table.trouble(held, BATCH, None)
        held.next_offset = effects.next_offset
        if left is not None:
            self.table.seek(held, left - base)
        for coupon_id in effects.ticked:
            self.ticking.pop(coupon_id, None)
        started = time.perf_counter()
        await self.publish(messages)
        hops.spent("allocator_publish", started)
        BATCHES.observe(len(records))
        decided = collections.Counter(
            (row.decision.outcome, row.decision.reason or "") for row in effects.decisions
        )
        for labels, count in decided.items():  # a batch's, counted once per outcome
            _DECISIONS(*labels).inc(count)
        for record in effects.unstorable:
            UNSTORABLE.inc()
            log.error("refused the command at %d: %s", record.offset, record.fault)

    async def _failed(self, held: HeldPartition, error: BaseException) -> None:
        """Nothing was committed: forget what the core decided and read the batch again,
        after a backoff. A batch that fails in a row while the database answers is split
        on its next try, as one it refuses for what it holds (`_commit`)."""
        FAILURES.inc()
        await db.forget_connections(self.pool)
        if await db.unreachable(self.pool) is None:
            held.failures += 1  # the database answers: the batch is the likely cause
        why = errors.said(error)
        log.warning(
            "%s[%d]: batch at %d failed (%s); retrying", *held.tp, held.next_offset, why
        )  # fmt: skip
        self.table.reset(held, PartitionCore(self.config))
        self.table.trouble(
            held, BATCH, f"database: {why} (batch at {held.next_offset}, {held.failures} in a row)"
        )
        self.table.seek(held, held.next_offset - held.base)
        await asyncio.sleep(min(RETRY_BACKOFF_S_MAX, 0.2 * 2 ** min(held.failures, 4)))

    async def _commit(
        self, held: HeldPartition, records: list[Record], next_offset: int, isolating: bool = False
    ) -> Batch | Landed:
        """Decide and commit a batch; one PostgreSQL refuses for what it holds is committed
        without the records at fault (allocator/shell/isolation.py), never retried as it is. So
        is one that failed BATCH_FAILURES_MAX times in a row (`isolating`): a statement cut
        by its timeout fails the same way however often it is tried."""
        refuses = isolation.repeating if isolating else isolation.refusing
        try:
            return await self._decide(held, held.core, records, next_offset)
        except Exception as refused:
            if not refuses(refused):
                raise
            error = refused
            log.error("batch at %d refused by PostgreSQL (%s); isolating", held.next_offset, error)
            await db.forget_connections(self.pool)  # a COPY cut short: use fresh ones

        async def attempt(marked: list[Record], trial: bool) -> Batch | Landed:
            core = PartitionCore(self.config)  # what PostgreSQL holds, as after a restart
            done = await self._decide(held, core, marked, next_offset, trial)
            if not trial:
                self.table.reset(held, core)
            return done

        self.table.reset(held, PartitionCore(self.config))  # it decided what was refused
        return await isolation.isolate(records, attempt, error, refuses)

    async def _decide(
        self,
        held: HeldPartition,
        core: PartitionCore,
        records: list[Record],
        next_offset: int,
        trial: bool = False,
    ) -> Batch | Landed:
        effects = Effects(next_offset)
        if records:
            started = time.perf_counter()
            needs = core.needs(records)
            loaded, decided = await held.store.load(needs)
            hops.spent("allocator_load", started)
            started = time.perf_counter()
            core.load(loaded)
            effects = core.decide(records, decided)
            hops.spent("allocator_decide", started)
        effects.next_offset = next_offset  # past the last record read, decided, mark or unreadable
        messages = outbox.messages(effects, self.topics)
        started = time.perf_counter()
        landed = await held.store.commit(
            held.epoch, held.next_offset, effects, outbox.pack(messages), trial
        )
        COMMIT_SECONDS.observe(time.perf_counter() - started)
        hops.spent("allocator_commit", started)
        return landed or (effects, messages)


def _records(messages: list[ConsumerRecord[bytes, bytes]], base: int) -> list[Record]:
    """The commands read, at their positions; marks and unreadable records are skipped
    (an unreadable one is never decided and never blocks the partition)."""
    records = []
    trips: defaultdict[str, list[ConsumerRecord[bytes, bytes]]] = defaultdict(list)
    for message in messages:
        if logmarks.is_mark(message.value):
            continue
        try:
            command = decode_command(message.value or b"")
        except (ValueError, TypeError, KeyError) as error:
            UNREADABLE.inc()
            log.error("skipping unreadable command at %d: %s", message.offset, error)
            continue
        records.append(Record(message.offset + base, command))
        trips[TRIPS.get(type(command), "log_command")].append(message)
    for hop, tripped in trips.items():
        hops.trip(hop, tripped)
    return records


async def _end_lanes(lanes: list["asyncio.Task[None]"]) -> None:
    """Let each lane finish the batch in hand (its commit and publish), at most
    LANE_STOP_S; a lane still busy then is cancelled: nothing it did not commit counts,
    and what it committed and did not publish is in its outbox."""
    if not lanes:
        return
    _, busy = await asyncio.wait(lanes, timeout=LANE_STOP_S)
    for lane in busy:
        lane.cancel()
    await asyncio.gather(*lanes, return_exceptions=True)
