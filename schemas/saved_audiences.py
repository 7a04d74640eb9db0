"""Saved audiences: named lists of people an admin distributes a coupon to.

An audience is a directory, like `users`, not coupon state: the gateway writes it straight
to PostgreSQL, and a distribution to one carries the members it was read with, so the log
alone replays it. Each save takes a new version from one sequence; a preview names the
version it was made with, and applying it with that version refuses a list saved since.
Nothing here does IO.
"""

import re
from collections.abc import Sequence
from typing import cast

from schemas.storable import USERS_PER_DISTRIBUTION_MAX, user_ids_fault

NAME_CHARS_MAX = 64
NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{NAME_CHARS_MAX - 1}}}")
MEMBERS_MAX = USERS_PER_DISTRIBUTION_MAX  # an audience is distributed to in one command
AUDIENCES_LISTED_MAX = 1_000


def name_fault(name: str) -> str | None:
    """Why `name` cannot name an audience, or None. Names sit in URLs, so they are plain."""
    if NAME.fullmatch(name):
        return None
    return (
        f"an audience's name is 1 to {NAME_CHARS_MAX} letters, digits, '.', '_' or '-',"
        " starting with a letter or digit"
    )


def members(raw: Sequence[object]) -> tuple[tuple[str, ...], int]:
    """The people a list names, each once, in the order first named, and how many repeats
    were dropped. ValueError says what is wrong with the list: a member the id rule
    (schemas/storable.py) refuses, named by its place, or too few or too many people."""
    why = user_ids_fault(raw, "members")
    if why is not None:
        raise ValueError(why)
    kept = tuple(dict.fromkeys(cast(Sequence[str], raw)))
    if not 0 < len(kept) <= MEMBERS_MAX:
        raise ValueError(f"an audience has 1 to {MEMBERS_MAX} people, not {len(kept)}")
    return kept, len(raw) - len(kept)


LIST = f"""
SELECT name, version, cardinality(members) AS size, saved_at, saved_by
FROM audiences ORDER BY name LIMIT {AUDIENCES_LISTED_MAX}
"""

BY_NAME = "SELECT name, version, members, saved_at, saved_by FROM audiences WHERE name = $1"

# Saved whatever was there before: (version, saved_at, created).
SAVE = """
INSERT INTO audiences (name, members, saved_by) VALUES ($1, $2, $3)
ON CONFLICT (name) DO UPDATE
SET members = EXCLUDED.members, saved_by = EXCLUDED.saved_by,
    version = nextval('audience_versions'), saved_at = clock_timestamp()
RETURNING version, saved_at, (xmax = 0) AS created
"""

# Saved only when nothing by that name exists (If-None-Match: *).
CREATE = """
INSERT INTO audiences (name, members, saved_by) VALUES ($1, $2, $3)
ON CONFLICT (name) DO NOTHING
RETURNING version, saved_at, true AS created
"""

# Saved only over version $4 (If-Match).
REPLACE = """
UPDATE audiences
SET members = $2, saved_by = $3, version = nextval('audience_versions'),
    saved_at = clock_timestamp()
WHERE name = $1 AND version = $4
RETURNING version, saved_at, false AS created
"""

# Deleted when it exists and, given $2, is at that version.
DELETE = """
DELETE FROM audiences WHERE name = $1 AND ($2::bigint IS NULL OR version = $2)
RETURNING version
"""
