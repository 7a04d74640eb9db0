"""Coupon codes: a keyed pseudo-random permutation of a grant's sequence number.

A coupon's pattern (`SALE-{random:8}`) has literal text and random places over an
alphabet. The random places together spell one number below `domain` (alphabet size to
the power of their count). A balanced Feistel network with keyed BLAKE2s rounds permutes
the bit space around `domain`, and cycle-walking keeps the result inside it, so the map
from sequence number to code is a bijection: two grants can never share a code (unique
by construction, not by luck), codes cannot be guessed without the coupon's key, and a
replay derives the same ones.
"""

import hashlib
import hmac
import re
from dataclasses import dataclass

from schemas.errors import BadInput

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # no I, L, O, U: survives being read aloud


def _hangul() -> str:
    """Digits 2-9 and 70 open syllables (14 plain initials x 5 vowels): easy to read out."""
    initials = (0, 2, 3, 5, 6, 7, 9, 11, 12, 14, 15, 16, 17, 18)  # ㄱㄴㄷㄹㅁㅂㅅㅇㅈㅊㅋㅌㅍㅎ
    vowels = (0, 4, 8, 13, 20)  # ㅏㅓㅗㅜㅣ
    syllables = "".join(chr(0xAC00 + (i * 21 + v) * 28) for i in initials for v in vowels)
    return "23456789" + syllables


ALPHABETS = {"crockford": CROCKFORD, "digits": "0123456789", "hangul": _hangul()}
DEFAULT_PATTERN = "{random:5}-{random:5}"
DEFAULT_ALPHABET = "crockford"
PLACE = re.compile(r"\{random:(\d{1,2})\}")
LITERAL = re.compile(r"[A-Za-z0-9_.\-]*")
RANDOM_CHARS_MIN = 4
CODE_CHARS_MAX = 64
HALF_BITS_MAX = 32
ROUNDS = 8


class InvalidFormat(BadInput, ValueError):
    """A pattern or alphabet no code can be made from. Also a ValueError: the allocator
    takes a ValueError out of deciding a batch as the batch's own fault (runtime/errors.py's
    ENCODING, allocator/isolation.py), and a stored pattern that no longer parses is one."""


@dataclass(frozen=True, slots=True)
class CodeFormat:
    pieces: tuple[str | int, ...]  # literal text, or a run of random places
    alphabet: str
    random_chars: int = 0  # derived in __post_init__: asked for on every grant
    domain: int = 0

    def __post_init__(self) -> None:
        places = sum(p for p in self.pieces if isinstance(p, int))
        object.__setattr__(self, "random_chars", places)
        object.__setattr__(self, "domain", len(self.alphabet) ** places)

    @classmethod
    def parse(cls, pattern: str, alphabet: str = DEFAULT_ALPHABET) -> "CodeFormat":
        if alphabet not in ALPHABETS:
            raise InvalidFormat(f"alphabet must be one of {', '.join(sorted(ALPHABETS))}")
        pieces: list[str | int] = []
        at = 0
        for place in PLACE.finditer(pattern):
            pieces.append(_literal(pattern[at : place.start()]))
            pieces.append(int(place.group(1)))
            at = place.end()
        pieces.append(_literal(pattern[at:]))
        made = cls(tuple(p for p in pieces if p != ""), ALPHABETS[alphabet])
        if made.random_chars < RANDOM_CHARS_MIN:
            raise InvalidFormat(f"a pattern needs at least {RANDOM_CHARS_MIN} random places")
        if made.length > CODE_CHARS_MAX:
            raise InvalidFormat(f"codes may be at most {CODE_CHARS_MAX} characters")
        if _half_bits(made.domain) > HALF_BITS_MAX:
            raise InvalidFormat("too many random places for this alphabet")
        return made

    @property
    def length(self) -> int:
        return sum(p if isinstance(p, int) else len(p) for p in self.pieces)

    def render(self, key: bytes, seq: int) -> str:
        value = permute(key, seq, self.domain)
        base = len(self.alphabet)
        digits = []
        for _ in range(self.random_chars):
            value, digit = divmod(value, base)
            digits.append(self.alphabet[digit])
        digits.reverse()
        out, used = [], 0
        for piece in self.pieces:
            if isinstance(piece, int):
                out.append("".join(digits[used : used + piece]))
                used += piece
            else:
                out.append(piece)
        return "".join(out)

    def matches(self, code: str) -> bool:
        """Whether `code` has this format's shape (so the format could make it one day)."""
        if len(code) != self.length:
            return False
        at = 0
        for piece in self.pieces:
            if isinstance(piece, int):
                if any(c not in self.alphabet for c in code[at : at + piece]):
                    return False
                at += piece
            else:
                if code[at : at + len(piece)] != piece:
                    return False
                at += len(piece)
        return True


def _literal(text: str) -> str:
    if "{" in text or "}" in text or not LITERAL.fullmatch(text):
        raise InvalidFormat(
            "a pattern is letters, digits, '-', '_' and '.', with {random:N} places"
        )
    return text


def _half_bits(domain: int) -> int:
    bits = (domain - 1).bit_length()
    return (bits + 1) // 2


def codes_key(master_secret: bytes, coupon_id: str) -> bytes:
    """The key of one coupon's codes, from the code secret (not the Kafka key of its
    commands: that is `schemas.topics.coupon_key`)."""
    return hmac.new(master_secret, b"coupon-code\0" + coupon_id.encode(), hashlib.sha256).digest()


def _round(key: bytes, index: int, half: int, mask: int) -> int:
    # Keyed BLAKE2s is a PRF (it is a MAC by design) and three times faster than HMAC here.
    message = bytes([index]) + half.to_bytes(4, "big")
    digest = hashlib.blake2s(message, key=key, digest_size=4).digest()
    return int.from_bytes(digest, "big") & mask


def permute(key: bytes, seq: int, domain: int) -> int:
    """A keyed bijection of [0, domain): Feistel on the enclosing bits, cycle-walked."""
    assert 0 <= seq < domain, "sequence number outside the code space"
    half_bits = _half_bits(domain)
    mask = (1 << half_bits) - 1
    value = seq
    while True:
        left, right = value >> half_bits, value & mask
        for index in range(ROUNDS):
            left, right = right, left ^ _round(key, index, right, mask)
        value = (left << half_bits) | right
        if value < domain:  # at most a few walks: the bit space is under 4 x domain
            return value


DEFAULT_FORMAT = CodeFormat.parse(DEFAULT_PATTERN)


def code_for(key: bytes, seq: int) -> str:
    return DEFAULT_FORMAT.render(key, seq)
