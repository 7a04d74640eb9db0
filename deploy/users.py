"""`coupons users import users.csv`: pre-populate people and their display names.

People are a directory, not coupon state: claims never wait for a user row, so this is
written straight to PostgreSQL rather than through the log. Importing again updates
display names; nobody is deleted.
"""

import csv
from pathlib import Path

import asyncpg

from schemas.storable import USER_ID_CHARS_MAX, text_fault

DISPLAY_NAME_CHARS_MAX = 200
ROWS_PER_COPY = 10_000


class BadFile(ValueError):
    """The file is not a users CSV; nothing was imported."""


def read_users(path: Path) -> list[tuple[str, str]]:
    """(id, display name) rows from a CSV with a header naming `id` and `display_name`."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return _rows(path, csv.DictReader(handle))
    except UnicodeDecodeError as error:
        raise BadFile(f"{path}: not UTF-8 ({error})") from error
    except csv.Error as error:
        raise BadFile(f"{path}: not a CSV file ({error})") from error


def _rows(path: Path, reader: "csv.DictReader[str]") -> list[tuple[str, str]]:
    if not reader.fieldnames or not {"id", "display_name"} <= set(reader.fieldnames):
        raise BadFile(f"{path}: the header must name the columns id and display_name")
    rows: dict[str, str] = {}
    for line, row in enumerate(reader, start=2):
        user_id, name = (row["id"] or "").strip(), (row["display_name"] or "").strip()
        if not 0 < len(user_id) <= USER_ID_CHARS_MAX:
            raise BadFile(f"{path}:{line}: id must be 1 to {USER_ID_CHARS_MAX} characters")
        if len(name) > DISPLAY_NAME_CHARS_MAX:
            raise BadFile(f"{path}:{line}: display_name is too long")
        for column, value in (("id", user_id), ("display_name", name)):
            why = text_fault(value)
            if why is not None:
                raise BadFile(f"{path}:{line}: {column} {why}")
        rows[user_id] = name  # the last row for an id wins
    return list(rows.items())


async def import_users(url: str, rows: list[tuple[str, str]]) -> int:
    """Upsert all rows in one transaction: a failed import changes nothing."""
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute(
                "CREATE TEMP TABLE users_in (id text, display_name text) ON COMMIT DROP"
            )
            for start in range(0, len(rows), ROWS_PER_COPY):
                await conn.copy_records_to_table(
                    "users_in", records=rows[start : start + ROWS_PER_COPY]
                )
            await conn.execute(
                "INSERT INTO users (id, display_name) SELECT id, display_name FROM users_in"
                " ON CONFLICT (id) DO UPDATE SET display_name = EXCLUDED.display_name"
            )
    finally:
        await conn.close()
    return len(rows)
