"""What happens to people's grants, told to the people with a live stream open.

The allocator records every transition of every grant in `grant_events`, in the same
transaction as the grant, so the read model is the whole account of a grant: also what
nobody asked for (a hold that lapsed, a unit passed to the next person in line). The
feed reads it forward by id. Ids come from a sequence and allocators of different
partitions commit out of id order, so an id missing below ones already read is waited
for (`GAP_WAIT_S`) before it is taken as a transaction that rolled back.

Events, by the transition: `granted` (a new grant, held or outright), `hold_expiring`
(a hold nears its deadline unconfirmed), `hold_released` (lapsed, cancelled or the
person left), `redeemed`, and `grant_changed` for the rest (confirmed, locked, revoked).
"""

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from notifier import sse
from runtime import errors
from schemas import readmodel
from schemas.messages import Grant
from schemas.views import grant_view, rfc3339

log = logging.getLogger(__name__)

FEED_POLL_S = 0.25
FEED_ROWS_MAX = 5000
GAP_WAIT_S = 5.0  # a transaction slower than this to commit is taken as rolled back
HOLD_EXPIRING_S = 30.0  # warn this long before a hold lapses (or at half a short hold)
HOLDS_WATCHED_MAX = 100_000

EVENTS_AFTER = """
SELECT e.id AS event_id, e.before, e.after, e.cause, g.*
FROM grant_events e JOIN grants g ON g.id = e.grant_id
WHERE e.id > $1 ORDER BY e.id LIMIT $2
"""
LAST_EVENT = "SELECT coalesce(max(id), 0) FROM grant_events"

Send = Callable[[str, bytes], None]  # (user id, framed event)


def event_name(before: str | None, after: str) -> str:
    if before is None:
        return "granted"
    if after == "released":
        return "hold_released"
    if after == "redeemed":
        return "redeemed"
    return "grant_changed"


def warn_at_ms(grant: Grant) -> int | None:
    """When to tell the person their hold is about to lapse (None: not a hold)."""
    if grant.state != "held" or grant.deadline_ms is None:
        return None
    lead_ms = min(HOLD_EXPIRING_S * 1000, (grant.deadline_ms - grant.granted_at_ms) / 2)
    return int(grant.deadline_ms - lead_ms)


@dataclass
class Cursor:
    """How far the feed has read: every id up to `floor` is told (or given up on)."""

    floor: int
    seen: set[int]
    gap_since: float | None = None

    def take(self, event_id: int) -> bool:
        """True the first time an id is read."""
        if event_id <= self.floor or event_id in self.seen:
            return False
        self.seen.add(event_id)
        return True

    def advance(self, now: float) -> None:
        while self.floor + 1 in self.seen:
            self.floor += 1
            self.seen.discard(self.floor)
        if not self.seen:
            self.gap_since = None
        elif self.gap_since is None:
            self.gap_since = now
        elif now - self.gap_since >= GAP_WAIT_S:
            self.floor = min(self.seen) - 1  # the missing ids never committed
            self.gap_since = None
            self.advance(now)


class GrantFeed:
    def __init__(
        self,
        pool: asyncpg.Pool,
        send: Send,
        watching: Callable[[str], bool],
        anyone: Callable[[], bool],
    ) -> None:
        self.pool = pool
        self.send = send
        self.watching = watching  # whether a person has a stream open here
        self.anyone = anyone  # whether any stream is open here
        self.cursor: Cursor | None = None
        self.holds: dict[str, tuple[Grant, int]] = {}  # grant id → (hold, when to warn)

    def watch(self, grants: list[Grant]) -> None:
        """Holds a new stream's snapshot showed: warn before they lapse."""
        for grant in grants:
            self._track(grant)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.poll(time.monotonic(), int(time.time() * 1000))
            except Exception as error:
                if not errors.known(error):
                    raise
                log.warning("grant feed: %s", error)  # read on from the same id
            await asyncio.sleep(FEED_POLL_S)

    async def poll(self, now: float, now_ms: int) -> None:
        if self.cursor is None or not self.anyone():
            # Nobody to tell: keep only the place (one index lookup), read no events.
            self.cursor = Cursor(await self.pool.fetchval(LAST_EVENT), set())
            if not self.anyone():
                return
        for row in await self.pool.fetch(EVENTS_AFTER, self.cursor.floor, FEED_ROWS_MAX):
            if self.cursor.take(row["event_id"]):
                self._tell(row)
        self.cursor.advance(now)
        self._warn(now_ms)

    def _tell(self, row: Mapping[str, Any]) -> None:
        grant = readmodel.grant_from_row(row)
        self._track(grant)
        if not self.watching(grant.user_id):
            return
        name = event_name(row["before"], row["after"])
        data = {"grant": grant_view(grant), "before": row["before"], "after": row["after"]}
        self.send(grant.user_id, sse.event(name, {**data, "cause": row["cause"]}))

    def _track(self, grant: Grant) -> None:
        warn_at = warn_at_ms(grant)
        if warn_at is None or not self.watching(grant.user_id):
            self.holds.pop(grant.id, None)
        elif len(self.holds) < HOLDS_WATCHED_MAX:
            self.holds[grant.id] = (grant, warn_at)

    def _warn(self, now_ms: int) -> None:
        due = [(g, at) for g, at in self.holds.values() if at <= now_ms]
        for grant, _ in due:
            del self.holds[grant.id]
            if not self.watching(grant.user_id) or grant.deadline_ms is None:
                continue
            data = {
                "grant": grant_view(grant),
                "expires_at": rfc3339(grant.deadline_ms),
                "seconds_left": max(0, (grant.deadline_ms - now_ms) // 1000),
            }
            self.send(grant.user_id, sse.event("hold_expiring", data))
