"""What a value must be to reach the log and PostgreSQL: checked here, and only here.

PostgreSQL's `text` holds any Unicode but NUL; UTF-8 cannot carry a lone surrogate; its
integers have 32 or 64 bits, and a time must be one a calendar can show. A value that
breaks one of these would make the allocator's batch commit fail, and a single writer is
only as available as its worst input.

The gateway refuses such input before anything is produced, naming the field
(`json_fault`, `text_fault`). The allocator's core checks every command anyway
(`command_fault`), because a command can come from an older gateway, another producer or
a record written by hand: it is refused in log order, deterministically, so a replay
refuses it too. The limits below are the gateway's and the core's alike.
"""

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

import orjson

from schemas.messages import COMMAND_BYTES_MAX

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
TIME_MS_MIN = 0  # 1970-01-01T00:00:00Z
TIME_MS_MAX = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: the last a calendar shows

USER_ID_CHARS_MAX = 200
CODE_CHARS_MAX = 64
MESSAGE_CHARS_MAX = 500
DESCRIPTION_CHARS_MAX = 5_000
CODE_PATTERN_CHARS_MAX = 200
CODE_ALPHABET_CHARS_MAX = 32
SEED_CHARS_MAX = 200
LOCK_ID_CHARS_MAX = 64
TOPIC_CHARS_MAX = 249  # Kafka's own bound on a topic name
FAULT_CHARS_MAX = 2_000  # why a command was refused
DAY_STAND_IN = "1970-01-01"
COUNT_MAX = 10_000_000
PER_USER_LIMIT_MAX = 1_000
HOLD_SECONDS_MAX = 24 * 3600
LOCK_SECONDS_MAX = 24 * 3600
REDEMPTIONS_MAX = 1_000_000
CODES_PER_UPLOAD_MAX = 10_000
USERS_PER_DISTRIBUTION_MAX = 5_000
# The most grants one command may make: a batch is one transaction, and one command must
# never make it long (allocator/core/budget.py).
GRANTS_PER_COMMAND_MAX = 5_000

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TOPIC = re.compile(rf"[A-Za-z0-9._-]{{1,{TOPIC_CHARS_MAX}}}")

T = TypeVar("T")
Rule = Callable[[Any], str | None]  # why a value cannot be stored, or None


def text_fault(value: str) -> str | None:
    """Why PostgreSQL's text (or UTF-8) cannot hold `value`, or None."""
    if "\x00" in value:
        return "holds a NUL character, which cannot be stored"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "is not valid Unicode (it holds a lone surrogate)"
    return None


def number_fault(value: int | float) -> str | None:
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return "is not a finite number"
    elif not INT64_MIN <= value <= INT64_MAX:
        return "is out of range (a 64-bit integer at most)"
    return None


def json_fault(document: object, path: str = "body") -> tuple[str, str] | None:
    """The first value of a parsed JSON document that cannot be stored: (where, why).
    Walked with a stack of its own: a document may nest deeper than Python recurses."""
    stack: list[tuple[str, object]] = [(path, document)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, dict):
            items = list(value.items())
            for key, item in reversed(items):
                stack.append((_at(where, key), item))
                stack.append((f"{where} (a field name)", key))
            continue
        if isinstance(value, list):
            stack.extend((f"{where}[{i}]", v) for i, v in reversed(list(enumerate(value))))
            continue
        why = _value_fault(value)
        if why is not None:
            return where, why
    return None


def _value_fault(value: object) -> str | None:
    if isinstance(value, str):
        return text_fault(value)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return number_fault(value)
    return f"is not a JSON value ({type(value).__name__})"


def _at(path: str, key: object) -> str:
    return str(key) if path == "body" else f"{path}.{key}"


def _first(found: Iterable[T | None]) -> T | None:
    return next((f for f in found if f is not None), None)


# -- rules for the fields of the log's commands -------------------------------------------


@dataclass(frozen=True)
class Said:
    """A rule with the JSON Schema that says as much of it as JSON Schema can: the API
    documents' bounds are these (runtime/docs.py, `x-rule`), never written again."""

    rule: Rule
    schema: Mapping[str, Any]

    def __call__(self, value: Any) -> str | None:
        return self.rule(value)


def text(chars_min: int, chars_max: int) -> Said:
    def rule(value: Any) -> str | None:
        if not isinstance(value, str):
            return "must be a string"
        if not chars_min <= len(value) <= chars_max:
            return f"must be {chars_min} to {chars_max} characters"
        return text_fault(value)

    return Said(rule, {"type": "string", "minLength": chars_min, "maxLength": chars_max})


# -- a person's id ------------------------------------------------------------------------
# Every id a command carries (a claim's `user_id`, a token's `sub` when people claim for
# themselves; an assignment's owner; a distribution's `users`), an audience's members, the
# users import: one rule for all of them, as every one of them may own a grant. An id is
# stored exactly as given and shown to people, so it may not be blank, begin or end with
# whitespace (" ann" and "ann" would be two people who look like one: refused, never
# trimmed, as trimming would hand the grant to someone the sender did not name), or hold a
# character that is not text to read: a control character (Unicode's Cc: C0, DEL, C1), a
# line or paragraph separator, a bidirectional control (it makes an id read in another
# order than it is stored) or an invisible one (zero-width space, byte order mark).
# Zero-width (non-)joiners are kept: scripts and emoji need them. The characters are named
# here rather than read from `unicodedata`, whose categories change between Python
# versions: the core applies this rule, and a replay must decide as the first run did
# (invariant 6).
WHITE_SPACE = frozenset(  # Unicode's White_Space property; its stability policy fixes it
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_NOT_IN_IDS = re.compile(
    "[\x00-\x1f\x7f-\x9f"  # Cc
    "\u2028\u2029"  # line and paragraph separators
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidirectional controls
    "\u200b\ufeff]"  # zero-width space, byte order mark
)


def user_id_fault(value: Any) -> str | None:
    """Why `value` cannot be a person's id, or None."""
    if not isinstance(value, str):
        return "must be a string"
    if not value.strip():
        return "is blank"
    if len(value) > USER_ID_CHARS_MAX:
        return f"must be 1 to {USER_ID_CHARS_MAX} characters"
    why = text_fault(value)
    if why is not None:
        return why
    found = _NOT_IN_IDS.search(value)
    if found is not None:
        return f"holds {_what(found.group())}"
    if value[0] in WHITE_SPACE or value[-1] in WHITE_SPACE:
        return "begins or ends with whitespace (an id is taken exactly as given)"
    return None


def _what(char: str) -> str:
    code = f"U+{ord(char):04X}"
    if ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F:
        return f"a control character ({code})"
    if char in "\u2028\u2029":
        return f"a line or paragraph separator ({code})"
    if char in "\u200b\ufeff":
        return f"an invisible character ({code})"
    return f"a bidirectional control ({code}), which makes text read out of order"


def user_ids_fault(values: Iterable[object], where: str) -> str | None:
    """The first of `values` that cannot be a person's id, as `where[i] why`, or None."""
    return _first(
        f"{where}[{i}] {why}" if (why := user_id_fault(v)) else None for i, v in enumerate(values)
    )


def integer(low: int, high: int) -> Said:
    def rule(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            return f"must be an integer from {low} to {high}"
        return None

    return Said(rule, {"type": "integer", "minimum": low, "maximum": high})


def one_of(*allowed: object) -> Said:
    def rule(value: Any) -> str | None:
        return None if value in allowed and type(value) is type(allowed[0]) else "is not allowed"

    if all(isinstance(value, bool) for value in allowed):
        return Said(rule, {"type": "boolean"})
    return Said(rule, {"type": "string", "enum": list(allowed)})


def matching(pattern: re.Pattern[str], what: str) -> Rule:
    def rule(value: Any) -> str | None:
        ok = isinstance(value, str) and pattern.fullmatch(value) is not None
        return None if ok else f"must be {what}"

    return rule


def optional(inner: Rule) -> Rule:
    return lambda value: None if value is None else inner(value)


def many(inner: Said, items_max: int) -> Said:
    def rule(value: Any) -> str | None:
        if not isinstance(value, tuple | list) or not 1 <= len(value) <= items_max:
            return f"must list 1 to {items_max} items"
        return _first(f"[{i}] {why}" if (why := inner(v)) else None for i, v in enumerate(value))

    schema = {"type": "array", "minItems": 1, "maxItems": items_max, "items": inner.schema}
    return Said(rule, schema)


def _day(value: Any) -> str | None:
    try:
        date.fromisoformat(value)
    except (TypeError, ValueError):
        return "must be a date (YYYY-MM-DD)"
    return None if len(value) == 10 else "must be a date (YYYY-MM-DD)"


def _reply_to(value: Any) -> str | None:
    return None if value == "" else matching(TOPIC, "a Kafka topic name")(value)


TIME = integer(TIME_MS_MIN, TIME_MS_MAX)
FLAG = one_of(True, False)
USER_ID = Said(user_id_fault, {"type": "string", "minLength": 1, "maxLength": USER_ID_CHARS_MAX})
CODE = text(1, CODE_CHARS_MAX)
ID = matching(UUID, "a UUID in canonical form")
LOCK_ID = text(1, LOCK_ID_CHARS_MAX)
CODES = many(CODE, CODES_PER_UPLOAD_MAX)
USERS = many(USER_ID, USERS_PER_DISTRIBUTION_MAX)
STRATEGY = one_of("fcfs", "random", "equal")
PER_USER = integer(1, PER_USER_LIMIT_MAX)
SEED = text(0, SEED_CHARS_MAX)
CODE_PREFIX_CHARS_MAX = 32  # `{prefix}` in a code pattern: spelled out before it is stored
IDEMPOTENCY_KEY_CHARS_MAX = 200  # a request's id is made from it (schemas/tickets.py)
PAGE_ITEMS_MAX = 500  # the longest page of a coupon's grants

SPEC_RULES: Mapping[str, Said] = {
    "code": CODE,
    "message": text(0, MESSAGE_CHARS_MAX),
    "description": text(0, DESCRIPTION_CHARS_MAX),
    "start_ms": TIME,
    "expiry_ms": TIME,
    "count": integer(0, COUNT_MAX),
    "per_user_limit": integer(1, PER_USER_LIMIT_MAX),
    "daily_rule": FLAG,
    "hold_seconds": integer(0, HOLD_SECONDS_MAX),
    "release_on_disconnect": FLAG,
    "lock_seconds": integer(1, LOCK_SECONDS_MAX),
    "redemptions_per_grant": integer(1, REDEMPTIONS_MAX),
    "redemptions_per_user": integer(0, REDEMPTIONS_MAX),
    "code_source": one_of("pattern", "uploaded"),
    "code_pattern": text(1, CODE_PATTERN_CHARS_MAX),
    "code_alphabet": text(1, CODE_ALPHABET_CHARS_MAX),
}

# Every field of every command, by name: one name means one thing across the log.
COMMAND_RULES: Mapping[str, Rule] = {
    "request_id": ID,
    "coupon_id": ID,
    "grant_id": ID,
    "user_id": USER_ID,
    "owner_id": USER_ID,
    "at_ms": TIME,
    "reply_to": _reply_to,
    "day": _day,
    "reserved": FLAG,
    "revoke": FLAG,
    "dry_run": FLAG,
    "action": one_of("confirm", "cancel", "disconnect", "lock", "unlock", "redeem"),
    "lock_id": optional(LOCK_ID),
    "codes": CODES,
    "code": CODE,
    "users": USERS,
    "strategy": STRATEGY,
    "per_user": PER_USER,
    "after_seq": integer(0, INT64_MAX),
    "seed": SEED,
    "spec": lambda spec: _spec_fault(spec),
    "fault": optional(text(1, FAULT_CHARS_MAX)),
    "kind": lambda kind: None,  # the decoder chose the type by it
}


# What the API documents name by `x-rule` (runtime/docs.py): a coupon's fields, by the
# names the log gives them, and the fields of commands that a request body carries.
DOCUMENTED: Mapping[str, Said] = {
    **{f"coupon.{name}": rule for name, rule in SPEC_RULES.items()},
    "user_id": USER_ID,
    "code": CODE,
    "codes": CODES,
    "users": USERS,
    "strategy": STRATEGY,
    "per_user": PER_USER,
    "seed": SEED,
    "lock_id": LOCK_ID,
    "code_prefix": text(0, CODE_PREFIX_CHARS_MAX),
    # Bounds of requests whose values never reach the log as they are, stated here so
    # that every bound a document shows has one place.
    "idempotency_key": text(1, IDEMPOTENCY_KEY_CHARS_MAX),
    "page_items": integer(1, PAGE_ITEMS_MAX),
}


def command_fault(command: object) -> str | None:
    """Why a command (any message of `schemas.messages`) cannot be stored, or None."""
    return _fields_fault(command, COMMAND_RULES) or _cost_fault(command)


def _cost_fault(command: object) -> str | None:
    """Why a command that carries a list is more than one command may be: more grants
    than GRANTS_PER_COMMAND_MAX, or more bytes than COMMAND_BYTES_MAX, past which its
    decision (which echoes it) could be a message the broker refuses. The gateway refuses
    both first; a command written another way is refused here, in log order."""
    users = getattr(command, "users", None)
    if users is None and getattr(command, "codes", None) is None:
        return None  # only lists make a command large
    if users is not None:
        equal = getattr(command, "strategy", "") == "equal"
        grants = len(users) * (getattr(command, "per_user", 1) if equal else 1)
        if grants > GRANTS_PER_COMMAND_MAX:
            return f"would make {grants} grants; one command makes at most {GRANTS_PER_COMMAND_MAX}"
    size = len(orjson.dumps(command))
    if size > COMMAND_BYTES_MAX:
        return f"is {size} bytes; one command holds at most {COMMAND_BYTES_MAX}"
    return None


def _fields_fault(message: object, rules: Mapping[str, Rule]) -> str | None:
    names: tuple[str, ...] = getattr(type(message), "__match_args__", ())
    for name in names:
        rule = rules.get(name)
        if rule is None:
            return f"{name} is not a field of the log"  # a message this table forgot
        why = rule(getattr(message, name))
        if why is not None:
            return f"{name} {why}"
    return None


def _spec_fault(spec: Any) -> str | None:
    why = _fields_fault(spec, SPEC_RULES)
    if why is None and spec.start_ms >= spec.expiry_ms:
        why = "expiry_ms must be after start_ms"
    return None if why is None else f"({why})"


def routable(command: object) -> bool:
    """Whether a refused command names its request and coupon: its refusal can reach them."""
    named = (getattr(command, "request_id", None), getattr(command, "coupon_id", None))
    return all(ID(value) is None for value in named)


def answerable(command: object) -> bool:
    """Whether a refused command can get a decision of its own: a routable request a person
    sent (the allocator's own commands get none)."""
    return hasattr(command, "reply_to") and routable(command)


def stand_in(value: object, chars_max: int) -> str:
    """A storable text in place of one that may not be, for the decision that refuses it."""
    if not isinstance(value, str):
        return ""
    kept = value[:chars_max].replace("\x00", "\ufffd")
    return kept.encode("utf-8", "replace").decode("utf-8")


def time_stand_in(value: object) -> int:
    """A storable time in place of one that may not be."""
    if isinstance(value, bool) or not isinstance(value, int):
        return TIME_MS_MIN
    return min(max(value, TIME_MS_MIN), TIME_MS_MAX)


def reply_stand_in(value: object) -> str:
    """Where to answer a refused command: its reply topic if it names one, else nowhere."""
    return value if isinstance(value, str) and _reply_to(value) is None else ""
