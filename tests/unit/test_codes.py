"""Codes: a keyed bijection from sequence numbers to a coupon's pattern and alphabet."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codes import (
    ALPHABETS,
    CROCKFORD,
    CodeFormat,
    InvalidFormat,
    code_for,
    codes_key,
    permute,
)

KEY = codes_key(b"secret", "c1")


def test_codes_are_unique_over_a_large_coupon() -> None:
    codes = {code_for(KEY, seq) for seq in range(1, 50_001)}
    assert len(codes) == 50_000


def test_the_default_format_is_ten_crockford_characters_in_two_groups() -> None:
    assert code_for(KEY, 1) != code_for(codes_key(b"secret", "c2"), 1)
    code = code_for(KEY, 1)
    assert len(code) == 11 and code[5] == "-"
    assert set(code.replace("-", "")) <= set(CROCKFORD)


@pytest.mark.parametrize(
    ("pattern", "alphabet", "shape"),
    [
        ("SALE-{random:8}", "crockford", r"SALE-[0-9A-HJKMNP-TV-Z]{8}"),
        ("{random:6}", "digits", r"[0-9]{6}"),
        ("K{random:4}-{random:4}", "hangul", r"K[2-9가-힣]{4}-[2-9가-힣]{4}"),
    ],
)
def test_patterns_over_each_alphabet(pattern: str, alphabet: str, shape: str) -> None:
    import re

    made = CodeFormat.parse(pattern, alphabet)
    codes = [made.render(KEY, seq) for seq in range(2_000)]
    assert len(set(codes)) == len(codes)
    assert all(re.fullmatch(shape, c) and made.matches(c) for c in codes)
    assert not made.matches("X" + codes[0])


def test_the_hangul_alphabet_has_no_repeats() -> None:
    assert len(set(ALPHABETS["hangul"])) == len(ALPHABETS["hangul"]) == 78


@pytest.mark.parametrize(
    ("pattern", "alphabet"),
    [
        ("SALE", "crockford"),  # no random places
        ("{random:3}", "crockford"),  # too few to be unguessable
        ("{random:8}", "emoji"),
        ("A B-{random:8}", "crockford"),
        ("{random:8}{x}", "crockford"),
        ("{random:20}", "hangul"),  # more than 64 bits of places
    ],
)
def test_formats_that_cannot_make_codes_are_refused(pattern: str, alphabet: str) -> None:
    with pytest.raises(InvalidFormat):
        CodeFormat.parse(pattern, alphabet)


@settings(max_examples=200)
@given(st.integers(1, 9), st.data())
def test_the_permutation_is_a_bijection_of_its_domain(places: int, data: st.DataObject) -> None:
    domain = 10**places
    x = data.draw(st.integers(0, domain - 1))
    y = data.draw(st.integers(0, domain - 1))
    px, py = permute(KEY, x, domain), permute(KEY, y, domain)
    assert 0 <= px < domain
    assert (px == py) == (x == y)


def test_small_domains_are_permuted_completely() -> None:
    assert sorted(permute(KEY, x, 10_000) for x in range(10_000)) == list(range(10_000))
