"""A part's start and stop, paired: each thing started is stopped, in the reverse order,
however the part ends, a failure at any step of its start included (a forwarder started
before the port turned out taken was left running)."""

import asyncio
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from typing import Any, Protocol, TypeVar


class Startable(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


S = TypeVar("S", bound=Startable)


async def started(parts: AsyncExitStack, thing: S) -> S:
    """`thing` started, and stopped when `parts` closes."""
    await thing.start()
    parts.push_async_callback(thing.stop)
    return thing


def running(
    parts: AsyncExitStack,
    stop: asyncio.Event,
    *work: "Coroutine[Any, Any, Any] | asyncio.Task[Any]",
    cancel: bool = False,
) -> list["asyncio.Task[Any]"]:
    """Tasks that end once `stop` is set. When `parts` closes, `stop` is set (a failure
    elsewhere may have ended the part first), each is cancelled if `cancel`, and each is
    awaited to its end."""
    tasks = [w if isinstance(w, asyncio.Task) else asyncio.create_task(w) for w in work]

    async def ended() -> None:
        stop.set()
        for task in tasks if cancel else ():
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    parts.push_async_callback(ended)
    return tasks
