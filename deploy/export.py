"""`coupons export`: the command or decision log as JSON Lines, CSV or Parquet, for
notebooks, with a progress bar on the terminal.

Every row says where the record sits (`partition`, `offset`, broker `timestamp`) and what
it is (`kind` or `outcome`, `request_id`, `coupon_id`, `user_id`, `at_ms`). JSON Lines
carries the whole message besides; CSV and Parquet carry it as a JSON `message` column.
Parquet needs `pyarrow` (`pip install 'coupons[analysis]'`).
"""

import csv
import json
import sys
from pathlib import Path
from typing import Any, TextIO, TypeAlias

from aiokafka import ConsumerRecord
from tqdm import tqdm

from runtime import kafka
from runtime.settings import Settings
from schemas import logmarks
from schemas.topics import Topics

FORMATS = ("jsonl", "csv", "parquet")
LOGS = ("commands", "decisions")
PLACE = ("partition", "offset", "timestamp")
NUMBERS = ("partition", "offset", "timestamp", "at_ms")
COLUMNS = {
    "commands": (*PLACE, "kind", "request_id", "coupon_id", "user_id", "at_ms"),
    "decisions": (
        *PLACE, "outcome", "reason", "request_id", "coupon_id", "user_id", "at_ms", "grant_id",
    ),
}  # fmt: skip
PARQUET_ROWS_PER_GROUP = 10_000

Record: TypeAlias = ConsumerRecord[bytes, bytes]


class ExportError(Exception):
    pass


def flat(which: str, record: Record, message: dict[str, Any]) -> dict[str, Any]:
    """One record as a row of COLUMNS (a decision's grant id lifted out of its grant)."""
    grant = message.get("grant")
    fields = {
        **message,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "grant_id": grant.get("id") if isinstance(grant, dict) else None,
    }
    return {name: fields.get(name) for name in COLUMNS[which]}


class Writer:
    """Rows to one file (or standard output), in the format asked for."""

    def __init__(self, which: str, fmt: str, out: Path | None) -> None:
        if fmt == "parquet" and out is None:
            raise ExportError("Parquet is binary: give --out FILE")
        self.fmt = fmt
        self.columns = [*COLUMNS[which], "message"]
        self.file: TextIO = sys.stdout
        if out is not None and fmt != "parquet":
            self.file = open(out, "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.csv = csv.DictWriter(self.file, fieldnames=self.columns) if fmt == "csv" else None
        if self.csv:
            self.csv.writeheader()
        self.parquet: Any = None
        self.pending: list[dict[str, Any]] = []
        if fmt == "parquet":
            self.parquet = _parquet_writer(out, self.columns)

    def write(self, row: dict[str, Any], message: dict[str, Any]) -> None:
        if self.fmt == "jsonl":
            self.file.write(json.dumps({**row, "message": message}, ensure_ascii=False) + "\n")
            return
        row = {**row, "message": json.dumps(message, ensure_ascii=False)}
        if self.csv:
            self.csv.writerow(row)
            return
        self.pending.append(row)
        if len(self.pending) >= PARQUET_ROWS_PER_GROUP:
            self._flush()

    def close(self) -> None:
        if self.parquet is not None:
            self._flush()
            self.parquet.close()
        elif self.file is not sys.stdout:
            self.file.close()
        else:
            self.file.flush()

    def _flush(self) -> None:
        import pyarrow as pa

        columns = {name: [row[name] for row in self.pending] for name in self.columns}
        self.parquet.write_table(pa.Table.from_pydict(columns, schema=self.parquet.schema))
        self.pending = []


def _parquet_writer(out: Path | None, columns: list[str]) -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as error:
        raise ExportError("Parquet needs pyarrow: pip install 'coupons[analysis]'") from error
    schema = pa.schema([(name, pa.int64() if name in NUMBERS else pa.string()) for name in columns])
    return pq.ParquetWriter(out, schema)


async def export(
    settings: Settings, which: str, fmt: str, out: Path | None, since_ms: int, until_ms: int
) -> int:
    """Write one log, in log order per partition; the number of records written."""
    writer = Writer(which, fmt, out)
    topics = Topics(settings.topic_prefix)
    topic = topics.commands if which == "commands" else topics.decisions
    written = 0
    try:
        total = await kafka.topic_size(settings, topic)
        with tqdm(total=total, unit=" records", desc=which, file=sys.stderr, disable=None) as bar:
            async for records in kafka.read_to_end(settings, topic):
                bar.update(len(records))
                for record in records:
                    if (
                        logmarks.is_mark(record.value)
                        or not since_ms <= record.timestamp < until_ms
                    ):
                        continue
                    try:
                        message = json.loads(record.value or b"")
                    except ValueError:
                        message = {"unreadable": (record.value or b"").decode(errors="replace")}
                    writer.write(flat(which, record, message), message)
                    written += 1
    finally:
        writer.close()
    return written
