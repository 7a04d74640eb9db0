"""The outbox survives being stored: every message comes back, in order, byte for byte."""

from hypothesis import given
from hypothesis import strategies as st

from allocator.shell.outbox import pack, unpack

messages = st.lists(
    st.tuples(st.text(min_size=1, max_size=40), st.binary(max_size=60), st.binary(max_size=300)),
    max_size=50,
)


@given(messages)
def test_pack_then_unpack_gives_the_same_messages(batch: list[tuple[str, bytes, bytes]]) -> None:
    assert unpack(pack(batch)) == batch
