"""Reading what a client sent: JSON bodies, ids, times and the Prefer header, strictly."""

import csv
import io
import json
import math
import uuid
from collections.abc import Iterable, Iterator
from collections.abc import Set as AbstractSet
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson
from aiohttp import web

from runtime import connections
from runtime.errors import BadInput
from runtime.http import Problem
from schemas import storable

# Lists (codes, audiences) may be larger than the 64 KiB other bodies are held to: 10,000
# codes of 64 characters in a CSV, 5,000 people of 200.
UPLOAD_BYTES_MAX = 1024 * 1024


def invalid(detail: str) -> Problem:
    return Problem("invalid-request", detail)


async def json_object(request: web.Request, allowed: AbstractSet[str]) -> dict[str, Any]:
    """The body as a JSON object whose every value can be stored (schemas/storable.py):
    what reaches the log from a body is checked here, once."""
    raw = await connections.body(request)
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        _name_unstorable(raw)
        raise invalid(f"body is not JSON: {error}") from error
    if not isinstance(body, dict):
        raise invalid("body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise invalid(f"unknown fields: {', '.join(unknown)}")
    refuse_unstorable(body)
    return body


def upload(request: web.Request) -> web.Request:
    """The request, its body allowed up to UPLOAD_BYTES_MAX (413 beyond that). A body
    read already (a small one, before the request counted in flight) is within it."""
    if request.body_exists and not request.can_read_body:
        return request
    return request.clone(client_max_size=UPLOAD_BYTES_MAX)


async def csv_column(
    request: web.Request,
    header: AbstractSet[str],
    where: str,
    rule: storable.Rule | None = None,
) -> list[str]:
    """The first column of a CSV body, each cell trimmed (spaces around a cell are the
    file's layout), blank rows left out and a first row naming one of `header` skipped;
    every value checked to be storable, and by `rule` when given. Read strictly
    (`strict_csv`), each refusal naming its line."""
    try:
        text = (await connections.body(request)).decode("utf-8-sig", errors="strict")
        rows = [(line, row[0].strip()) for line, row in strict_csv(io.StringIO(text))]
    except UnicodeDecodeError as error:
        raise invalid(f"the CSV is not UTF-8: {error}") from error
    except BrokenCsv as error:
        raise invalid(f"{where}: {error}") from error
    column = [(line, value) for line, value in rows if value]
    if column and column[0][1].lower() in header:
        column = column[1:]
    for line, value in column:
        why = storable.text_fault(value) or (rule(value) if rule is not None else None)
        if why is not None:
            raise invalid(f"{where}: line {line}: {value[:40]!r} {why}")
    return [value for _, value in column]


class BrokenCsv(BadInput):
    """A CSV that cannot be read as one: `line` is where the row at fault starts."""

    def __init__(self, line: int, why: str) -> None:
        super().__init__(f"line {line}: {why}")
        self.line = line
        self.why = why


def strict_csv(lines: Iterable[str]) -> Iterator[tuple[int, list[str]]]:
    """A CSV's non-empty rows, each with the line it starts on. Read strictly: an
    unterminated quote, or a quoted line break in any field, is a BrokenCsv, not one value
    running on to the end of the file (no first column of ours may hold a line break)."""
    reader = csv.reader(lines, strict=True)
    line = 1
    try:
        for row in reader:
            if any("\n" in field or "\r" in field for field in row):
                raise BrokenCsv(line, "a quoted field holds a line break")
            if row:
                yield line, row
            line = reader.line_num + 1
    except csv.Error as error:
        said = str(error)
        if said == "unexpected end of data":
            raise BrokenCsv(line, "a quote opened on this line is never closed") from error
        raise BrokenCsv(line, f"the CSV cannot be read ({said})") from error


def strings(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid(f"{name} must be a list of strings")
    return [v.strip() for v in value]


def user_id(body: dict[str, Any], name: str) -> str:
    """A person's id from the body, held to the one rule (schemas/storable.py)."""
    value = body.get(name)
    why = storable.user_id_fault(value)
    if why is not None:
        raise invalid(f"{name} {why}")
    assert isinstance(value, str)
    return value


def user_ids(body: dict[str, Any], name: str, items_max: int) -> tuple[str, ...]:
    """A list of people's ids from the body, each held to the one rule."""
    value = body.get(name)
    if not isinstance(value, list) or not 1 <= len(value) <= items_max:
        raise invalid(f"{name} must list 1 to {items_max} user ids")
    why = storable.user_ids_fault(value, name)
    if why is not None:
        raise invalid(why)
    return tuple(value)


def refuse_unstorable(value: object, where: str = "body") -> None:
    found = storable.json_fault(value, where)
    if found is not None:
        raise invalid(f"{found[0]} {found[1]}")


def _name_unstorable(raw: bytes) -> None:
    """orjson refuses a lone surrogate or NaN without saying where; the standard parser
    reads them, so that the refusal can name the field."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return
    refuse_unstorable(body)


def coupon_id(request: web.Request) -> str:
    raw = request.match_info["coupon_id"]
    try:
        return _canonical_id(raw)
    except ValueError as error:
        raise Problem("unknown-coupon", f"no coupon {raw!r}") from error


@lru_cache(maxsize=4096)
def _canonical_id(raw: str) -> str:
    """An id as PostgreSQL writes it; remembered, as a hot coupon's id comes back all day
    (a malformed one raises, and is not remembered)."""
    return str(uuid.UUID(raw))


REQUIRED: Any = object()  # a field with no default


def ruled(body: dict[str, Any], name: str, rule: storable.Rule, default: Any = REQUIRED) -> Any:
    """A body's field held to the rule the log holds it to (schemas/storable.py), or
    `default` when the body leaves it out."""
    if name not in body:
        if default is REQUIRED:
            raise invalid(f"{name} is required")
        return default
    why = rule(body[name])
    if why is not None:
        raise invalid(f"{name} {why}")
    return body[name]


def text(body: dict[str, Any], name: str, chars_max: int, default: str | None = None) -> str:
    value = body.get(name, default)
    if not isinstance(value, str) or (default is None and not value.strip()):
        raise invalid(f"{name} must be a non-empty string")
    if len(value) > chars_max:
        raise invalid(f"{name} must be at most {chars_max} characters")
    return value


def integer(
    body: dict[str, Any], name: str, low: int, high: int, default: int | None = None
) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid(f"{name} must be an integer from {low} to {high}")
    return value


def boolean(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise invalid(f"{name} must be true or false")
    return value


def query_flag(request: web.Request, name: str) -> bool:
    """A `?name=true|false` query parameter; absent is false."""
    value = request.query.get(name, "false")
    if value not in ("true", "false"):
        raise invalid(f"{name} must be true or false")
    return value == "true"


def time_ms(body: dict[str, Any], name: str) -> int:
    value = body.get(name)
    if not isinstance(value, str):
        raise invalid(f"{name} must be an RFC 3339 time with an offset")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as error:
        raise invalid(f"{name}: {error}") from error
    if moment.tzinfo is None:
        raise invalid(f"{name} must carry an offset, such as Z or +09:00")
    ms = int(moment.timestamp() * 1000)
    if not storable.TIME_MS_MIN <= ms <= storable.TIME_MS_MAX:
        raise invalid(f"{name} must be from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z")
    return ms


def wait_s(request: web.Request, default_s: float, max_s: float) -> float:
    """`Prefer: wait=N` (RFC 7240); preferences we cannot honour (not a number, NaN) are
    ignored, as it says."""
    for preference in request.headers.get("Prefer", "").split(","):
        name, _, value = preference.strip().partition("=")
        if name.strip().lower() == "wait":
            try:
                seconds = float(value.strip().strip('"'))
            except ValueError:
                return default_s
            return min(max(seconds, 0.0), max_s) if not math.isnan(seconds) else default_s
    return default_s


def idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    chars_max = storable.IDEMPOTENCY_KEY_CHARS_MAX
    if not key or len(key) > chars_max or not key.isprintable():
        raise invalid(f"Idempotency-Key must be 1 to {chars_max} printable characters")
    return key
