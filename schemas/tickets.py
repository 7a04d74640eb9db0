"""Tickets: a signed reference to one request, so a forged ticket is known without a lookup.

A ticket is base64url(coupon id ‖ request id ‖ HMAC-SHA256 tag), 64 characters.
Request ids for requests with an Idempotency-Key are derived from it, so the same key
from the same person for the same coupon always names the same request and ticket.
"""

import base64
import functools
import hmac
import os
import uuid

TAG_BYTES = 16


def _tag(secret: bytes, body: bytes) -> bytes:
    return hmac.digest(secret, b"ticket\0" + body, "sha256")[:TAG_BYTES]


def mint(secret: bytes, coupon_id: str, request_id: str) -> str:
    return _minted(secret, _id_bytes(coupon_id) + uuid.UUID(request_id).bytes)


def mint_fresh(secret: bytes, coupon_id: str) -> str:
    """The ticket of a new request (a random version 4 id) that needs no id of its own:
    one the gateway's edge refuses, most of a sold-out noon's answers. Its id is never
    made a string only to be read back (that took twice the time of the rest)."""
    request_id = bytearray(os.urandom(16))
    request_id[6] = (request_id[6] & 0x0F) | 0x40
    request_id[8] = (request_id[8] & 0x3F) | 0x80
    return _minted(secret, _id_bytes(coupon_id) + bytes(request_id))


def _minted(secret: bytes, body: bytes) -> str:
    return base64.urlsafe_b64encode(body + _tag(secret, body)).decode().rstrip("=")


@functools.lru_cache(maxsize=4096)  # a coupon's id, read at each of its answers
def _id_bytes(coupon_id: str) -> bytes:
    return uuid.UUID(coupon_id).bytes


def open_ticket(secret: bytes, ticket: str) -> tuple[str, str] | None:
    """(coupon id, request id), or None when the ticket was not issued by us."""
    if len(ticket) != 64:
        return None
    try:
        raw = base64.urlsafe_b64decode(ticket + "=" * (-len(ticket) % 4))
    except ValueError:
        return None
    body, tag = raw[:32], raw[32:]
    if len(raw) != 32 + TAG_BYTES or not hmac.compare_digest(tag, _tag(secret, body)):
        return None
    return str(uuid.UUID(bytes=body[:16])), str(uuid.UUID(bytes=body[16:]))


def request_id_for(secret: bytes, user_id: str, scope: str, idempotency_key: str) -> str:
    """The request id a retried request must reuse: unguessable without the secret."""
    message = "\0".join(("idempotency", user_id, scope, idempotency_key)).encode()
    digest = hmac.digest(secret, message, "sha256")[:16]  # the one-shot C path
    return str(uuid.UUID(bytes=digest, version=4))
