"""`coupons gateway --workers N`: N gateway processes sharing one port.

Each worker is a whole gateway (its own producer, reply topic and edge statuses) bound with
SO_REUSEPORT, so the kernel spreads connections over them. Gateways are stateless, so this
is the same as running N gateways behind a balancer, on one port. The supervisor restarts
a worker that dies and stops them all on SIGTERM or SIGINT.
"""

import asyncio
import logging
import os
import signal
import sys

log = logging.getLogger(__name__)

STOP_GRACE_S = 10.0
RESTART_BACKOFF_S_MAX = 30.0
STEADY_S = 10.0  # a worker that lived this long restarts without backoff


def worker_env(base: dict[str, str], index: int) -> dict[str, str]:
    env = {**base, "GATEWAY_REUSE_PORT": "1", "GATEWAY_WORKERS": "1"}
    if base.get("GATEWAY_ID"):  # each worker reads its own reply topic
        env["GATEWAY_ID"] = f"{base['GATEWAY_ID']}-w{index}"
    return env


async def _worker(index: int, stop: asyncio.Event) -> None:
    backoff = 0.5
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        started = loop.time()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "deploy.cli", "gateway", env=worker_env(dict(os.environ), index)
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


async def supervise(workers: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("starting %d gateway workers", workers)
    await asyncio.gather(*(_worker(i, stop) for i in range(workers)))
