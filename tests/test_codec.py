"""The wire codec: fed whole, byte by byte, in random chunks and with trailing garbage."""

from __future__ import annotations

import math
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given

from corral.kernel import InvalidArgument
from corral.transports.codec import (
    Broken,
    Malformed,
    Message,
    Parser,
    ProtocolError,
    decode_value,
    encode,
    encode_value,
    present,
)


def commands(words: tuple[str, ...]) -> int | None:
    """Data specs start after the command and its handle, as on a server."""
    return 2 if words[0] in ("set", "push_back", "get") else None


WORDS = st.text("abcxyz_0123456789", min_size=1, max_size=6)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                 max_size=3),
    max_leaves=5)
VALUES = st.one_of(
    st.text(), st.binary(), st.integers(), st.floats(allow_nan=False),
    st.lists(JSONISH, max_size=3), st.dictionaries(st.text(max_size=4), JSONISH, max_size=3),
    st.booleans(),
)
FIELDS = st.fixed_dictionaries({}, optional={"key": VALUES, "value": VALUES,
                                             "metadata": VALUES})
MESSAGES = st.tuples(st.sampled_from(["set", "push_back", "get"]), WORDS, FIELDS)


def parse(data: bytes, chunks: list[int] | None = None) -> list[Any]:
    parser = Parser(commands)
    if chunks is None:
        return parser.feed(data)
    out, i = [], 0
    for size in chunks:
        out += parser.feed(data[i:i + size])
        i += size
    return out + parser.feed(data[i:])


def same(a: Any, b: Any) -> bool:
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


@given(st.lists(MESSAGES, max_size=4), st.data())
def test_round_trip_whole_byte_by_byte_and_chunked(messages: list[Any], data: Any) -> None:
    """Encoded messages parse back the same however the bytes are split."""
    wire = b"".join(encode((cmd, handle), fields) for cmd, handle, fields in messages)
    expected = [Message((cmd, handle), {k: v for k, v in fields.items()})
                for cmd, handle, fields in messages]
    assert expected == parse(wire)
    assert expected == parse(wire, [1] * len(wire))
    chunks = data.draw(st.lists(st.integers(1, 50), max_size=20))
    assert expected == parse(wire, chunks)


@given(MESSAGES, st.binary(max_size=100))
def test_trailing_garbage_never_spoils_what_came_before(message: Any, garbage: bytes
                                                         ) -> None:
    """A complete message is returned whatever follows it; garbage gives Malformed or
    Broken items after it, or waits for more bytes, and never raises."""
    cmd, handle, fields = message
    got = parse(encode((cmd, handle), fields) + garbage)
    assert Message((cmd, handle), fields) == got[0]
    assert all(isinstance(m, (Message, Malformed, Broken)) for m in got)
    assert all(not isinstance(m, Broken) for m in got[:-1])


def test_values_keep_their_types() -> None:
    """string, raw, int (unbounded), double (round-trips) and json (a lone surrogate
    too)."""
    for value in ("héllo\r\n", "\ud800", b"\x00\xff", 10**40, -7, 3.1415926535, 0.1,
                  [1, {"a": None}], True, None):
        kind, data = encode_value(value)
        assert value == decode_value(kind, data)
    assert ("double", b"3.1415926535") == encode_value(3.1415926535)
    with pytest.raises(InvalidArgument, match="cannot send"):
        encode_value(object())


def test_tio_framing_rules() -> None:
    """CRLF or LF ends a line; empty lines are ignored; payloads are length-framed and
    may hold newlines; the two trailer bytes are not checked; a repeated field keeps
    the last."""
    wire = (b"\n\r\nping a b\n" b"set 1 key string 3 value string 4\r\nabc\r\nx\r\ny\r\n"
            b"push_back 2 value int 2 value int 1\n11YY9??")
    assert [Message(("ping", "a", "b")), Message(("set", "1"), {"key": "abc", "value": "x\r\ny"}),
            Message(("push_back", "2"), {"value": 9})] == parse(wire)


def test_a_bad_field_is_malformed_and_its_payload_drained() -> None:
    """A bad field name, type or value gives Malformed for that line only; its payload is
    drained, so the next command is read right (Tio misread it as commands)."""
    wire = (b"push_back 99 valeu string 3\r\nabc\r\nping\r\n"
            b"push_back 1 value bogus 2\r\nxx\r\nping\r\n"
            b"push_back 1 value int 3\r\nabc\r\nping\r\n")
    got = parse(wire)
    assert [Malformed, Message, Malformed, Message, Malformed, Message] == [type(m) for m in got]
    assert "invalid field name 'valeu'" == got[0].reason
    assert "not a valid int" in got[4].reason


def test_an_oversized_payload_is_drained_without_buffering() -> None:
    """A payload over the cap is refused and skipped as it arrives."""
    parser = Parser(commands, max_payload=10)
    got = parser.feed(b"push_back 1 value raw 1000000\r\n")
    assert [Malformed] == [type(m) for m in got]
    for _ in range(100):
        assert [] == parser.feed(b"x" * 10_000)
    assert [Message(("ping",))] == parser.feed(b"\r\nping\r\n")


def test_unreadable_streams_break() -> None:
    """A size that is not a number, or a line over the cap, breaks the stream; what came
    before is kept; feeding more raises ProtocolError."""
    parser = Parser(commands)
    got = parser.feed(b"ping\r\npush_back 1 value string abc\r\nabc\r\n")
    assert Message(("ping",)) == got[0] and isinstance(got[1], Broken)
    with pytest.raises(ProtocolError):
        parser.feed(b"ping\r\n")
    long = Parser(commands, max_line=16)
    assert [Broken] == [type(m) for m in long.feed(b"x" * 17)]
    assert isinstance(Parser(commands).feed(b"set 1 key string 3 value\r\n")[0], Broken)


def test_encode_orders_fields_and_sends_none_as_null() -> None:
    """Fields go key, value, metadata; a field left out is absent, a None is JSON null;
    present() leaves out the Nones."""
    assert (b"answer ok data key string 1 value int 2\r\nk\r\n10\r\n"
            == encode(("answer", "ok", "data"), {"value": 10, "key": "k"}))
    assert (b"push_back 1 value json 4\r\nnull\r\n"
            == encode(("push_back", "1"), {"value": None, **present(metadata=None)}))
    assert [Message(("push_back", "1"), {"value": None})] == parse(
        encode(("push_back", "1"), {"value": None}))
    assert b"answer ok \r\n" == encode(("answer", "ok", ""))
