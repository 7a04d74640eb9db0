"""A live reader goes on from a new log's start only when the log's end stays below its
position: a broker restarted empty, not a failover's moment of a lower high watermark."""

import asyncio
import time
from typing import Any

import pytest
from aiokafka import TopicPartition

from runtime import kafka

TP = TopicPartition("coupon.status", 0)


class Reader:
    """What follow_new_logs asks of a consumer, and the seeks it makes."""

    def __init__(self, position: int, end: int) -> None:
        self.position_, self.end, self.seeks = position, end, 0

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def highwater(self, tp: TopicPartition) -> int:
        return self.end

    async def position(self, tp: TopicPartition) -> int:
        return self.position_

    async def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.seeks += 1


def looks(reader: Any, clock: list[float], monkeypatch: pytest.MonkeyPatch, at: float) -> int:
    clock[0] = at
    asyncio.run(kafka.follow_new_logs(reader))
    seeks: int = reader.seeks
    return seeks


def test_an_end_below_the_position_for_a_moment_is_not_a_new_log(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    reader = Reader(position=216, end=200)  # a new leader's high watermark, behind
    assert looks(reader, clock, monkeypatch, 0.0) == 0
    assert looks(reader, clock, monkeypatch, kafka.NEW_LOG_AFTER_S - 1) == 0
    reader.end = 230  # caught up: the log was the same all along
    assert looks(reader, clock, monkeypatch, kafka.NEW_LOG_AFTER_S + 1) == 0
    reader.end = 200  # below again: the wait starts over
    assert looks(reader, clock, monkeypatch, kafka.NEW_LOG_AFTER_S + 2) == 0
    assert looks(reader, clock, monkeypatch, 2 * kafka.NEW_LOG_AFTER_S + 1) == 0


def test_an_end_that_stays_below_the_position_is_a_new_log(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    reader: Any = Reader(position=216, end=3)  # the broker restarted empty
    assert looks(reader, clock, monkeypatch, 0.0) == 0
    assert looks(reader, clock, monkeypatch, kafka.NEW_LOG_AFTER_S) == 1
