"""The gateway's edge counts (gateway/tally.py): one message per coupon and window, with
its first and last answer; counts the broker did not take are sent with the next."""

import asyncio

import pytest

from gateway import tally
from gateway.tally import EdgeTally
from runtime.produce import Message
from schemas.messages import decode_edge


def test_counts_become_one_message_per_coupon_and_start_again() -> None:
    edge = EdgeTally(None, "edge", "gw-1")  # never sends here
    edge.since_ms = 1_000
    for reason, at in (("sold_out", 1_200), ("sold_out", 1_500), ("retry", 1_700)):
        edge.count("c1", reason, at)
    edge.count("c2", "not_started", 1_300)
    sent = {key: decode_edge(value) for _, key, value in edge.messages(2_000)}
    assert set(sent) == {b"c1", b"c2"}  # keyed by coupon, as the commands are
    one = sent[b"c1"]
    assert (one.gateway_id, one.from_ms, one.to_ms) == ("gw-1", 1_000, 2_000)
    assert (one.reasons, one.first_ms, one.last_ms) == ({"sold_out": 2, "retry": 1}, 1_200, 1_700)
    assert edge.messages(3_000) == []  # nothing counted since


def test_counts_the_broker_refused_go_with_the_next_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batches: list[list[Message]] = []

    async def send_all(_producer: object, messages: list[Message]) -> None:
        if not batches:
            batches.append([])
            raise ConnectionError("broker away")
        batches.append(messages)

    monkeypatch.setattr(tally, "send_all", send_all)
    edge = EdgeTally(None, "edge", "gw-1")
    edge.count("c1", "sold_out", 10)
    asyncio.run(edge._append())  # refused
    edge.count("c1", "sold_out", 20)
    asyncio.run(edge._append())
    (delivered,) = [decode_edge(value) for _, _, value in batches[-1]]
    assert delivered.reasons == {"sold_out": 2} and (delivered.first_ms, delivered.last_ms) == (
        10,
        20,
    )
