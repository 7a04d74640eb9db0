"""The log mark: a record the allocator writes into a partition so that it can tell later
whether the partition still holds the same log (allocator/shell/which_log.py). Parts that read
the command log skip marks; they are not commands."""

import orjson

# A mark's payload starts with its kind, so it is told from a command without parsing it.
MARK_PREFIX = b'{"kind":"log_mark"'


def mark(log_id: str, at_ms: int) -> bytes:
    """The record that marks a log with `log_id`."""
    payload = orjson.dumps({"kind": "log_mark", "log_id": log_id, "at_ms": at_ms})
    assert payload.startswith(MARK_PREFIX)
    return payload


def is_mark(value: bytes | None) -> bool:
    return value is not None and value.startswith(MARK_PREFIX)


def mark_id(value: bytes | None) -> str | None:
    if not is_mark(value):
        return None
    log_id = orjson.loads(value or b"{}").get("log_id")
    return log_id if isinstance(log_id, str) else None
