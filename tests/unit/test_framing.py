"""RFC 6242 codec: both framings, the switch after hello, limits, and garbage."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.netconf.framing import (
    FrameDecoder,
    FramingError,
    FramingMode,
    encode_message,
)

# Message bodies never contain the end-of-message delimiter (RFC 6242 §4.3 forbids it).
messages_st = st.lists(
    st.binary(min_size=1, max_size=300).filter(lambda body: b"]]>]]>" not in body),
    min_size=1,
    max_size=6,
)


def _decode_all(decoder: FrameDecoder, pieces: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for piece in pieces:
        decoder.feed(piece)
        while (message := decoder.next_message()) is not None:
            out.append(message)
    return out


def _split(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(stream) + 1) for cut in cuts})
    pieces: list[bytes] = []
    start = 0
    for point in [*points, len(stream)]:
        pieces.append(stream[start:point])
        start = point
    return pieces


@given(messages_st, st.lists(st.integers(min_value=0, max_value=10_000), max_size=20))
@settings(max_examples=200, deadline=None)
def test_chunked_stream_decodes_identically_under_any_split(
    messages: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(encode_message(m, FramingMode.CHUNKED) for m in messages)
    decoder = FrameDecoder()
    decoder.set_mode(FramingMode.CHUNKED)
    assert _decode_all(decoder, _split(stream, cuts)) == messages


@given(messages_st, st.lists(st.integers(min_value=0, max_value=10_000), max_size=20))
@settings(max_examples=200, deadline=None)
def test_end_of_message_stream_decodes_identically_under_any_split(
    messages: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(encode_message(m, FramingMode.END_OF_MESSAGE) for m in messages)
    assert _decode_all(FrameDecoder(), _split(stream, cuts)) == messages


@given(st.lists(st.binary(min_size=1, max_size=50), min_size=1, max_size=5))
def test_chunked_message_split_into_many_chunks_is_joined(parts: list[bytes]) -> None:
    stream = b"".join(b"\n#%d\n%s" % (len(p), p) for p in parts) + b"\n##\n"
    decoder = FrameDecoder()
    decoder.set_mode(FramingMode.CHUNKED)
    assert _decode_all(decoder, [stream]) == [b"".join(parts)]


def test_switch_to_chunked_after_hello_in_the_same_read() -> None:
    hello = b"<hello/>"
    rpc = b"<rpc/>"
    stream = encode_message(hello, FramingMode.END_OF_MESSAGE) + encode_message(
        rpc, FramingMode.CHUNKED
    )
    decoder = FrameDecoder()
    decoder.feed(stream)
    assert decoder.next_message() == hello
    decoder.set_mode(FramingMode.CHUNKED)
    assert decoder.next_message() == rpc
    assert decoder.next_message() is None


@given(st.binary(max_size=400), st.lists(st.integers(min_value=0, max_value=500), max_size=8))
@settings(max_examples=300, deadline=None)
def test_garbage_in_chunked_mode_gives_framing_error_or_waits(
    garbage: bytes, cuts: list[int]
) -> None:
    decoder = FrameDecoder(max_message_size=1000)
    decoder.set_mode(FramingMode.CHUNKED)
    try:
        out = _decode_all(decoder, _split(garbage, cuts))
    except FramingError:
        return
    # Without an error, whatever came out must be a prefix of what was fed.
    assert sum(len(m) for m in out) <= len(garbage)


@given(st.binary(max_size=400))
def test_garbage_in_end_of_message_mode_never_exceeds_limit(garbage: bytes) -> None:
    decoder = FrameDecoder(max_message_size=100)
    try:
        out = _decode_all(decoder, [garbage])
    except FramingError:
        return
    assert all(len(m) <= 100 for m in out)


@pytest.mark.parametrize(
    "stream",
    [
        b"#5\nhello\n##\n",  # missing leading newline
        b"\n#05\nhello\n##\n",  # leading zero
        b"\n#0\n\n##\n",  # zero-size chunk
        b"\n#x\n",  # not a number
        b"\n#99999999999\n",  # too many digits
        b"\n#4294967296\n",  # above the RFC maximum
        b"\n##\n",  # end before any chunk
        b"\n#3\nabc\n#x",  # garbage header after a chunk
        b"\n#3\nabc\n##x",  # broken end marker
    ],
)
def test_broken_chunk_framing_is_rejected(stream: bytes) -> None:
    decoder = FrameDecoder()
    decoder.set_mode(FramingMode.CHUNKED)
    decoder.feed(stream)
    with pytest.raises(FramingError):
        while decoder.next_message() is not None:
            pass


def test_chunked_message_over_limit_is_rejected_before_its_data_arrives() -> None:
    decoder = FrameDecoder(max_message_size=10)
    decoder.set_mode(FramingMode.CHUNKED)
    decoder.feed(b"\n#6\nabcdef\n#6\n")
    with pytest.raises(FramingError, match="exceeds"):
        decoder.next_message()


def test_end_of_message_over_limit_is_rejected_without_delimiter() -> None:
    decoder = FrameDecoder(max_message_size=10)
    decoder.feed(b"x" * 17)
    with pytest.raises(FramingError, match="exceeds"):
        decoder.next_message()


def test_end_of_message_delimiter_split_across_reads() -> None:
    decoder = FrameDecoder()
    assert _decode_all(decoder, [b"<a/>]]>", b"]]", b">"]) == [b"<a/>"]


def test_empty_chunked_message_cannot_be_encoded() -> None:
    with pytest.raises(FramingError):
        encode_message(b"", FramingMode.CHUNKED)
