"""The wire codec: one sans-IO parser and encoder for every network transport.

The grammar is Tio's. A message is a line of space-separated words, ended by ``\\n``
(one ``\\r`` before it is dropped). A line may end in field specs, ``<field> <type>
<size>`` triples with field one of ``key``, ``value``, ``metadata``; the line is then
followed, for each spec in order, by exactly ``size`` payload bytes and two trailer bytes
(``\\r\\n``, not checked). Payloads are length-framed, so they may hold anything.

Types: ``string`` (UTF-8 text), ``raw`` (bytes), ``int`` (decimal, as many digits as
Python reads), ``double`` (a float, printed so that it reads back the same) and ``json``
(UTF-8 JSON text, nested at most ``MAX_JSON_DEPTH`` deep, without NaN or Infinity).
Together they carry every value (``corral.kernel.check_value``): a str that UTF-8
cannot hold (a lone surrogate) goes as json, whose escapes can.

Where a line's specs start depends on what the line is, so the parser is told:
``data_offset(words)`` returns the index of the first spec, or None for a plain line.
``fields_start`` and ``trailing_specs`` are the two rules it is built from. A size is 1
to ``MAX_SIZE_DIGITS`` ASCII digits.

Errors that leave the stream readable (a bad type, a value that does not decode or nests
too deep, an unknown field, a payload over the cap) come back as a ``Malformed`` message
for that line, with its payload drained. An error that makes the stream unreadable (a
line over the cap, a size that is not 1 to 12 ASCII digits, specs not in threes) ends
the batch with ``Broken``: close the connection. Messages completed before it are still
returned. ``partial`` says whether the bytes fed so far end inside a message.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import attrs

from corral.kernel import MAX_DEPTH, CorralError, InvalidArgument

__all__ = [
    "FIELDS",
    "MAX_JSON_DEPTH",
    "MAX_SIZE_DIGITS",
    "Broken",
    "Malformed",
    "Message",
    "Parsed",
    "Parser",
    "ProtocolError",
    "decode_value",
    "encode",
    "encode_value",
    "fields_start",
    "present",
    "trailing_specs",
]

FIELDS = ("key", "value", "metadata")
TYPES = frozenset({"string", "raw", "int", "double", "json"})
DEFAULT_MAX_LINE = 64 * 1024
DEFAULT_MAX_PAYLOAD = 16 * 1024 * 1024
# A payload size is 1 to 12 ASCII digits: far more than any cap needs, and few enough
# that int() never meets Python's limit on digits (nor str.isdigit's other digits, such
# as '²', which int() refuses).
MAX_SIZE_DIGITS = 12
_SIZE = re.compile(f"[0-9]{{1,{MAX_SIZE_DIGITS}}}")
_DIGITS = re.compile(r"[0-9]+")
# Arrays and objects nest at most this deep in a json payload: a value's own depth
# (MAX_DEPTH), and two levels for the answers that carry values inside a list or dict
# (claim_many's [[id, item, attempt], ...], info's metadata). Decoding and encoding
# recurse once per level: an unbounded depth would let a peer exhaust the interpreter's
# recursion limit.
MAX_JSON_DEPTH = MAX_DEPTH + 2


class ProtocolError(CorralError):
    """The peer sent bytes that cannot be read as the protocol."""


@attrs.define
class Message:
    """One parsed line: its words and the fields its specs carried. (Not frozen: one is
    made per message on both ends of a connection, and a frozen class takes twice as
    long to make.)"""

    words: tuple[str, ...]
    fields: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class Malformed:
    """A line that was read whole but cannot be used; ``reason`` says why."""

    words: tuple[str, ...]
    reason: str


@attrs.frozen
class Broken:
    """The stream cannot be read past this point; ``reason`` says why. Always last."""

    reason: str


Parsed = Message | Malformed | Broken


def encode_value(value: Any) -> tuple[str, bytes]:
    """The wire type and bytes of a Python value. Raises InvalidArgument for one that
    is not a value (the client checks values before they get here; what the server
    sends, its kernel has checked)."""
    if isinstance(value, str):
        try:
            return "string", value.encode()
        except UnicodeEncodeError:  # a lone surrogate: JSON escapes it
            return "json", json.dumps(value).encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "raw", bytes(value)
    if isinstance(value, bool) or value is None:
        return "json", json.dumps(value).encode()
    if isinstance(value, int):
        return "int", str(value).encode()
    if isinstance(value, float):
        return "double", repr(value).encode()
    try:
        return "json", json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError, RecursionError) as error:
        raise InvalidArgument(f"cannot send {type(value).__name__}: {error}") from None


def decode_value(kind: str, data: bytes | bytearray) -> Any:
    """The Python value of a payload of wire type ``kind``. Raises ValueError."""
    if kind == "string":
        return data.decode()
    if kind == "raw":
        return bytes(data)
    if kind == "int":
        if not data.strip(b"-").isdigit():
            raise ValueError(f"not an int: {data[:40]!r}")
        return int(data)
    if kind == "double":
        return float(data)
    if kind == "json":
        return _decode_json(data)
    raise ValueError(f"unknown type {kind!r}")


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text[:20]} is out of a double's range")
    return value


# Made once: json.loads with options makes a decoder per call. Only a payload that could
# hold a number past a double's range pays for the float hook.
_decode = json.JSONDecoder(parse_constant=_refuse_constant).decode
_decode_in_range = json.JSONDecoder(parse_constant=_refuse_constant,
                                    parse_float=_finite_float).decode
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_SQUARE = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_NUMBER_SHAPE = bytes.maketrans(b"0123456789E", b"0000000000e")  # and drop "+"


def _may_overflow(data: bytes | bytearray) -> bool:
    """Whether ``data`` may hold a number past a double's range (10**308): one with an
    exponent of 3 digits or more, or 200 digits in a row (2 exponent digits add at most
    99). Never misses one; a false alarm only costs the float hook."""
    if len(data) < 5:  # the shortest is 9e999
        return False
    # find, not in: bytes.__contains__ tries its argument as an int first, at a cost.
    shape = data.translate(_NUMBER_SHAPE, b"+")
    return shape.find(b"e000") >= 0 or (len(data) >= 200
                                        and shape.find(b"0" * 200) >= 0)


def _decode_json(data: bytes | bytearray) -> Any:
    """A json payload's value, or ValueError: not UTF-8 JSON text (json.loads would
    guess UTF-16 and UTF-32 too, which the depth scan cannot read), nested too deep, or
    holding what the encoder could not send back (NaN, infinities)."""
    text = data.decode()
    if len(data) > 2 * MAX_JSON_DEPTH:  # shorter, it cannot nest too deep and be JSON
        _check_nesting(data)
    return (_decode_in_range if _may_overflow(data) else _decode)(text)


def _check_nesting(data: bytes | bytearray) -> None:
    """Raise ValueError if the JSON text in ``data`` nests deeper than MAX_JSON_DEPTH
    (or its brackets do not balance), from the brackets outside strings alone. Linear,
    at C speed, and it runs before json.loads, whose recursion a deep value exhausts."""
    if data.count(b"[") + data.count(b"{") <= MAX_JSON_DEPTH:
        return  # it cannot nest deeper than it has brackets
    # In JSON a backslash only starts an escape, in a string: once the escapes are gone,
    # every quote starts or ends a string.
    outside = b"".join(_ESCAPE.sub(b"", data).split(b'"')[::2])
    skeleton = outside.translate(_SQUARE, _NOT_BRACKETS)  # only brackets, all square
    for _ in range(MAX_JSON_DEPTH):
        if not skeleton:
            return
        inner = skeleton.replace(b"[]", b"")  # every innermost pair: one level less
        if len(inner) == len(skeleton):
            raise ValueError("its brackets do not balance")
        skeleton = inner
    if skeleton:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")


def fields_start(words: tuple[str, ...], start: int) -> int | None:
    """The index of the first field name at or after ``start``, if any."""
    for i in range(start, len(words)):
        if words[i] in FIELDS:
            return i
    return None


def trailing_specs(words: tuple[str, ...], start: int = 1) -> int | None:
    """The index of the first of the field specs a line ends in, at or after ``start``:
    the run of ``<field> <type> <size>`` triples at its end, each with a type name and
    an all-digit size (any field word: a wrong one makes the line Malformed, its
    payloads still drained). None if it ends in none. The rule for lines that do not
    say where their specs start (an unknown command, a command missing its handle or
    with a misspelt field), so that the payloads they declare are drained instead of
    read as commands."""
    i = len(words)
    while i - 3 >= start and words[i - 2] in TYPES and _DIGITS.fullmatch(words[i - 1]):
        i -= 3
    return i if i < len(words) else None


def present(**fields: Any) -> dict[str, Any]:
    """The fields that are not None (for key and metadata, None means absent)."""
    return {name: value for name, value in fields.items() if value is not None}


def encode(words: Sequence[str], fields: dict[str, Any] | None = None) -> bytes:
    """One message: the words, then a spec and a payload block per field in ``fields``
    (a None value is sent as JSON null), in key, value, metadata order."""
    head = " ".join(words)
    blocks = []
    for name in FIELDS:
        if fields and name in fields:
            kind, data = encode_value(fields[name])
            head += f" {name} {kind} {len(data)}"
            blocks.append(data + b"\r\n")
    return head.encode() + b"\r\n" + b"".join(blocks)


class Parser:
    """Incremental parser: ``feed(bytes)`` returns the messages completed so far."""

    def __init__(self, data_offset: Callable[[tuple[str, ...]], int | None], *,
                 max_line: int = DEFAULT_MAX_LINE, max_payload: int = DEFAULT_MAX_PAYLOAD
                 ) -> None:
        self._data_offset = data_offset
        self._max_line = max_line
        self._max_payload = max_payload
        self._buffer = bytearray()
        # While a data line's payloads are being read:
        self._words: tuple[str, ...] | None = None
        self._specs: list[tuple[str, str, int]] = []  # those still to read, last first
        self._fields: dict[str, Any] = {}
        self._problem: str | None = None  # set once the line is known to be Malformed
        self._skip = 0  # payload bytes still to drop (an over-cap payload)
        self._broken: str | None = None

    @property
    def partial(self) -> bool:
        """Whether the bytes fed so far end inside a message: a line, or the payloads of
        a data line, partly read (a server times out a peer that stalls there)."""
        return bool(self._buffer) or self._words is not None or self._skip > 0

    def feed(self, data: bytes | bytearray) -> list[Parsed]:
        """Take more bytes; return every message they complete, in order, ending with
        ``Broken`` if the stream became unreadable. Feeding a broken parser raises
        ProtocolError."""
        if self._broken is not None:
            raise ProtocolError(f"the stream is unreadable: {self._broken}")
        buf = self._buffer
        buf += data
        out: list[Parsed] = []
        pos = 0  # what is consumed is cut from the buffer once, at the end
        try:
            while True:
                if self._skip:
                    dropped = min(self._skip, len(buf) - pos)
                    pos += dropped
                    self._skip -= dropped
                    if self._skip:
                        break
                if self._words is None:  # a line
                    end = buf.find(b"\n", pos)
                    if end < 0:
                        if len(buf) - pos > self._max_line:
                            raise ProtocolError(f"line longer than {self._max_line} bytes")
                        break
                    if end - pos > self._max_line:
                        raise ProtocolError(f"line longer than {self._max_line} bytes")
                    start, pos = pos, end + 1
                    if end > start and buf[end - 1] == 13:  # \r
                        end -= 1
                    if end == start:
                        continue  # empty lines are ignored
                    try:
                        words = tuple(buf[start:end].decode().split(" "))
                    except UnicodeDecodeError:
                        out.append(Malformed(("?",), "a command line must be UTF-8"))
                        continue
                    offset = self._data_offset(words)
                    if offset is None or offset >= len(words):
                        out.append(Message(words))
                        continue
                    self._specs, self._problem = self._parse_specs(words[offset:])
                    self._words, self._fields = words[:offset], {}
                # the next payload of the line in self._words
                name, kind, size = self._specs[-1]
                if size > self._max_payload:  # already Malformed: drained, not buffered
                    self._skip = size + 2
                else:
                    if len(buf) - pos < size + 2:
                        break
                    if self._problem is None:
                        try:  # a repeated field: the last wins
                            self._fields[name] = decode_value(kind, buf[pos:pos + size])
                        except (ValueError, UnicodeDecodeError, RecursionError) as error:
                            self._problem = f"{name} is not a valid {kind}: {error}"
                    pos += size + 2
                self._specs.pop()
                if not self._specs:
                    if self._problem is None:
                        out.append(Message(self._words, self._fields))
                    else:
                        out.append(Malformed(self._words, self._problem))
                    self._words, self._fields, self._problem = None, {}, None
        except ProtocolError as error:
            self._broken = str(error)
            buf.clear()
            out.append(Broken(self._broken))
            return out
        del buf[:pos]
        return out

    def _parse_specs(self, tokens: tuple[str, ...]
                     ) -> tuple[list[tuple[str, str, int]], str | None]:
        """The specs, last first (they are taken from the end), and the first problem."""
        if len(tokens) % 3:
            raise ProtocolError(f"field specs come in threes, got {' '.join(tokens)!r}")
        specs, problem = [], None
        for i in range(0, len(tokens), 3):
            name, kind, size_text = tokens[i:i + 3]
            if not _SIZE.fullmatch(size_text):
                shown = size_text if len(size_text) <= 20 else size_text[:20] + "..."
                raise ProtocolError(f"payload size {shown!r} is not 1 to "
                                    f"{MAX_SIZE_DIGITS} ASCII digits")
            size = int(size_text)
            if name not in FIELDS:
                problem = problem or f"invalid field name {name!r}"
            elif kind not in TYPES:
                problem = problem or f"invalid type {kind!r} for {name}"
            elif size > self._max_payload:
                problem = problem or (f"{name} payload of {size} bytes is over the "
                                      f"{self._max_payload}-byte cap")
            specs.append((name, kind, size))
        specs.reverse()
        return specs, problem
