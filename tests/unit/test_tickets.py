import uuid

from schemas.tickets import mint, open_ticket, request_id_for

SECRET = b"s" * 32


def test_a_ticket_names_its_request() -> None:
    coupon, request = str(uuid.uuid4()), str(uuid.uuid4())
    assert open_ticket(SECRET, mint(SECRET, coupon, request)) == (coupon, request)


def test_altered_or_foreign_tickets_are_not_ours() -> None:
    ticket = mint(SECRET, str(uuid.uuid4()), str(uuid.uuid4()))
    flipped = ticket[:10] + ("A" if ticket[10] != "A" else "B") + ticket[11:]
    assert open_ticket(SECRET, flipped) is None
    assert open_ticket(b"other" * 8, ticket) is None
    assert open_ticket(SECRET, "short") is None
    assert open_ticket(SECRET, "!" * 64) is None


def test_idempotency_keys_name_one_request_per_person_and_scope() -> None:
    first = request_id_for(SECRET, "alice", "coupon-1", "key-1")
    assert first == request_id_for(SECRET, "alice", "coupon-1", "key-1")
    assert first != request_id_for(SECRET, "bob", "coupon-1", "key-1")
    assert first != request_id_for(SECRET, "alice", "coupon-2", "key-1")
    assert uuid.UUID(first).version == 4
