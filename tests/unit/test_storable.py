"""What cannot be stored is found in one place (schemas/storable.py), and the core refuses
a command holding it in log order, with a decision when it names a request (issue 12)."""

import re
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from allocator.core.decide import PartitionCore
from allocator.core.effects import Effects, Record
from allocator.core.state import CoreConfig
from runtime.docs import document
from schemas.messages import (
    COMMAND_BYTES_MAX,
    AddCodes,
    AssignCode,
    Claim,
    Command,
    CouponSpec,
    CreateCoupon,
    DayReserved,
    Distribute,
    ReleaseDay,
    ReserveDay,
    decode_command,
)
from schemas.storable import (
    TIME_MS_MAX,
    USER_ID_CHARS_MAX,
    USERS_PER_DISTRIBUTION_MAX,
    command_fault,
    json_fault,
    stand_in,
    text_fault,
    user_id_fault,
)
from tests.support.simulation import NOON, Cluster, claim, coupon_id, create, outcomes, request_id

CONFIG = CoreConfig(b"storable-test-secret")
UNSTORABLE_CHARS = st.sampled_from(["\x00", "\ud800", "\udfff"])


@given(st.text(), UNSTORABLE_CHARS, st.text())
def test_a_nul_or_a_lone_surrogate_anywhere_is_refused(before: str, bad: str, after: str) -> None:
    assert text_fault(before + bad + after) is not None


@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")))
def test_any_other_text_is_stored(value: str) -> None:
    assert text_fault(value) is None
    assert stand_in(value, 10**6) == value


@given(st.text())
def test_a_stand_in_is_always_storable(value: str) -> None:
    assert text_fault(stand_in(value, 200)) is None


def test_json_fault_names_where() -> None:
    assert json_fault({"a": [1, {"b": "x\x00"}]}) == (
        "a[1].b",
        "holds a NUL character, which cannot be stored",
    )
    assert json_fault({"n": float("nan")}) == ("n", "is not a finite number")
    assert json_fault({"n": 2**64}) is not None
    assert json_fault({"k\x00": 1}) is not None
    assert json_fault({"a": ["ok", 1.5, True, None, -(2**63)]}) is None


def test_commands_as_the_gateway_makes_them_are_storable() -> None:
    assert command_fault(create(1, 5)) is None
    assert command_fault(claim(1, 1, "alice")) is None


def test_every_kind_of_unstorable_value_is_found() -> None:
    good = claim(1, 1, "alice")
    spec = create(1, 5).spec
    bad = [
        replace(good, user_id="al\x00ice"),
        replace(good, user_id="\ud800"),
        replace(good, user_id=5),  # type: ignore[arg-type]
        replace(good, user_id="x" * 201),
        replace(good, at_ms=TIME_MS_MAX + 1),
        replace(good, at_ms=float("nan")),  # type: ignore[arg-type]
        replace(good, at_ms=True),
        replace(good, coupon_id="ABCDEF00-0000-4000-8000-000000000001"),
        replace(good, reply_to="no topic"),
        replace(create(1, 5), spec=replace(spec, description="a\x00b")),
        replace(create(1, 5), spec=replace(spec, count=2**31)),
        replace(create(1, 5), spec=replace(spec, expiry_ms=spec.start_ms)),
        AddCodes(request_id(2), coupon_id(1), "admin", ("A", "B\x00"), NOON, "r"),
        ReserveDay(request_id(3), coupon_id(1), "alice", "2026-02-30", NOON),
    ]
    assert [command_fault(c) is None for c in bad] == [False] * len(bad)


def test_the_core_refuses_unstorable_commands_in_log_order_and_decides_the_rest() -> None:
    records = [
        Record(0, create(1, 2, daily=False)),
        Record(1, replace(create(2, 5), spec=replace(create(2, 5).spec, description="a\x00b"))),
        Record(2, claim(10, 1, "al\x00ice")),
        Record(3, claim(11, 1, "bob")),
        Record(4, replace(claim(12, 1, "carol"), request_id="not-a-uuid")),  # nobody to answer
        Record(5, claim(13, 1, "dave")),
        Record(6, claim(14, 1, "erin")),
    ]
    batch, decided = _decided(records)
    assert decided == {
        0: ("created", None),
        1: ("rejected", "unstorable"),
        2: ("rejected", "unstorable"),
        3: ("granted", None),
        5: ("granted", None),
        6: ("rejected", "sold_out"),
    }
    assert [r.offset for r in batch.unstorable] == [1, 2, 4]
    refusal = next(r.decision for r in batch.decisions if r.offset == 2)
    assert refusal.user_id == "al\ufffdice" and text_fault(refusal.user_id) is None
    again = PartitionCore(CONFIG).decide(records, {})  # invariant 6: the same, every time
    assert again.decisions == batch.decisions


def test_a_refusal_the_shell_gives_is_a_refusal_of_the_core() -> None:
    records = [
        Record(0, create(1, 2, daily=False)),
        Record(1, claim(10, 1, "alice"), "PostgreSQL refused it"),
    ]
    batch = PartitionCore(CONFIG).decide(records, {})
    assert [(r.decision.outcome, r.decision.reason) for r in batch.decisions] == [
        ("created", None),
        ("rejected", "unstorable"),
    ]
    assert batch.grants == []


def test_a_lone_surrogate_in_a_record_is_read_and_refused() -> None:
    payload = (
        b'{"kind": "claim", "request_id": "%s", "coupon_id": "%s", "user_id": "\\ud800",'
        b' "at_ms": %d, "reply_to": "r"}' % (request_id(1).encode(), coupon_id(1).encode(), NOON)
    )
    command = decode_command(payload)
    assert isinstance(command, Claim) and command_fault(command) is not None


def test_a_spec_with_a_wrong_type_is_refused() -> None:
    spec = CouponSpec("C", "m", "d", NOON, NOON + 1, "25")  # type: ignore[arg-type]
    command = CreateCoupon(request_id(1), coupon_id(1), "admin", spec, NOON, "r")
    assert command_fault(command) == "spec (count must be an integer from 0 to 10000000)"


def _refusing(kind: type[ReserveDay | DayReserved], user: str) -> Cluster:
    cluster = Cluster(2)
    cluster.refuses = lambda c: (
        "refused" if isinstance(c, kind) and getattr(c, "user_id", None) == user else None
    )
    commands: list[Command] = [
        create(1, 2),
        claim(1, 1, "u1"),
        claim(2, 1, "u2"),
        claim(3, 1, "u3"),
    ]
    for command in commands:
        cluster.append(command)
    cluster.drain(3)
    return cluster


def test_a_refused_day_refuses_its_claim_and_the_unit_goes_to_the_next() -> None:
    for kind in (ReserveDay, DayReserved):
        cluster = _refusing(kind, "u2")
        result = outcomes(cluster)
        assert [result[request_id(n)] for n in (1, 2, 3)] == [
            ("granted", None),
            ("rejected", "unstorable"),
            ("granted", None),
        ], kind
        if kind is DayReserved:  # the day was taken for u2: it is given back
            assert any(isinstance(c, ReleaseDay) and c.user_id == "u2" for c in cluster.emitted)


# -- a person's id (issue 23) ------------------------------------------------------------

REFUSED_IDS = [
    "",
    "   ",  # blank
    "\t",
    "\u3000",  # an ideographic space alone is blank too
    " ann",  # whitespace at either end: " ann" and "ann" would be two people who look alike
    "ann ",
    "ann\u00a0",
    "ann\nbob",  # what an unterminated CSV quote once stored
    "ann\rbob",
    "a\x07b",  # C0 controls
    "\x1b[31mred",
    "a\x7fb",  # DEL and the C1 controls
    "a\x85b",
    "a\u2028b",  # line and paragraph separators
    "a\u2029b",
    "ann\u202egpj.exe",  # bidirectional overrides and isolates: text that reads backwards
    "a\u2066b",
    "a\u200eb",
    "a\u200bb",  # invisible: a zero-width space, a byte order mark
    "\ufeffann",
    "x" * (USER_ID_CHARS_MAX + 1),
    "al\x00ice",
    "\ud800",
]
KEPT_IDS = ["ann", "Ann Lee", "ann.lee@example.com", "김철수", "é", "👩\u200d💻", "x" * 200,
            "auth0|5f7c8ec7c33c6c004bbafe82", "a\u200cb"]  # fmt: skip


def test_a_persons_id_is_refused_by_the_one_rule_wherever_a_command_carries_it() -> None:
    good_claim = claim(1, 1, "alice")
    assign = AssignCode(request_id(2), coupon_id(1), "admin", "alice", "A1", NOON, "r")
    spread = Distribute(request_id(3), coupon_id(1), "admin", ("ann", "bo"), "fcfs", 1, "s",
                        False, NOON, "r")  # fmt: skip
    for bad in REFUSED_IDS:
        assert command_fault(replace(good_claim, user_id=bad)) is not None, repr(bad)
        assert command_fault(replace(assign, owner_id=bad)) is not None, repr(bad)
        refused = command_fault(replace(spread, users=("ann", bad)))
        assert refused is not None and refused.startswith("users [1] "), (bad, refused)
    for good in KEPT_IDS:
        assert command_fault(replace(good_claim, user_id=good)) is None, repr(good)
        assert command_fault(replace(spread, users=(good,))) is None, repr(good)
    assert command_fault(replace(good_claim, user_id="   ")) == "user_id is blank"


# Unicode's White_Space property, which its stability policy keeps as it is.
WHITE_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000" + "".join(
    map(chr, range(0x2000, 0x200B))
)


@given(st.text(min_size=1, max_size=USER_ID_CHARS_MAX))
def test_the_id_rule_is_the_same_on_every_python(value: str) -> None:
    """The core applies it on replay: it reads no Unicode database (whose categories change
    between Python versions), only code points named in schemas/storable.py."""
    refused = command_fault(replace(claim(1, 1, "x"), user_id=value)) is not None
    named = any(
        ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029\u200b\ufeff"
        or 0x202A <= ord(c) <= 0x202E or 0x2066 <= ord(c) <= 0x2069
        or c in "\u200e\u200f\u061c" or 0xD800 <= ord(c) <= 0xDFFF
        for c in value
    )  # fmt: skip
    edges = value[0] in WHITE_SPACE or value[-1] in WHITE_SPACE
    assert refused == (named or edges), repr(value)


def test_the_core_refuses_a_distribution_to_a_blank_id_and_decides_on() -> None:
    records = [
        Record(0, create(1, 5, daily=False)),
        Record(1, Distribute(request_id(2), coupon_id(1), "admin", ("ann", "   "), "fcfs", 1,
                             "s", False, NOON + 1, "r")),
        Record(2, AssignCode(request_id(3), coupon_id(1), "admin", "bo\n", "A1", NOON + 1, "r")),
        Record(3, claim(4, 1, "cy")),
    ]  # fmt: skip
    batch, decided = _decided(records)
    refused = ("rejected", "unstorable")
    assert list(decided.items()) == [(0, ("created", None)), (1, refused), (2, refused),
                                     (3, ("granted", None))]  # fmt: skip
    assert [g.user_id for g in batch.grants] == ["cy"]


ID_PATTERN = re.compile(document("gateway")["components"]["schemas"]["UserId"]["pattern"])


@given(st.one_of(st.text(max_size=8), st.sampled_from(REFUSED_IDS + KEPT_IDS)))
def test_the_documented_id_pattern_is_the_rule(value: str) -> None:
    """gateway/openapi.yaml declares the rule as a pattern (with minLength and maxLength)
    for clients and schemathesis; it says what the rule says, for text that can be stored."""
    if text_fault(value) is None and 1 <= len(value) <= USER_ID_CHARS_MAX:
        # fullmatch: Python's $ also matches before a final newline, ECMA-262's does not
        assert (ID_PATTERN.fullmatch(value) is not None) == (user_id_fault(value) is None), value


def _decided(records: list[Record]) -> tuple[Effects, dict[int, tuple[str, str | None]]]:
    """A fresh core's batch of `records`, and each decision's (outcome, reason) by offset."""
    batch = PartitionCore(CONFIG).decide(records, {})
    return batch, {r.offset: (r.decision.outcome, r.decision.reason) for r in batch.decisions}


def test_a_command_past_the_grant_or_byte_bound_is_refused_in_log_order() -> None:
    """The gateway refuses them first (400, 413); one written to the log another way is
    refused by the core, so its decision can never be a message the broker refuses."""
    many = tuple(f"p{n}" for n in range(USERS_PER_DISTRIBUTION_MAX))
    wide = tuple(f"{n:05d}" + "x" * 190 for n in range(USERS_PER_DISTRIBUTION_MAX))
    records = [
        Record(0, create(1, 10**6, daily=False)),
        Record(1, Distribute(request_id(2), coupon_id(1), "admin", many, "equal", 2, "s",
                             False, NOON + 1, "r")),
        Record(2, Distribute(request_id(3), coupon_id(1), "admin", wide, "fcfs", 1, "s",
                             False, NOON + 1, "r")),
        Record(3, Distribute(request_id(4), coupon_id(1), "admin", many, "fcfs", 1, "s",
                             False, NOON + 1, "r")),
    ]  # fmt: skip
    assert "would make 10000 grants" in (records[1].fault or "")
    assert f"at most {COMMAND_BYTES_MAX}" in (records[2].fault or "")
    batch, decided = _decided(records)
    refused = ("rejected", "unstorable")
    assert list(decided.values()) == [("created", None), refused, refused, ("applied", None)]
    assert len(batch.new_grants) == USERS_PER_DISTRIBUTION_MAX
