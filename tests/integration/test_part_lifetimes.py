"""A part stops what it started, however it ends: a failure at any step of its start
included (issue 27: a failure after the notifier's forwarder started left it running)."""

import asyncio
import socket
from types import ModuleType

import pytest

from gateway import app as gateway_app
from notifier import app as notifier_app
from runtime.settings import Settings
from tests.support.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.shares_stack]
ENDS_WITHIN_S = 60.0


@pytest.mark.parametrize(
    ("part", "port"), [(gateway_app, "GATEWAY_PORT"), (notifier_app, "NOTIFIER_PORT")]
)
async def test_a_part_that_cannot_listen_stops_what_it_had_started(
    stack: Stack, part: ModuleType, port: str
) -> None:
    """Its port is taken: the last step of its start fails, after its pool, its producer,
    its readers and its tasks have started. Nothing of them may be left behind."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = Settings.from_env({**stack.env, port: str(taken.getsockname()[1])})
        before = asyncio.all_tasks()
        with pytest.raises(OSError):
            await asyncio.wait_for(part.run(settings, asyncio.Event()), ENDS_WITHIN_S)
    left = asyncio.all_tasks() - before - {asyncio.current_task()}
    assert not left, left
