"""What one batch may cost, held by construction: the rows it writes and the bytes it reads.

A batch is one transaction, and its time is about its rows. What a command writes is known
before it is decided (a distribution: its people times what each gets; an upload: its
codes), so a batch takes commands in log order until the next one would pass the budget;
the rest are read again for the next batch. The first command of a batch is always taken:
what one command may cost is bounded where it enters (schemas/storable.py), below these.
"""

from allocator.core.effects import Record
from schemas.messages import AddCodes, CloseCoupon, Command, Distribute, Revoke

# A coupon closed with revocation revokes the live grants of this many sequence numbers
# per command (allocator/core/whole_coupons.py), so a close of half a million grants is hundreds of
# short batches, in log order, and claims on the partition are decided between them.
REVOKE_SEQ_SLICE = 2_000
BATCH_ROWS_MAX = 5_000  # about half a second to decide and as much to commit
BATCH_BYTES_MAX = 4 * 1024 * 1024


def rows(command: Command) -> int:
    """The most grant and code rows `command` may write."""
    if isinstance(command, Distribute):
        each = command.per_user if command.strategy == "equal" else 1
        return len(command.users) * max(each, 1)
    if isinstance(command, AddCodes):
        return len(command.codes)
    if isinstance(command, Revoke) or (isinstance(command, CloseCoupon) and command.revoke):
        return REVOKE_SEQ_SLICE
    return 1


def cut(records: list[Record], sizes: dict[int, int]) -> int | None:
    """The position of the first record left for the next batch, or None when all fit.
    `sizes` holds each record's bytes by position."""
    spent_rows = spent_bytes = 0
    for index, record in enumerate(records):
        spent_rows += rows(record.command)
        spent_bytes += sizes.get(record.offset, 0)
        over = spent_rows > BATCH_ROWS_MAX or spent_bytes > BATCH_BYTES_MAX
        if over and index > 0:
            return record.offset
    return None
