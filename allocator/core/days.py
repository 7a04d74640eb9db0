"""The daily rule ("one grant per person per day, across all coupons") crosses partitions.

It is decided in log order too: a claim that may win takes one of the coupon's units and
asks, through the log, the partition that owns the person (`ReserveDay`); that partition
answers in its own log order (`DayReserved`). While units are spoken for, later claims
wait in the coupon's line, so a unit freed by a refusal goes to the next person in order.
"""

from allocator.core import grant_log, line
from allocator.core.book import CouponBook
from allocator.core.effects import Cause, DayRow, Effects
from allocator.core.state import CoreState
from schemas.messages import (
    DayReserved,
    ReleaseDay,
    ReserveDay,
)


def reserve_day(partition: CoreState, effects: Effects, command: ReserveDay) -> None:
    days = partition.user_days.setdefault(command.user_id, {})
    holder = days.get(command.day)
    if holder is None:
        days[command.day] = command.request_id
        effects.days.append(
            DayRow(command.user_id, command.day, command.request_id, command.coupon_id)
        )
    reserved = holder is None or holder == command.request_id
    effects.commands.append(
        DayReserved(
            command.request_id,
            command.coupon_id,
            command.user_id,
            command.day,
            reserved,
            command.at_ms,
        )
    )


def release_day(partition: CoreState, effects: Effects, command: ReleaseDay) -> None:
    days = partition.user_days.setdefault(command.user_id, {})
    for day, holder in sorted(days.items()):
        if holder == command.request_id:
            del days[day]
            row = DayRow(command.user_id, day, command.request_id, command.coupon_id)
            effects.days_released.append(row)


def day_reserved(
    partition: CoreState,
    effects: Effects,
    book: CouponBook,
    command: DayReserved,
    cause: Cause,
    fault: str | None = None,
) -> None:
    waiting = book.reserving.pop(command.request_id, None)
    if waiting is None:
        return  # an answer seen before (the asking batch was published twice)
    user_id = waiting.claim.user_id
    book.reserving_users[user_id] -= 1
    fault = fault or command.fault
    if command.reserved is True and not book.closed and fault is None:
        grant = grant_log.give(effects, book, user_id, command.request_id, cause, "claim")
        line.settle(effects, book, waiting, "granted", None, cause, grant)
    else:
        if command.reserved is True:  # closed or refused meanwhile: give the day back
            effects.commands.append(
                ReleaseDay(command.request_id, book.coupon_id, user_id, cause.at_ms)
            )
        reason = "unstorable" if fault else "closed" if book.closed else "daily_limit"
        line.settle(effects, book, waiting, "rejected", reason, cause)
    line.advance(partition, effects, book, cause)
