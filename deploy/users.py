"""`coupons users import users.csv`: pre-populate people and their display names.

People are a directory, not coupon state: claims never wait for a user row, so this is
written straight to PostgreSQL rather than through the log. Importing again updates
display names; nobody is deleted.
"""

import csv
from pathlib import Path

import asyncpg

USER_ID_CHARS_MAX = 200
DISPLAY_NAME_CHARS_MAX = 200
ROWS_PER_COPY = 10_000


class BadFile(ValueError):
    """The file is not a users CSV; nothing was imported."""


def read_users(path: Path) -> list[tuple[str, str]]:
    """(id, display name) rows from a CSV with a header naming `id` and `display_name`."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"id", "display_name"} <= set(reader.fieldnames):
            raise BadFile(f"{path}: the header must name the columns id and display_name")
        rows: dict[str, str] = {}
        for line, row in enumerate(reader, start=2):
            user_id, name = (row["id"] or "").strip(), (row["display_name"] or "").strip()
            if not 0 < len(user_id) <= USER_ID_CHARS_MAX:
                raise BadFile(f"{path}:{line}: id must be 1 to {USER_ID_CHARS_MAX} characters")
            if len(name) > DISPLAY_NAME_CHARS_MAX:
                raise BadFile(f"{path}:{line}: display_name is too long")
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
