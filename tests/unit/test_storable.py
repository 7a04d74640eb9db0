"""What cannot be stored is found in one place (schemas/storable.py), and the core refuses
a command holding it in log order, with a decision when it names a request (issue 12)."""

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from allocator.core import PartitionCore
from allocator.effects import Record
from allocator.state import CoreConfig
from schemas.messages import (
    AddCodes,
    Claim,
    Command,
    CouponSpec,
    CreateCoupon,
    DayReserved,
    ReleaseDay,
    ReserveDay,
    decode_command,
)
from schemas.storable import (
    TIME_MS_MAX,
    command_fault,
    json_fault,
    stand_in,
    text_fault,
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
    batch = PartitionCore(CONFIG).decide(records, {})
    decided = {r.offset: (r.decision.outcome, r.decision.reason) for r in batch.decisions}
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
