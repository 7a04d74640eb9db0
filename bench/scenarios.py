"""The scenarios: each measured on our stack and on what it is compared with, by the same
load generator, with the outcome checked against PostgreSQL afterwards."""

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from bench import cpu, floor, hops
from bench.load import Result, Target, cores, generate
from bench.systems import Systems
from deploy.embedded import free_port
from deploy.stack import start_part
from runtime import kafka
from runtime.db import create_database
from runtime.figures import ms
from runtime.produce import send_all
from runtime.settings import Settings
from schemas.messages import Claim, CouponSpec, CreateCoupon, encode
from schemas.topics import Topics, coupon_key

Progress = Callable[[str, int], Callable[[int], None]]  # (label, total) -> update(done)
REPLAY_COUPONS = 4
REPLAY_TIMEOUT_S = 300.0
# How often the replay looks whether all is decided: a count of every decision, which costs
# PostgreSQL some CPU of its own (the figures come from the commits' times, not from this).
REPLAY_POLL_S = 0.5


@dataclass(frozen=True, slots=True)
class ClaimScenario:
    """Everyone claims one coupon at once: what each claim scenario varies."""

    name: str
    systems: tuple[str, ...]
    users: int
    count: int
    connections: int
    keyed: bool  # an Idempotency-Key on every claim
    daily_rule: bool  # the coupon's one-coupon-per-person-per-day rule (on by default)


@dataclass
class Run:
    scenario: str
    system: str
    result: Result
    checks: dict[str, Any] = field(default_factory=dict)
    hops: dict[str, Any] | None = None  # ours: where the time went (bench/hops.py)

    def figures(self) -> dict[str, Any]:
        result = self.result
        latency = sorted(result.latency)
        answered = len(latency)
        wall = result.wall_s or 1e-9
        return {
            "scenario": self.scenario,
            "system": self.system,
            "requests": answered,
            "seconds": round(wall, 3),
            "throughput_per_s": round(answered / wall, 1),
            "p50_ms": ms(latency, 0.50),
            "p95_ms": ms(latency, 0.95),
            "p99_ms": ms(latency, 0.99),
            "max_ms": round(latency[-1] * 1000, 1) if latency else None,
            "outcomes": {str(k): v for k, v in sorted(Counter(result.status).items())},
            "transport_errors": result.errors,
            "generator_cpu_share": round(result.cpu_s / (wall * cores()), 3),
            "checks": self.checks,
            **({"hops": self.hops} if self.hops else {}),
        }


def target(
    systems: Systems, system: str, coupon_id: str, keyed: bool, prefer_wait_s: int = 10
) -> Target:
    port = systems.port("gateway" if system == "ours" else system)
    path = f"/v1/coupons/{coupon_id}/claims"
    return Target("127.0.0.1", port, path, systems.secret, keyed=keyed, prefer_wait_s=prefer_wait_s)


async def _baseline_coupon(systems: Systems, count: int, daily_rule: bool) -> str:
    coupon_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    conn = await asyncpg.connect(systems.baseline_db)
    try:
        await conn.execute(
            "INSERT INTO baseline_coupons (id, count, start_time, expiry, daily_rule)"
            " VALUES ($1, $2, $3, $4, $5)",
            coupon_id,
            count,
            now - timedelta(seconds=1),
            now + timedelta(days=1),
            daily_rule,
        )
    finally:
        await conn.close()
    return coupon_id


def grants_of(systems: Systems, system: str, coupon_id: str) -> tuple[int, int]:
    """(grants, distinct people) in the system's database."""
    return asyncio.run(_grants(systems, system, coupon_id))


async def _grants(systems: Systems, system: str, coupon_id: str) -> tuple[int, int]:
    url, table = (
        (systems.ours_db, "grants")
        if system == "ours"
        else (systems.baseline_db, "baseline_grants")
    )
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            f"SELECT count(*) AS n, count(DISTINCT user_id) AS people FROM {table}"
            " WHERE coupon_id = $1",
            coupon_id,
        )
    finally:
        await conn.close()
    assert row is not None
    return int(row["n"]), int(row["people"])


def _coupon(systems: Systems, system: str, count: int, daily_rule: bool) -> str:
    if system == "ours":
        return systems.create_coupon(count, daily_limit=daily_rule)
    if system == "baseline":
        return asyncio.run(_baseline_coupon(systems, count, daily_rule))
    return str(uuid.uuid4())  # the ceiling answers without looking


def claims(
    systems: Systems, scenario: ClaimScenario, generators: int, progress: Progress
) -> list[Run]:
    """Everyone claims one coupon of `count` units at once, on each system in turn."""
    runs = []
    users, count, name = scenario.users, scenario.count, scenario.name
    for system in scenario.systems:
        coupon_id = _coupon(systems, system, count, scenario.daily_rule)
        before = hops.read(systems) if system == "ours" else {}
        result = generate(
            target(systems, system, coupon_id, scenario.keyed),
            users,
            scenario.connections,
            generators,
            f"{name}-{system}-",
            progress(f"{name}: {system}", users),
        )
        run = Run(name, system, result)
        if system == "ours":
            run.hops = hops.between(before, hops.read(systems), scenario.daily_rule)
        if system != "ceiling":
            grants, people = grants_of(systems, system, coupon_id)
            answered_granted = result.status.count(201)
            run.checks = {
                "grants": grants,
                "expected_grants": min(count, users),
                "people_with_a_grant": people,
                "granted_answers": answered_granted,
                "ok": grants == min(count, users) == people == answered_granted,
            }
        runs.append(run)
    return runs


def replay(
    systems: Systems, commands: int, daily_rule: bool, log: Callable[[str], None]
) -> dict[str, Any]:
    """`commands` claims already in the log; a fresh allocator decides and writes them all."""
    prefix = f"replay{uuid.uuid4().hex[:6]}."
    database = asyncio.run(create_database(systems.infra.postgres.url, prefix.rstrip(".")))
    env = {**systems.env, "COUPONS_TOPIC_PREFIX": prefix, "DATABASE_URL": database}
    settings = Settings.from_env(env)
    log(f"replay: writing {commands} claims to the log")
    written = asyncio.run(_write_log(settings, commands, daily_rule))
    port = free_port()
    started = time.monotonic()
    allocator = start_part(
        "allocator", {**env, "ALLOCATOR_PORT": str(port)}, port, systems.root / "logs", "replayer"
    )
    try:
        log("replay: a fresh allocator is deciding them")
        processes = {
            "allocator": allocator.process.pid,
            "postgres": systems.infra.postgres.process.pid,
            "broker": systems.infra.broker.process.pid,
        }
        decided, first, last, cpu_s = asyncio.run(
            _wait_decided(database, written, started, processes)
        )
        inside = _allocator_figures(allocator.url)
    finally:
        allocator.process.stop()
    log("replay: the log alone, deciding nothing (the floor)")
    alone = asyncio.run(floor.log_alone(settings, written, processes["broker"]))
    grants = asyncio.run(_count(database, "grants"))
    stored = asyncio.run(
        floor.decisions_alone(database, settings.batch_records_max, processes["postgres"])
    )
    span = max(last - first, 1e-9)
    return {
        "scenario": "replay",
        "system": "ours",
        "commands": written,
        "decided": decided,
        "seconds_first_to_last_commit": round(span, 3),
        "decisions_per_s": round(decided / span, 1),
        "seconds_from_process_start": round(time.monotonic() - started, 3),
        "allocator": inside,
        # CPU each process spent from the first decision seen to the last, per decision:
        # less noisy than the rate on a shared machine, and what a floor is made of.
        "cpu_us_per_decision": {
            name: round(1e6 * spent / max(decided, 1), 1) for name, spent in cpu_s.items()
        },
        # Records each decision moved through the log: read (the commands, and under the
        # daily rule each winner's ReserveDay and DayReserved) and written (those two and
        # the decision); the floor is what moving them costs with nothing decided.
        "records_read_per_decision": round((written + 2 * grants) / max(decided, 1), 2),
        "records_written_per_decision": round((2 * grants + decided) / max(decided, 1), 2),
        "log_alone": alone,
        "decisions_alone": stored,
        "checks": {"ok": decided == written},
    }


async def _count(database: str, table: str) -> int:
    conn = await asyncpg.connect(database)
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await conn.close()


def _allocator_figures(url: str) -> dict[str, float]:
    """Where the allocator's time went, from its own metrics: batches and commit time."""
    import urllib.request

    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name.startswith(
            ("coupons_allocator_batch_records_", "coupons_allocator_commit_seconds_")
        ):
            values[name] = float(value)
    batches = values.get("coupons_allocator_batch_records_count", 0) or 1
    return {
        "batches": batches,
        "records_per_batch": round(
            values.get("coupons_allocator_batch_records_sum", 0) / batches, 1
        ),
        "commit_seconds_total": round(values.get("coupons_allocator_commit_seconds_sum", 0), 3),
        "commit_ms_per_batch": round(
            1000 * values.get("coupons_allocator_commit_seconds_sum", 0) / batches, 2
        ),
    }


async def _write_log(settings: Settings, claims_total: int, daily_rule: bool) -> int:
    """Coupons (half as many units as claims) and the claims, straight onto the log."""
    topics = Topics(settings.topic_prefix)
    await kafka.ensure_topics(settings, kafka.core_topics(settings))
    producer = kafka.producer(settings, linger_ms=5)
    await producer.start()
    now_ms = int(time.time() * 1000)
    try:
        coupon_ids = [str(uuid.uuid4()) for _ in range(REPLAY_COUPONS)]
        units = max(1, claims_total // (2 * REPLAY_COUPONS))
        messages: list[tuple[str, Any]] = []
        for coupon_id in coupon_ids:
            start, expiry = now_ms - 1000, now_ms + 86_400_000
            spec = CouponSpec("REPLAY", "", "", start, expiry, units, 1, daily_rule)
            messages.append(
                (coupon_id, CreateCoupon(str(uuid.uuid4()), coupon_id, "bench", spec, now_ms, ""))
            )
        for index in range(claims_total):
            coupon_id = coupon_ids[index % REPLAY_COUPONS]
            messages.append(
                (coupon_id, Claim(str(uuid.uuid4()), coupon_id, f"replay-{index}", now_ms, ""))
            )
        await send_all(
            producer, [(topics.commands, coupon_key(c), encode(command)) for c, command in messages]
        )
        return len(messages)
    finally:
        await producer.stop()


async def _wait_decided(
    database: str, expected: int, started: float, processes: dict[str, int]
) -> tuple[int, float, float, dict[str, float]]:
    """Wait (bounded) until every command is decided; (decided, first and last commit, and
    the CPU seconds each of `processes` and its children spent from the first decision
    seen to the last)."""
    conn = await asyncpg.connect(database)
    at_first: dict[str, float] = {}
    try:
        while True:
            row = await conn.fetchrow(
                "SELECT count(*) AS n, extract(epoch FROM min(committed_at)) AS first,"
                " extract(epoch FROM max(committed_at)) AS last FROM decisions"
            )
            assert row is not None
            if row["n"] and not at_first:
                at_first = cpu.seconds(processes)
            if row["n"] >= expected or time.monotonic() - started > REPLAY_TIMEOUT_S:
                at_last = cpu.seconds(processes)
                spent = {name: at_last[name] - at_first.get(name, 0.0) for name in at_last}
                return int(row["n"]), float(row["first"] or 0), float(row["last"] or 0), spent
            await asyncio.sleep(REPLAY_POLL_S)
    finally:
        await conn.close()
