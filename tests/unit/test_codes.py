from hypothesis import given, settings
from hypothesis import strategies as st

from allocator.codes import ALPHABET, SEQ_MAX, code_for, coupon_key, permute


def test_codes_are_unique_over_a_large_coupon() -> None:
    key = coupon_key(b"secret", "c1")
    codes = {code_for(key, seq) for seq in range(1, 50_001)}
    assert len(codes) == 50_000


def test_codes_depend_on_the_coupon_and_look_like_codes() -> None:
    a, b = coupon_key(b"secret", "c1"), coupon_key(b"secret", "c2")
    assert code_for(a, 1) != code_for(b, 1)
    code = code_for(a, 1)
    assert len(code) == 11 and code[5] == "-"
    assert set(code.replace("-", "")) <= set(ALPHABET)


@settings(max_examples=200)
@given(st.integers(0, SEQ_MAX - 1), st.integers(0, SEQ_MAX - 1))
def test_permutation_is_injective(x: int, y: int) -> None:
    key = coupon_key(b"k", "c")
    assert (permute(key, x) == permute(key, y)) == (x == y)
