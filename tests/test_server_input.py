"""No input stops a server: sizes, JSON depth, unknown commands' payloads, stalls and
bugs, each at the codec (whole and byte by byte) and over the transports."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
import zmq
from conftest import serving
from wire import running_server, wire

from corral.kernel import MAX_DEPTH, Kernel
from corral.transports.codec import (
    MAX_JSON_DEPTH,
    Broken,
    Malformed,
    Message,
    Parsed,
    Parser,
    encode,
    trailing_specs,
)
from corral.transports.protocol import data_offset
from corral.transports.tcp import Limits, Server, handle_stream

SPLITS = ["whole", "byte by byte"]


def fed(data: bytes, split: str) -> tuple[list[Parsed], Parser]:
    """What the server's parser makes of ``data``, fed whole or a byte at a time (up to
    a Broken, after which a parser takes nothing more)."""
    parser = Parser(data_offset)
    if split == "whole":
        return parser.feed(data), parser
    out: list[Parsed] = []
    for i in range(len(data)):
        out += parser.feed(data[i:i + 1])
        if out and isinstance(out[-1], Broken):
            break
    return out, parser


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def json_line(payload: bytes) -> bytes:
    return b"push_back 1 value json %d\r\n%s\r\n" % (len(payload), payload)


# -- the codec ----------------------------------------------------------------------------


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("size", ["²", "١٢", "1²", "-1", "+1", "0x10", "1.0", "", "٣"])
def test_a_size_that_is_not_ascii_digits_breaks_the_stream(size: str, split: str) -> None:
    """A size in other digits ('²' passes str.isdigit, int() refuses it), signed or
    empty is Broken; what came before is kept."""
    data = f"ping\r\npush_back 1 value string {size}\r\nxx\r\nping\r\n".encode()
    got, _ = fed(data, split)
    assert 2 == len(got)
    assert Message(("ping",)) == got[0] and isinstance(got[1], Broken)
    assert "ASCII digits" in got[1].reason


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("digits", [13, 4301, 5000])
def test_a_size_of_more_than_twelve_digits_breaks_the_stream(digits: int, split: str
                                                             ) -> None:
    """Past 12 digits a size is Broken (past 4300, int() itself would raise)."""
    got, _ = fed(b"push_back 1 value raw " + b"1" * digits + b"\r\n", split)
    assert 1 == len(got) and isinstance(got[0], Broken)
    assert "is not 1 to 12 ASCII digits" in got[0].reason
    assert len(got[0].reason) < 100  # the size is not echoed whole


@pytest.mark.parametrize("split", SPLITS)
def test_twelve_digits_frame_and_an_oversized_payload_is_drained(split: str) -> None:
    """Twelve digits is a size; over the payload cap it is Malformed and drained."""
    got, parser = fed(b"push_back 1 value raw 000000000003\r\nabc\r\n"
                      b"push_back 1 value raw 999999999999\r\nab", split)
    assert [Message(("push_back", "1"), {"value": b"abc"}), Malformed] == [
        got[0], type(got[1])]
    assert parser.partial  # still draining


@pytest.mark.parametrize(("depth", "split"), [
    (MAX_JSON_DEPTH + 1, "whole"), (MAX_JSON_DEPTH + 1, "byte by byte"),
    (980, "whole"), (980, "byte by byte"), (100_000, "whole")])
def test_json_nested_past_the_bound_is_malformed_and_drained(depth: int, split: str
                                                             ) -> None:
    """A json value nested past MAX_JSON_DEPTH is Malformed (980 levels used to be
    accepted and to blow the stack when served or journaled); its payload is drained,
    so the next command reads right."""
    got, _ = fed(json_line(nested(depth)) + b"ping\r\n", split)
    assert [Malformed, Message(("ping",))] == [type(got[0]), got[1]]
    assert isinstance(got[0], Malformed)
    assert f"nested deeper than {MAX_JSON_DEPTH} levels" in got[0].reason


@pytest.mark.parametrize("split", SPLITS)
def test_json_nested_to_the_bound_is_kept(split: str) -> None:
    """Arrays and objects up to MAX_JSON_DEPTH deep decode; brackets inside strings,
    escaped quotes among them, do not count."""
    deep: Any = "end"
    for level in range(MAX_JSON_DEPTH):
        deep = [deep] if level % 2 else {"k": deep}
    strings = ["[" * 500, '\\"' + "{" * 300, "]" * 70]
    wire = json_line(json.dumps(deep).encode()) + json_line(json.dumps(strings).encode())
    got, _ = fed(wire, split)
    assert [Message(("push_back", "1"), {"value": deep}),
            Message(("push_back", "1"), {"value": strings})] == got


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("payload", [b"NaN", b"[NaN]", b"[-Infinity]", b"[1e999]",
                                     b"[-1E+400]", b"[" + b"9" * 300 + b"e99]",
                                     b"[[[[" + b"]" * 70,
                                     b"\xff\xfe[\x001\x00]\x00"])
def test_json_the_server_could_not_send_back_is_malformed(payload: bytes, split: str
                                                         ) -> None:
    """NaN, infinities, unbalanced brackets and text that is not UTF-8 are Malformed:
    stored, they could not be sent back as they came."""
    got, _ = fed(json_line(payload) + b"ping\r\n", split)
    assert [Malformed, Message(("ping",))] == [type(got[0]), got[1]]


@pytest.mark.parametrize("split", SPLITS)
def test_an_unknown_commands_payload_is_drained(split: str) -> None:
    """The specs an unknown command ends in declare payloads: they are drained, not
    read as commands, even when they hold command lines."""
    wire = (b"bogus value string 6\r\nping 1\r\n"
            b"frob 7 x=y key int 1 value raw 12\r\n5\r\nping\r\nping\r\n\r\n"
            b"ping\r\n")
    assert [Message(("bogus",), {"value": "ping 1"}),
            Message(("frob", "7", "x=y"), {"key": 5, "value": b"ping\r\nping\r\n"}),
            Message(("ping",))] == fed(wire, split)[0]


@pytest.mark.parametrize("split", SPLITS)
def test_a_commands_misplaced_payload_is_drained(split: str) -> None:
    """A data command missing its handle or with a misspelt field, and a command that
    takes no fields, have their declared payloads drained too."""
    wire = (b"push_back value string 4\r\nping\r\n"
            b"create l volatile_list value string 4\r\nping\r\n"
            b"ping key json 2\r\n{}\r\n"
            b"push_back 1 valeu string 4\r\nping\r\n"
            b"ping\r\n")
    assert [Message(("push_back",), {"value": "ping"}),
            Message(("create", "l", "volatile_list"), {"value": "ping"}),
            Message(("ping",), {"key": {}}),
            Malformed(("push_back", "1"), "invalid field name 'valeu'"),
            Message(("ping",))] == fed(wire, split)[0]


def test_the_trailing_specs_rule() -> None:
    """Only a run of whole triples at the end, each a type name and an all-digit size
    after a word, after the command's own word, counts as specs."""
    cases: list[tuple[str, int | None]] = [
        ("bogus value string 3", 1),
        ("bogus 1 key int 1 value raw 3", 2),
        ("bogus value string 3 extra", None),
        ("bogus value string ²", None),
        ("auth key clean 3", None),  # Tio's auth USER clean PASSWORD: no type there
        ("value string 3", None),
        ("bogus valeu string 3", 1),  # any field word: Malformed, drained
        ("bogus key string 3 x value string 3", 5),
    ]
    assert [expected for _, expected in cases] == [
        trailing_specs(tuple(line.split(" "))) for line, _ in cases]


# -- a server over memory streams, on a mock clock ----------------------------------------


@asynccontextmanager
async def memory_server(**server: Any
                        ) -> AsyncIterator[Callable[[], trio.abc.Stream]]:
    """A server whose connections are in-memory streams; yields a connect()."""
    shared = Server(**server)
    async with trio.open_nursery() as nursery:
        shared.start(nursery)

        def connect() -> trio.abc.Stream:
            client, end = trio.testing.memory_stream_pair()
            nursery.start_soon(handle_stream, shared, end)
            return client

        yield connect
        nursery.cancel_scope.cancel()


async def read_until(stream: trio.abc.Stream, predicate: Callable[[bytes], bool]
                     ) -> bytes:
    """What ``stream`` sends until ``predicate`` holds of it, or until EOF."""
    got = b""
    while not predicate(got):
        data = await stream.receive_some()
        if not data:
            break
        got += data
    return got


async def read_to_eof(stream: trio.abc.Stream) -> bytes:
    return await read_until(stream, lambda _: False)


def test_a_stalled_message_is_closed_an_idle_client_is_not() -> None:
    """Hours pass: connections that stopped inside a line or a payload are told and
    closed after stall_timeout; one idle between commands, or parked on a wait, stays
    and is served when its record comes."""

    async def main() -> None:
        async with memory_server(limits=Limits(stall_timeout=30)) as connect:
            idle, parked, half_payload, half_line = (connect() for _ in range(4))
            await idle.send_all(b"create l volatile_list\r\n")
            assert b"answer ok handle 1 volatile_list\r\n" == await read_until(
                idle, lambda got: got.endswith(b"\r\n"))
            await parked.send_all(b"open l\r\nwnp_next 1 tag=w\r\n")
            assert b"waiting w\r\n" in await read_until(
                parked, lambda got: got.endswith(b"waiting w\r\n"))
            await half_payload.send_all(b"open l\r\npush_back 1 value string 10\r\nhello")
            await half_line.send_all(b"push_back 1 value stri")
            await trio.sleep(5 * 3600)
            for stalled in (half_payload, half_line):
                tail = (await read_to_eof(stalled)).split(b"\r\n")[-2]
                assert tail.startswith(b"answer error protocol stalled: nothing for 30 s")
            await idle.send_all(b"push_back 1 value string 4\r\nlate\r\n")
            assert b"answer ok \r\n" == await read_until(idle, lambda got: b"\r\n" in got)
            assert (b"event 1 wnp_next tag=w key int 1 value string 4\r\n0\r\nlate\r\n"
                    == await read_until(parked, lambda got: got.endswith(b"late\r\n")))

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_slow_message_that_keeps_coming_is_not_stalled() -> None:
    """The stall deadline counts from the last bytes: a payload trickling in a byte
    every stall_timeout / 2 is read whole."""

    async def main() -> None:
        async with memory_server(limits=Limits(stall_timeout=10)) as connect:
            slow = connect()
            for byte in b"create l volatile_list\r\npush_back 1 value string 3\r\nabc\r\n":
                await slow.send_all(bytes([byte]))
                await trio.sleep(5)
            assert b"answer ok handle 1 volatile_list\r\nanswer ok \r\n" == await read_until(
                slow, lambda got: got.endswith(b"ok \r\n"))

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_every_command_gets_one_answer_byte_by_byte() -> None:
    """A pipeline of good and bad commands, sent a byte at a time: one answer each, in
    order, and the good ones applied."""
    pipeline = [
        (b"create l volatile_list\r\n", b"answer ok handle 1 volatile_list"),
        (b"bogus value string 6\r\nping 1\r\n", b"answer error invalid_command"),
        (json_line(nested(980)), b"answer error invalid_argument push_back: value is "
                                 b"not a valid json: nested deeper than 66 levels"),
        (b"push_back value string 4\r\nping\r\n", b"answer error not_found"),
        (b"create m volatile_map value string 4\r\nping\r\n",
         b"answer error invalid_argument create takes no fields"),
        (b"push_back 1 valeu string 4\r\nping\r\n", b"answer error invalid_argument"),
        (json_line(nested(MAX_DEPTH)), b"answer ok "),
        (b"get_count 1\r\n", b"answer ok count 1"),
        (b"ping\r\n", b"answer ok pong"),
    ]

    async def main() -> None:
        async with memory_server() as connect:
            client = connect()
            for byte in b"".join(command for command, _ in pipeline):
                await client.send_all(bytes([byte]))
            got = await read_until(client, lambda got: got.endswith(b"pong\r\n"))
            lines = got.split(b"\r\n")[:-1]
            assert len(pipeline) == len(lines)
            for (_, expected), line in zip(pipeline, lines, strict=True):
                assert line.startswith(expected), line

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


@pytest.mark.parametrize("size", [b"\xc2\xb2", b"9" * 5000])
def test_a_bad_size_closes_only_its_connection(size: bytes) -> None:
    """Before authentication too: an unreadable size is answered `protocol` and its
    connection closed; the server and the other connections go on."""

    async def main() -> None:
        async with memory_server(token="s3cret") as connect:
            other, bad = connect(), connect()
            await other.send_all(b"auth s3cret\r\ncreate l volatile_list\r\n")
            await read_until(other, lambda got: got.endswith(b"volatile_list\r\n"))
            await bad.send_all(b"push_back 1 value string " + size + b"\r\nxx\r\n")
            assert (await read_to_eof(bad)).startswith(b"answer error protocol payload size")
            await other.send_all(b"ping\r\n")
            assert b"answer ok pong\r\n" == await read_until(other, lambda g: b"\r\n" in g)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


# -- over real sockets --------------------------------------------------------------------


def test_a_stalled_tcp_client_is_closed_an_idle_one_is_not() -> None:
    """Over TCP: a client that sends half a payload is closed after stall_timeout; one
    that sent whole commands and idles all the while is still served."""

    async def main() -> None:
        async with running_server(limits=Limits(stall_timeout=0.2)) as (_, port), \
                wire(port) as idle, wire(port) as half:
            await idle.send(b"create l volatile_list\r\n")
            assert "answer ok handle 1 volatile_list" == await idle.line()
            await half.send(b"open l\r\npush_back 1 value string 10\r\nhel")
            assert "answer ok handle 1 volatile_list" == await half.line()
            with trio.fail_after(30):
                assert (await half.line()).startswith("answer error protocol stalled")
                assert await half.closed()
            await idle.send(b"get_count 1\r\n")
            assert "answer ok count 0" == await idle.line()

    trio.run(main)


class FaultyKernel(Kernel):
    """A kernel with a bug: get_count raises what no command handler expects."""

    def count(self, name: str) -> int:
        raise RuntimeError("a bug in count")


def zmq_exchange(endpoint: str, frames: list[bytes], until: bytes) -> bytes:
    """Send ``frames`` from a fresh DEALER; collect what comes back until a frame
    holds ``until`` (bounded: 10 s without a frame fails)."""
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        for frame in frames:
            sock.send(frame)
        got = b""
        while until not in got:
            assert sock.poll(10_000), f"no answer; so far {got!r}"
            got += sock.recv()
        return got
    finally:
        sock.close()


def test_a_bug_drops_only_the_connection_that_found_it(caplog: pytest.LogCaptureFixture
                                                       ) -> None:
    """A command that raises something unexpected drops its connection, TCP or ZeroMQ,
    with the error logged; the server goes on serving everyone else."""
    caplog.set_level(logging.WARNING, logger="corral.server")
    with serving(kernel=FaultyKernel()) as urls:
        endpoint = urls.zmq.removeprefix("zmq+")

        async def tcp() -> None:
            async with wire(urls.port) as keeper, wire(urls.port) as victim:
                await keeper.send(b"create l volatile_list\r\n")
                assert "answer ok handle 1 volatile_list" == await keeper.line()
                await victim.send(b"open l\r\nget_count 1\r\nping\r\n")
                assert "answer ok handle 1 volatile_list" == await victim.line()
                assert await victim.closed()
                await keeper.send(b"ping\r\n")
                assert "answer ok pong" == await keeper.line()

        trio.run(tcp)
        got = zmq_exchange(endpoint, [b"open l\r\nget_count 1\r\nping\r\n"],
                           b"event 0 closed")
        assert got.startswith(b"answer ok handle 1 volatile_list\r\n")
        assert b"pong" not in got
        assert b"answer ok pong" in zmq_exchange(endpoint, [b"ping\r\n"], b"\r\n")
    assert 2 == caplog.text.count("unexpected error on input from")
    assert "RuntimeError: a bug in count" in caplog.text


@pytest.mark.parametrize("line", [b"push_back 1 value string \xc2\xb2\r\n",
                                  b"push_back 1 value string " + b"9" * 5000 + b"\r\n"])
def test_zmq_a_bad_size_ends_only_that_peer(line: bytes) -> None:
    """Over ZeroMQ an unreadable size is answered `protocol` and ends that peer's
    session; the server serves the next peer."""
    with serving() as urls:
        endpoint = urls.zmq.removeprefix("zmq+")
        got = zmq_exchange(endpoint, [line], b"event 0 closed")
        assert got.startswith(b"answer error protocol payload size")
        assert b"answer ok pong" in zmq_exchange(endpoint, [b"ping\r\n"], b"\r\n")


def test_zmq_deep_json_and_unknown_payloads_get_one_answer_each() -> None:
    """Over ZeroMQ too: a too-deep json value is refused and an unknown command's
    payload drained, one answer per command, and the session goes on."""
    frame = (b"create l volatile_list\r\n" + json_line(nested(980))
             + b"bogus value string 6\r\nping 1\r\n" + encode(("ping", "end")))
    with serving() as urls:
        got = zmq_exchange(urls.zmq.removeprefix("zmq+"), [frame], b"pong end")
    assert [b"answer ok handle 1 volatile_list",
            b"answer error invalid_argument push_back: value is not a valid json: nested "
            b"deeper than 66 levels",
            b"answer error invalid_command 'bogus' is not a command",
            b"answer ok pong end", b""] == got.split(b"\r\n")


def test_a_tag_used_twice_on_one_handle_stops_nothing() -> None:
    """Two waits with one tag: unwait withdraws the newer, the other is served, and the
    server goes on (the tag index never names a wait that is gone)."""

    async def main() -> None:
        async with running_server() as (_, port), wire(port) as client:
            await client.send(b"create l volatile_list\r\nwnp_next 1 tag=7\r\n"
                              b"wnp_next 1 tag=7\r\nunwait 1 tag=7\r\n")
            assert "answer ok handle 1 volatile_list" == await client.line()
            assert "answer ok waiting 7" == await client.line()
            assert "answer ok waiting 7" == await client.line()
            assert ["answer ok data value int 1", "1"] == await client.message()
            await client.send(b"push_back 1 value string 1\r\nx\r\nunwait 1 tag=7\r\n"
                              b"ping\r\n")
            assert ["event 1 wnp_next tag=7 key int 1 value string 1", "0", "x"] == (
                await client.message())
            assert "answer ok " == await client.line()
            assert ["answer ok data value int 1", "0"] == await client.message()
            assert "answer ok pong" == await client.line()

    trio.run(main)
