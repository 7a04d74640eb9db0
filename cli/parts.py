"""`coupons gateway|allocator|notifier`: one part, configured by environment variables,
until SIGINT or SIGTERM. A failure is raised to the one failure path (cli/failures.py)."""

import argparse
import asyncio
import signal
from collections.abc import Awaitable, Callable

from runtime.settings import Settings

Runner = Callable[[Settings, asyncio.Event], Awaitable[None]]


def gateway(args: argparse.Namespace) -> int:
    count = args.workers or Settings.from_env().gateway_workers
    if count > 1:
        from deploy.workers import run_workers

        run_workers(count)
        return 0
    from gateway.app import run

    return _serve(run)


def gateway_arguments(gateway: argparse.ArgumentParser) -> None:
    gateway.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes sharing the port (SO_REUSEPORT); default GATEWAY_WORKERS or 1",
    )


def allocator(args: argparse.Namespace) -> int:
    from allocator.app import run

    return _serve(run)


def notifier(args: argparse.Namespace) -> int:
    from notifier.app import run

    return _serve(run)


def _serve(runner: Runner) -> int:
    settings = Settings.from_env()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await runner(settings, stop)

    with asyncio.Runner(loop_factory=_loop_factory(settings.event_loop)) as loop:
        loop.run(main())
    return 0


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop unless told otherwise: the same asyncio API, a faster loop and socket layer."""
    if name == "asyncio":
        return None
    import uvloop

    return uvloop.new_event_loop
