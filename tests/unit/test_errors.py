"""Failures keep their nature (issue 23, 6): what the broker refuses for what a request is
is never waited out as an outage, and no message we make can be one it refuses."""

import uuid

import asyncpg
import orjson
import pytest
from aiokafka import errors as kafka

from runtime import errors, http
from runtime.kafka import FRAMING_BYTES_MAX, REQUEST_BYTES_MAX
from schemas.messages import (
    COMMAND_BYTES_MAX,
    MESSAGE_BYTES_MAX,
    CouponStatus,
    Decision,
    Distribute,
    Plan,
    encode,
)
from schemas.storable import USER_ID_CHARS_MAX, USERS_PER_DISTRIBUTION_MAX
from tests.support.simulation import create

REFUSED = [
    kafka.MessageSizeTooLargeError(),
    kafka.RecordTooLargeError(),
    kafka.RecordListTooLargeError(),
    kafka.TopicAuthorizationFailedError(),
    kafka.InvalidTopicError(),
]
OUTAGES = [
    kafka.KafkaTimeoutError(),  # aiokafka calls it final; it is a broker not answering
    kafka.KafkaConnectionError("gone"),
    kafka.NotLeaderForPartitionError(),
    kafka.RequestTimedOutError(),
    kafka.BrokerNotAvailableError(),
]


@pytest.mark.parametrize("error", REFUSED, ids=lambda e: type(e).__name__)
def test_what_the_broker_refuses_for_what_it_is_is_not_retried(error: Exception) -> None:
    assert isinstance(errors.of(error), errors.BrokerRefused)
    assert not errors.retriable(error) and not errors.unavailable(error)


@pytest.mark.parametrize("error", OUTAGES, ids=lambda e: type(e).__name__)
def test_a_broker_away_is_waited_out(error: Exception) -> None:
    assert isinstance(errors.of(error), errors.BrokerUnavailable)
    assert errors.retriable(error) and errors.unavailable(error)


def test_an_error_without_words_is_named() -> None:
    """Before: 'batch at 1234 failed (); retrying' for a statement cut by its timeout."""
    assert errors.said(TimeoutError()) == "TimeoutError"
    assert errors.said(asyncpg.QueryCanceledError()) == "QueryCanceledError"
    assert errors.said(kafka.MessageSizeTooLargeError()) == "[Error 10] MessageSizeTooLargeError"
    assert errors.said(ValueError("x")) == "ValueError: x"


def test_the_largest_command_echoed_in_full_is_still_a_message() -> None:
    """A distribution's decision names each person again, with the longest reason: at the
    command bound it must still fit the message bound, which fits Kafka's and aiokafka's."""
    assert MESSAGE_BYTES_MAX + FRAMING_BYTES_MAX <= REQUEST_BYTES_MAX
    id_chars = (COMMAND_BYTES_MAX - 400) // USERS_PER_DISTRIBUTION_MAX - 3  # quotes, comma
    assert id_chars <= USER_ID_CHARS_MAX
    people = tuple(f"{n:05d}" + "x" * (id_chars - 5) for n in range(USERS_PER_DISTRIBUTION_MAX))
    command = Distribute(
        "00000000-0000-4000-9000-000000000001", "00000000-0000-4000-8000-000000000001",
        "admin", people, "equal", 1, "s" * 200, False, 0, "r" * 249,
    )  # fmt: skip
    assert len(encode(command)) <= COMMAND_BYTES_MAX
    status = CouponStatus(command.coupon_id, create(1, 10).spec, 0, codes_left=10)
    plan = Plan("equal", False, (), tuple((p, "already_claimed") for p in people))
    decision = Decision(
        command.request_id, command.coupon_id, "admin", "rejected", "per_user_limit", 0,
        command.reply_to, coupon=status, plan=plan,
    )  # fmt: skip
    assert len(encode(decision)) <= MESSAGE_BYTES_MAX, len(encode(decision))
    assert orjson.loads(encode(decision))["plan"]["skipped"][0][0] == people[0]


def test_a_dependency_down_is_said_once_a_second_per_route(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every request on a route answered 503 while a dependency is down: the log gets the
    first, then one line a second saying how many it stands for, not one line a request."""
    down = ConnectionRefusedError("the broker is down")
    tickets = f"/v1/tickets/{uuid.uuid4()}"  # routes no other test has said anything on
    claims = f"/v1/claims/{uuid.uuid4()}"
    with caplog.at_level("WARNING", logger="runtime.http"):
        for i in range(450):  # 450 requests in 2.25 s, 200 a second
            http.say_unavailable(tickets, down, 1000.0 + i / 200)
        http.say_unavailable(claims, down, 1002.0)  # another route is said apart
    said = f"dependency failure on {tickets}: the broker is down"
    assert [r.getMessage() for r in caplog.records] == [
        said,
        f"{said} (and 199 more since the last line)",
        f"{said} (and 199 more since the last line)",
        f"dependency failure on {claims}: the broker is down",
    ]
