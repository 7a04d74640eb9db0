"""`coupons users import users.csv`: pre-populate people and their display names.

People are a directory, not coupon state: claims never wait for a user row, so this is
written straight to PostgreSQL rather than through the log. Importing again updates
display names; nobody is deleted.

The file is read in bounded batches and copied as it is read, in one transaction: a bad
row anywhere, or a file past its bounds, imports nothing. Each id is held to the rule every
id is held to (schemas/storable.py); a cell's surrounding spaces are the file's layout and
are trimmed, as in every CSV the service reads.
"""

import io
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

from runtime.errors import BadInput
from runtime.requests import BrokenCsv, strict_csv
from schemas.storable import text_fault, user_id_fault

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

DISPLAY_NAME_CHARS_MAX = 200
ROWS_PER_COPY = 10_000
# The most a file may hold unless the operator says more (--bytes-max, --rows-max): a
# million people of 60 bytes or so each.
USERS_IMPORT_BYTES_MAX = 64 * 1024 * 1024
USERS_IMPORT_ROWS_MAX = 1_000_000

Row = tuple[int, str, str]  # the line it was read from, id, display name


class BadFile(BadInput):
    """The file is not a users CSV, or is past its bounds; nothing was imported."""


async def import_users(
    url: str,
    path: Path,
    rows_max: int = USERS_IMPORT_ROWS_MAX,
    bytes_max: int = USERS_IMPORT_BYTES_MAX,
) -> int:
    """Upsert every row of the file in one transaction (the last row for an id wins): a
    failed import changes nothing. How many people were imported."""
    with _opened(path, bytes_max) as handle:
        batches = _batches(path, strict_csv(handle), rows_max)
        first = next(batches, [])  # a small file is read and checked before connecting
        conn = await asyncpg.connect(url)
        try:
            async with conn.transaction():
                await conn.execute(
                    "CREATE TEMP TABLE users_in (line integer, id text, display_name text)"
                    " ON COMMIT DROP"
                )
                for batch in itertools.chain([first], batches):
                    await conn.copy_records_to_table("users_in", records=batch)
                imported: int = await conn.fetchval("SELECT count(DISTINCT id) FROM users_in")
                await conn.execute(
                    "INSERT INTO users (id, display_name)"
                    " SELECT DISTINCT ON (id) id, display_name FROM users_in"
                    " ORDER BY id, line DESC"
                    " ON CONFLICT (id) DO UPDATE SET display_name = EXCLUDED.display_name"
                )
        finally:
            await conn.close()
    return imported


def _opened(path: Path, bytes_max: int) -> io.TextIOWrapper:
    """The file as text, refused once more than `bytes_max` bytes are read from it (and at
    once when it is a regular file that large)."""
    too_large = BadFile(f"{path}: more than {bytes_max:,} bytes (--bytes-max to allow more)")
    try:
        if path.is_file() and path.stat().st_size > bytes_max:
            raise too_large
        raw = path.open("rb", buffering=0)
    except OSError as error:
        raise BadFile(f"{path}: {error.strerror or error}") from error
    bounded = io.BufferedReader(_Bounded(raw, bytes_max, too_large))
    return io.TextIOWrapper(bounded, encoding="utf-8-sig", errors="strict", newline="")


class _Bounded(io.RawIOBase):
    """A file that refuses to be read past `bytes_max` (a pipe has no size to look at)."""

    def __init__(self, raw: io.FileIO, bytes_max: int, too_large: BadFile) -> None:
        self.raw, self.left, self.too_large = raw, bytes_max, too_large

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: "WriteableBuffer", /) -> int:
        got = self.raw.readinto(buffer) or 0
        self.left -= got
        if self.left < 0:
            raise self.too_large
        return got

    def close(self) -> None:
        self.raw.close()
        super().close()


def _batches(
    path: Path, rows: Iterator[tuple[int, list[str]]], rows_max: int
) -> Iterator[list[Row]]:
    """The file's rows, checked, ROWS_PER_COPY at a time; BadFile names the line at fault."""
    try:
        header = next(rows, None)
        columns = [name.strip() for name in header[1]] if header else []
        if not {"id", "display_name"} <= set(columns):
            raise BadFile(f"{path}: the header must name the columns id and display_name")
        at_id, at_name = columns.index("id"), columns.index("display_name")
        batch: list[Row] = []
        for count, (line, cells) in enumerate(rows, start=1):
            if count > rows_max:
                raise BadFile(f"{path}: more than {rows_max:,} rows (--rows-max to allow more)")
            batch.append(_row(path, line, _cell(cells, at_id), _cell(cells, at_name)))
            if len(batch) == ROWS_PER_COPY:
                yield batch
                batch = []
        if batch:
            yield batch
    except UnicodeDecodeError as error:
        raise BadFile(f"{path}: not UTF-8 ({error})") from error
    except BrokenCsv as error:
        raise BadFile(f"{path}:{error.line}: {error.why}") from error


def _cell(cells: list[str], at: int) -> str:
    return cells[at].strip() if at < len(cells) else ""


def _row(path: Path, line: int, user_id: str, name: str) -> Row:
    why = user_id_fault(user_id)
    if why is not None:
        raise BadFile(f"{path}:{line}: id {why}")
    if len(name) > DISPLAY_NAME_CHARS_MAX:
        raise BadFile(f"{path}:{line}: display_name is longer than {DISPLAY_NAME_CHARS_MAX}")
    why = text_fault(name)
    if why is not None:
        raise BadFile(f"{path}:{line}: display_name {why}")
    return line, user_id, name
