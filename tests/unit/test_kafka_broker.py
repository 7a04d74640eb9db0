"""The Kafka launcher's pure parts (deploy/kafka_broker.py)."""

import uuid
from pathlib import Path

import pytest

from deploy import kafka_broker


def test_a_cluster_id_never_starts_with_a_dash_and_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 0xf8: base64's "-" first; kafka-storage would take such an id for an option.
    drawn = iter([uuid.UUID(bytes=b"\xf8" + b"\x00" * 15), uuid.UUID(int=7)])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(drawn))
    made = kafka_broker._cluster_id(tmp_path)
    assert made == "AAAAAAAAAAAAAAAAAAAABw"
    assert kafka_broker._cluster_id(tmp_path) == made  # kept, not drawn again
