"""`coupons export`: the command or decision log, or the grants and their audit trail, as
JSON Lines, CSV or Parquet, for notebooks, with a progress bar on the terminal.

A log's row says where the record sits (`partition`, `offset`, broker `timestamp`) and
what it is (`kind` or `outcome`, `request_id`, `coupon_id`, `user_id`, `at_ms`). JSON Lines
carries the whole message besides; CSV and Parquet carry it as a JSON `message` column.
`grants` and `events` are PostgreSQL's rows (tables `grants`, `grant_events`), every
column, times as milliseconds since the epoch (`…_ms`) like the logs' `at_ms`.
Parquet needs `pyarrow` (`pip install 'coupons[analysis]'`).
"""

import csv
import json
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO, TypeAlias

import asyncpg
from aiokafka import ConsumerRecord
from tqdm import tqdm

from runtime import kafka
from runtime.errors import BadInput
from runtime.settings import Settings
from schemas import logmarks
from schemas.topics import Topics

FORMATS = ("jsonl", "csv", "parquet")
LOGS = ("commands", "decisions")
TABLES = {  # what a table export reads, in the order it happened: (query, time column)
    "grants": ("SELECT * FROM grants WHERE granted_at >= $1 AND granted_at < $2"
               " ORDER BY granted_at, id", "granted_at"),
    "events": ("SELECT * FROM grant_events WHERE at >= $1 AND at < $2 ORDER BY id", "at"),
}  # fmt: skip
WHAT = (*LOGS, *TABLES)
ROWS_PER_FETCH = 5_000
INTEGERS = ("int2", "int4", "int8", "timestamptz")
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


class ExportError(BadInput):
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

    def __init__(
        self, columns: list[str], fmt: str, out: Path | None, integers: tuple[str, ...] = NUMBERS
    ) -> None:
        if fmt == "parquet" and out is None:
            raise ExportError("Parquet is binary: give --out FILE")
        self.fmt = fmt
        self.columns = columns
        self.file: TextIO = sys.stdout
        if out is not None and fmt != "parquet":
            self.file = open(out, "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.csv = csv.DictWriter(self.file, fieldnames=self.columns) if fmt == "csv" else None
        if self.csv:
            self.csv.writeheader()
        self.parquet: Any = None
        self.pending: list[dict[str, Any]] = []
        if fmt == "parquet":
            self.parquet = _parquet_writer(out, self.columns, integers)

    def write(self, row: dict[str, Any], message: dict[str, Any] | None = None) -> None:
        if self.fmt == "jsonl":
            whole = row if message is None else {**row, "message": message}
            self.file.write(json.dumps(whole, ensure_ascii=False) + "\n")
            return
        if message is not None:
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


def _parquet_writer(out: Path | None, columns: list[str], integers: tuple[str, ...]) -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as error:
        raise ExportError("Parquet needs pyarrow: pip install 'coupons[analysis]'") from error
    kinds = [(name, pa.int64() if name in integers else pa.string()) for name in columns]
    schema = pa.schema(kinds)
    return pq.ParquetWriter(out, schema)


async def export(
    settings: Settings, which: str, fmt: str, out: Path | None, since_ms: int, until_ms: int
) -> int:
    """Write one log (in log order per partition) or table; the number of rows written."""
    if which in TABLES:
        return await export_table(settings, which, fmt, out, since_ms, until_ms)
    writer = Writer([*COLUMNS[which], "message"], fmt, out)
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


async def export_table(
    settings: Settings, which: str, fmt: str, out: Path | None, since_ms: int, until_ms: int
) -> int:
    """Write the rows of `grants` or `grant_events` that happened in [since, until)."""
    query, _ = TABLES[which]
    bounds = (datetime.fromtimestamp(since_ms / 1000, UTC), _until(until_ms))
    conn = await asyncpg.connect(settings.database_url)
    written = 0
    try:
        statement = await conn.prepare(query)
        attributes = statement.get_attributes()
        names = [_column(a.name, a.type.name) for a in attributes]
        integers = tuple(
            n for n, a in zip(names, attributes, strict=True) if a.type.name in INTEGERS
        )
        writer = Writer(names, fmt, out, integers)
        try:
            async with conn.transaction():
                async for record in statement.cursor(*bounds, prefetch=ROWS_PER_FETCH):
                    values = zip(names, record.values(), strict=True)
                    writer.write({name: _value(value) for name, value in values})
                    written += 1
        finally:
            writer.close()
    finally:
        await conn.close()
    return written


def _until(until_ms: int) -> datetime:
    return datetime.fromtimestamp(min(until_ms, MS_MAX) / 1000, UTC)


MS_MAX = 253_402_300_799_000  # 9999-12-31T23:59:59Z: datetime's end


def _column(name: str, kind: str) -> str:
    return f"{name}_ms" if kind == "timestamptz" else name


def _value(value: Any) -> Any:
    """A column's value as JSON, CSV and Parquet all hold it."""
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value
