"""Bulk distribution plans, as pure functions of a coupon's book and the admin's list.

`fcfs` serves the list in its order, one each; `random` serves it in a shuffled order, one
each; `equal` gives everyone `per_user` or, when that cannot be done, nobody anything.
The shuffle sorts by a keyed hash of the seed and each person, so a replay (or a dry run
followed by the real run, with the same seed) orders the list the same way.
"""

import hashlib
from collections import Counter

from allocator.core.book import CouponBook
from schemas.messages import Distribute, Plan


def order(command: Distribute) -> list[str]:
    users = list(dict.fromkeys(command.users))  # a person listed twice is served once
    if command.strategy != "random":
        return users
    seed = command.seed.encode()

    def draw(user: str) -> bytes:
        return hashlib.sha256(seed + b"\0" + user.encode()).digest()

    return sorted(users, key=draw)


def plan(book: CouponBook, command: Distribute) -> tuple[Plan, str | None]:
    """What the distribution gives, and why it gives nothing (None when it can go ahead)."""
    users = order(command)
    room = {u: book.spec.per_user_limit - book.per_user[u] for u in users}
    free = book.free_units()
    granted: Counter[str] = Counter()
    skipped: list[tuple[str, str]] = []
    reason = None
    if command.strategy == "equal":
        short = [u for u in users if room[u] < command.per_user]
        skipped = [(u, "already_claimed") for u in short]
        if short:
            reason = "per_user_limit"
        elif free < command.per_user * len(users):
            reason = "insufficient_units"
        else:
            granted.update({u: command.per_user for u in users})
    else:
        for user in users:
            if room[user] <= 0:
                skipped.append((user, "already_claimed"))
            elif free <= 0:
                skipped.append((user, "sold_out"))
            else:
                granted[user] = 1
                free -= 1
    result = Plan(
        command.strategy,
        command.dry_run,
        tuple((u, granted[u]) for u in users if granted[u]),
        tuple(skipped),
    )
    return result, reason
