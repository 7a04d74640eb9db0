"""Apache Kafka's own limits, which Tansu forgives: topics that would refuse the largest
message a part may make are found before the part serves, not when a decision cannot be
published while its partition waits behind it."""

import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from deploy.stack import Infra
from runtime.kafka import FRAMING_BYTES_MAX
from runtime.settings import COMMAND_PARTITIONS
from schemas.messages import MESSAGE_BYTES_MAX
from schemas.topics import Topics
from tests.support.stack import launched_stack

pytestmark = pytest.mark.integration

TOO_SMALL = 100_000  # bytes: far below a decision at its bound (MESSAGE_BYTES_MAX)


async def small_topics(bootstrap: str, prefix: str) -> None:
    """The decisions topic made ahead, as an operator might, with a limit too small."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topic = NewTopic(
            Topics(prefix).decisions, COMMAND_PARTITIONS, 1,
            topic_configs={"max.message.bytes": str(TOO_SMALL)},
        )  # fmt: skip
        await admin.create_topics([topic])
    finally:
        await admin.close()


def test_a_topic_that_would_refuse_a_decision_stops_the_allocator_at_start(
    infra: Infra,
) -> None:
    stack = launched_stack(infra, "small-topics", None, launch=False)
    asyncio.run(small_topics(infra.broker.bootstrap_servers, stack.env["COUPONS_TOPIC_PREFIX"]))
    try:
        if infra.broker_kind == "kafka":
            with pytest.raises(RuntimeError) as refused:
                stack.start_allocator()
            said = str(refused.value)
            assert f"takes messages of at most {TOO_SMALL} bytes" in said, said
            assert f"ours may be {MESSAGE_BYTES_MAX + FRAMING_BYTES_MAX}" in said, said
            assert "Traceback" not in said, said
        else:
            # Tansu takes the setting and keeps no limit, and does not say one when asked:
            # the part starts, saying it could not check.
            stack.start_allocator()
            said = (stack.log_dir / "allocator.log").read_text()
            assert "the broker does not say its message limit" in said, said
    finally:
        stack.stop()
