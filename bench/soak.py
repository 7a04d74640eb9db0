"""`coupons soak`: a steady claim load for many minutes on our stack, with the resident
memory of every process sampled, to show that memory stays flat under sustained load.

The load is open-loop (a fixed rate, whatever the answers take) and mixed the way a long
campaign day is: mostly new people claiming the coupon of the moment (one of
`COUPON_UNITS` units; when it is sold out the next one goes live), some people claiming
again, some claims on a sold-out coupon (answered at the edge), and people reading their
grants.
Every person is new to the per-person rate limiter, so its bounded table fills and turns
over, as it would in production.

After a warm-up, a least-squares line through each process's samples gives its growth in
MiB per minute. Our processes (gateway, allocator, notifier) must grow less than
`GROWTH_ALLOWED` of their size over the measured span. The embedded broker keeps the log
in memory and PostgreSQL fills its buffers, by design: they are shown, not judged.
"""

import argparse
import asyncio
import itertools
import json
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from bench import systems
from runtime.auth import mint_token
from runtime.figures import ms

JUDGED = ("gateway", "allocator", "notifier")
GROWTH_ALLOWED = 0.05  # of the median RSS, over the measured span
MIB = 1024 * 1024
ANSWER_TIMEOUT_S = 30.0
COUPON_UNITS = 20_000
NEW_PEOPLE_SHARE = 16 / 20  # of the requests (see Load.request)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the load runs")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--warmup-minutes", type=float, default=2.0,
                        help="samples before this are shown but not fitted")  # fmt: skip
    parser.add_argument("--sample-s", type=float, default=5.0, help="between RSS samples")
    parser.add_argument("--workers", type=int, default=1, help="gateway processes")
    parser.add_argument("--out", default="bench/results", help="where the report goes")
    # Every person is new, so the per-person limiter's table grows to its bound and stays
    # there; a smaller bound than the default reaches it within the warm-up.
    parser.add_argument("--rate-limit-keys", type=int, default=20_000,
                        help="RATE_LIMIT_KEYS_MAX for the stack")  # fmt: skip


@dataclass
class Samples:
    at: list[float] = field(default_factory=list)  # minutes since the load started
    rss: dict[str, list[float]] = field(default_factory=dict)  # process → MiB per sample
    cpu: dict[str, list[float]] = field(default_factory=dict)  # process → CPU seconds so far

    def take(self, processes: dict[str, int], minutes: float) -> None:
        self.at.append(minutes)
        for name, pid in processes.items():
            rss, cpu = _usage(pid, children=name != "load")  # the stack is the load's child
            self.rss.setdefault(name, []).append(rss / MIB)
            self.cpu.setdefault(name, []).append(cpu)

    def cpu_share(self, name: str, back: int) -> float:
        """The process's CPU use over the last `back` sample intervals, in % of one core."""
        at, cpu = self.at[-back - 1 :], self.cpu[name][-back - 1 :]
        if len(at) < 2 or at[-1] == at[0]:
            return 0.0
        return (cpu[-1] - cpu[0]) / ((at[-1] - at[0]) * 60) * 100


def _usage(pid: int, children: bool) -> tuple[int, float]:
    """RSS bytes and CPU seconds of a process, with its children when asked (gateway
    workers, PostgreSQL backends). Children that have exited take their CPU seconds along."""
    try:
        root = psutil.Process(pid)
        tree = [root, *(root.children(recursive=True) if children else ())]
    except psutil.NoSuchProcess:
        return 0, 0.0
    rss, cpu = 0, 0.0
    for process in tree:
        try:
            rss += process.memory_info().rss
            times = process.cpu_times()
            cpu += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return rss, cpu


def slope(xs: list[float], ys: list[float]) -> float:
    """The least-squares slope of ys over xs (0 with fewer than two points)."""
    if len(xs) < 2:
        return 0.0
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


def judge(samples: Samples, warmup_minutes: float) -> dict[str, dict[str, Any]]:
    """Per process: size after warm-up and at the end, fitted growth, and a verdict."""
    fitted = [i for i, at in enumerate(samples.at) if at >= warmup_minutes]
    span = samples.at[fitted[-1]] - samples.at[fitted[0]] if fitted else 0.0
    verdicts = {}
    for name, rss in samples.rss.items():
        xs = [samples.at[i] for i in fitted]
        ys = [rss[i] for i in fitted]
        per_minute = slope(xs, ys)
        median = sorted(ys)[len(ys) // 2] if ys else 0.0
        growth = per_minute * span
        verdicts[name] = {
            "start_mib": round(rss[0], 1),
            "after_warmup_mib": round(ys[0], 1) if ys else None,
            "end_mib": round(rss[-1], 1),
            "max_mib": round(max(rss), 1),
            "growth_mib_per_min": round(per_minute, 3),
            "fitted_growth_share": round(growth / median, 4) if median else None,
            "judged": name in JUDGED,
            "flat": (growth <= GROWTH_ALLOWED * median) if name in JUDGED else None,
        }
    return verdicts


class Load:
    """The mixed request stream, paced, with every answer's status counted."""

    def __init__(self, base: str, secret: str, coupons: list[str], sold_out: str) -> None:
        self.base, self.secret, self.coupons, self.sold_out = base, secret, coupons, sold_out
        self.statuses: Counter[str] = Counter()
        self.latency: list[float] = []
        self.people = 0

    def _token(self, user: str) -> str:
        return mint_token(self.secret, user, ttl_s=3600)

    def request(self, n: int) -> tuple[str, str, str]:
        """(kind, method, path) and the person, for the n-th request of the run."""
        slot = n % 20
        coupon = self.coupons[min(self.people // COUPON_UNITS, len(self.coupons) - 1)]
        if slot < 16:
            self.people += 1
            return "claim", f"/v1/coupons/{coupon}/claims", f"soak-{self.people}"
        earlier = f"soak-{max(1, self.people - 500)}"
        if slot < 18:
            return "claim again", f"/v1/coupons/{coupon}/claims", earlier
        if slot == 18:
            return "sold out", f"/v1/coupons/{self.sold_out}/claims", f"soak-x{n}"
        return "my grants", "/v1/users/me/grants", earlier

    async def one(self, http: aiohttp.ClientSession, n: int) -> None:
        kind, path, user = self.request(n)
        headers = {"Authorization": f"Bearer {self._token(user)}", "Prefer": "wait=5"}
        sent = time.perf_counter()
        try:
            if kind == "my grants":
                async with http.get(self.base + path, headers=headers) as response:
                    await response.read()
            else:
                async with http.post(self.base + path, json={}, headers=headers) as response:
                    await response.read()
            self.statuses[f"{kind} {response.status}"] += 1
            self.latency.append(time.perf_counter() - sent)
        except (TimeoutError, aiohttp.ClientError) as error:
            self.statuses[f"{kind} {type(error).__name__}"] += 1

    async def run(self, rate: float, seconds: float, on_tick: Any) -> int:
        timeout = aiohttp.ClientTimeout(total=ANSWER_TIMEOUT_S)
        connector = aiohttp.TCPConnector(limit=4000)  # open-loop: never queue at the client
        running: set[asyncio.Task[None]] = set()
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
            started = time.monotonic()
            for n in itertools.count():
                at = started + n / rate
                if at - started >= seconds:
                    break
                delay = at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(self.one(http, n))
                running.add(task)
                task.add_done_callback(running.discard)
                on_tick(time.monotonic() - started)
            await asyncio.gather(*running)
        return n


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()

    def log(line: str) -> None:
        print(f"{time.monotonic() - started:7.1f} s  {line}", flush=True)

    with tempfile.TemporaryDirectory(prefix="coupons-soak-") as tmp:
        env = {"RATE_LIMIT_KEYS_MAX": str(args.rate_limit_keys)}
        stack = systems.start(Path(tmp), log, args.workers, compared=False, extra_env=env)
        try:
            report = _soak(args, stack, log)
        finally:
            stack.stop()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"soak-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    _print(report, log)
    log(f"report: {path}")
    return 0 if report["ok"] else 1


def _soak(args: argparse.Namespace, stack: systems.Systems, log: Any) -> dict[str, Any]:
    people = args.rate * args.minutes * 60 * NEW_PEOPLE_SHARE
    # The soak measures memory over time: people may claim again (no daily rule).
    coupons = [
        stack.create_coupon(COUPON_UNITS, daily_limit=False)
        for _ in range(int(people // COUPON_UNITS) + 1)
    ]
    sold_out = stack.create_coupon(1, daily_limit=False)
    load = Load(stack.part("gateway").url, stack.secret, coupons, sold_out)
    ours = ("allocator", "notifier", "gateway")
    processes = {name: stack.part(name).process.pid for name in ours}
    processes["broker"] = stack.infra.broker.process.pid
    processes["postgres"] = stack.infra.postgres.process.pid
    processes["load"] = os.getpid()
    samples = Samples()
    next_sample = [0.0]
    last_log = [0.0]
    seen = [0, 0]  # answers and claims answered 202 at the last log line

    def on_tick(elapsed: float) -> None:
        if elapsed >= next_sample[0]:
            samples.take(processes, elapsed / 60)
            next_sample[0] += args.sample_s
        if elapsed - last_log[0] >= 60:
            last_log[0] = elapsed
            back = max(1, round(60 / args.sample_s))
            rss = ", ".join(f"{k} {v[-1]:.0f}" for k, v in samples.rss.items())
            cpu = ", ".join(f"{k} {samples.cpu_share(k, back):.0f}" for k in samples.cpu)
            recent = sorted(load.latency[seen[0] :])
            waited = load.statuses["claim 202"] - seen[1]
            seen[:] = [len(load.latency), load.statuses["claim 202"]]
            p50 = recent[len(recent) // 2] * 1000 if recent else 0.0
            log(f"{elapsed / 60:.0f} min: {sum(load.statuses.values())} answered "
                f"(last minute: p50 {p50:.0f} ms, {waited} claims answered 202); "
                f"RSS MiB {rss}; CPU % {cpu}")  # fmt: skip

    log(f"soak: {args.rate:.0f} requests/s for {args.minutes} min")
    seconds = args.minutes * 60
    sent = asyncio.run(load.run(args.rate, seconds, on_tick))
    samples.take(processes, seconds / 60)
    verdicts = judge(samples, args.warmup_minutes)
    latency = sorted(load.latency)
    failures = sum(
        v for k, v in load.statuses.items() if not k.rsplit(" ", 1)[1].isdigit()
        or k.rsplit(" ", 1)[1].startswith("5")
    )  # fmt: skip
    ok = failures == 0 and all(v["flat"] for v in verdicts.values() if v["judged"])
    return {
        "minutes": args.minutes,
        "rate_per_s": args.rate,
        "requests": sent,
        "answers": dict(sorted(load.statuses.items())),
        "failures": failures,
        "p50_ms": round(latency[len(latency) // 2] * 1000, 1) if latency else None,
        "p99_ms": ms(latency, 0.99),
        "rss": verdicts,
        "samples": {"minutes": samples.at, "rss_mib": samples.rss},
        "ok": ok,
    }


def _print(report: dict[str, Any], log: Any) -> None:
    log(f"answers: {report['answers']}; p50 {report['p50_ms']} ms, p99 {report['p99_ms']} ms")
    for name, v in report["rss"].items():
        verdict = {True: "flat", False: "GROWING", None: "shown only"}[v["flat"]]
        sizes = f"{v['start_mib']:7.1f} → {v['after_warmup_mib']} → {v['end_mib']:7.1f} MiB"
        log(f"{name:>10}: {sizes}, fitted {v['growth_mib_per_min']:+.3f} MiB/min ({verdict})")
