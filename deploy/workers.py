"""`coupons gateway --workers N`: N gateway processes sharing one port.

Each worker is a whole gateway (its own producer, reply topic and edge statuses) bound with
SO_REUSEPORT, so the kernel spreads connections over them. Gateways are stateless, so this
is the same as running N gateways behind a balancer, on one port. The supervisor restarts
a worker that dies and stops them all on SIGTERM or SIGINT.

Their metrics are one part's: each worker writes its values to files in one directory
(Prometheus' multiprocess mode, PROMETHEUS_MULTIPROC_DIR), and whichever worker answers
a scrape sums them all (runtime/http.py). A dead worker's counters stay in the sums; its
live gauges are dropped.
"""

import asyncio
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from prometheus_client import multiprocess

from runtime.http import MULTIPROC_DIR

log = logging.getLogger(__name__)

STOP_GRACE_S = 10.0
RESTART_BACKOFF_S_MAX = 30.0
STEADY_S = 10.0  # a worker that lived this long restarts without backoff


def worker_env(base: dict[str, str], index: int, metrics_dir: str) -> dict[str, str]:
    env = {**base, "GATEWAY_REUSE_PORT": "1", "GATEWAY_WORKERS": "1", MULTIPROC_DIR: metrics_dir}
    if base.get("GATEWAY_ID"):  # each worker reads its own reply topic
        env["GATEWAY_ID"] = f"{base['GATEWAY_ID']}-w{index}"
    return env


async def _worker(index: int, stop: asyncio.Event, metrics_dir: str) -> None:
    backoff = 0.5
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        started = loop.time()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cli",
            "gateway",
            env=worker_env(dict(os.environ), index, metrics_dir),
        )
        waiting = asyncio.create_task(process.wait())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            stopping.cancel()
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(asyncio.shield(waiting), STOP_GRACE_S)
                except TimeoutError:
                    process.kill()
                    await waiting
            return
        stopping.cancel()
        multiprocess.mark_process_dead(process.pid, metrics_dir)  # type: ignore[no-untyped-call]
        lived = loop.time() - started
        backoff = 0.5 if lived >= STEADY_S else min(backoff * 2, RESTART_BACKOFF_S_MAX)
        log.warning(
            "gateway worker %d (pid %d) exited with %s; restarting in %.1f s",
            index,
            process.pid,
            process.returncode,
            backoff,
        )
        try:
            await asyncio.wait_for(stop.wait(), backoff)
        except TimeoutError:
            pass


def run_workers(workers: int) -> None:
    """Supervise `workers` gateway processes until SIGTERM or SIGINT, their metrics summed
    in the operator's PROMETHEUS_MULTIPROC_DIR, else in a directory of our own."""
    given = os.environ.get(MULTIPROC_DIR)
    metrics_dir = given or tempfile.mkdtemp(prefix="coupons-gateway-metrics-")
    for stale in Path(metrics_dir).glob("*.db"):  # a last run's values would be summed in
        stale.unlink()
    try:
        asyncio.run(supervise(workers, metrics_dir))
    finally:
        if not given:
            shutil.rmtree(metrics_dir, ignore_errors=True)


async def supervise(workers: int, metrics_dir: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("starting %d gateway workers (metrics summed in %s)", workers, metrics_dir)
    await asyncio.gather(*(_worker(i, stop, metrics_dir) for i in range(workers)))
