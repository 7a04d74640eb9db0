"""Coupon codes: a keyed pseudo-random permutation of a grant's sequence number.

A balanced Feistel network over 50 bits with HMAC-SHA256 rounds is a bijection, so
two sequence numbers can never share a code (unique by construction, not by luck),
codes cannot be guessed without the coupon's key, and a replay derives the same ones.
"""

import hashlib
import hmac

# Crockford base32: no I, L, O, U, so codes survive being read aloud or typed.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_CHARS = 10
HALF_BITS = CODE_CHARS * 5 // 2
HALF_MASK = (1 << HALF_BITS) - 1
ROUNDS = 8
SEQ_MAX = 1 << (2 * HALF_BITS)


def coupon_key(master_secret: bytes, coupon_id: str) -> bytes:
    return hmac.new(master_secret, b"coupon-code\0" + coupon_id.encode(), hashlib.sha256).digest()


def _round(key: bytes, index: int, half: int) -> int:
    digest = hmac.new(key, bytes([index]) + half.to_bytes(4, "big"), hashlib.sha256).digest()
    return int.from_bytes(digest[:4], "big") & HALF_MASK


def permute(key: bytes, seq: int) -> int:
    assert 0 <= seq < SEQ_MAX, "sequence number outside the code space"
    left, right = seq >> HALF_BITS, seq & HALF_MASK
    for index in range(ROUNDS):
        left, right = right, left ^ _round(key, index, right)
    return (left << HALF_BITS) | right


def code_for(key: bytes, seq: int) -> str:
    value = permute(key, seq)
    chars = [ALPHABET[(value >> (5 * i)) & 31] for i in reversed(range(CODE_CHARS))]
    text = "".join(chars)
    return f"{text[:5]}-{text[5:]}"
