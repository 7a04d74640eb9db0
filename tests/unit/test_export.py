"""The pure parts of `coupons export`: rows, and a clear word when Parquet cannot be written."""

import sys
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord

from deploy.export import COLUMNS, ExportError, Writer, flat


def record(offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("t", 2, offset, 1_700_000_000_000, 0, b"k", b"{}", None, 1, 2, ())


def test_a_decision_row_lifts_the_grant_id_and_keeps_its_place() -> None:
    decision = {"outcome": "granted", "request_id": "r", "grant": {"id": "g", "code": "C"}}
    row = flat("decisions", record(7), decision)
    assert list(row) == list(COLUMNS["decisions"])
    assert (row["partition"], row["offset"], row["grant_id"], row["reason"]) == (2, 7, "g", None)


def test_parquet_without_pyarrow_or_without_a_file_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(ExportError, match="--out"):
        Writer(["kind"], "parquet", None)
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if it were not installed
    with pytest.raises(ExportError, match=r"pip install 'coupons\[analysis\]'"):
        Writer(["kind"], "parquet", tmp_path / "x.parquet")
