"""A grammar-aware wire fuzzer against a real `corral serve` process, with and without
--token: command lines drawn from the grammar (known and unknown commands, handles,
options, field specs with right and wrong fields, types and sizes, deep and odd JSON)
and garbage, each on a fresh TCP connection or ZeroMQ peer. A line that frames gets
exactly one answer; one that cannot be framed is answered `protocol` and closes its
connection; the server stays up, serves a client that was there all along with its data
intact, logs no unexpected error, and stops cleanly."""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import zmq
from conftest import wait_until
from wire import Wire, wire

from corral.transports.codec import FIELDS, Message, Parser, encode, fields_start

TOKEN = "fuzz-s3cret"
SEED = 2605
CASES = 160  # per server: a few seconds in all

# Commands that take fields (docs/protocol.md), and some that take none.
DATA = ["get", "set", "insert", "delete", "push_back", "push_front", "get_property",
        "set_property", "wnp_key", "publish", "retract", "append", "prepend", "edit",
        "insert_before", "move_first", "put", "queue_put", "finish", "cancel", "touch",
        "retry", "result", "state"]
PLAIN = ["ping", "ver", "get_count", "pop_front", "pop_back", "clear", "subscribe",
         "unsubscribe", "query", "wnp_next", "ids", "items", "queue_get", "claim", "unwait",
         "statistics", "stats", "close"]
UNKNOWN = ["bogus", "stop", "PING", "answer", "event", "push_backk", "été", "x" * 300,
           "\x00", ""]
NAMES = ["a", "b", "j", "q", "f"]  # the fuzz's containers; the keeper's are apart
KINDS = ["volatile_list", "volatile_map", "feed", "sorted_feed", "queue", "job",
         "persistent_list", "bogus"]
HANDLES = ["1", "2", "3", "0", "-1", "x", "99999999999999999999"]
OPTIONS = ["tag=t1", "tag=t2", "timeout=0", "timeout=0.01", "timeout=none", "timeout=nan",
           "timeout=1e999", "priority=3", "priority=x", "delay=0.01", "lease=0.05",
           "attempt=1", "attempt=x", "max_length=2", "handle=2", "x=y", "=", "-5", "7"]
TYPES = ["string", "raw", "int", "double", "json"]
BAD_SIZES = ["²", "١٢", "-1", "+3", "0x10", "1.5", "", "1" * 13, "9" * 5000]


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def json_value(rng: random.Random, depth: int) -> Any:
    if depth == 0 or rng.random() < 0.3:
        return rng.choice([0, -7, 10**30, 1.5, -0.0, 1e300, True, False, None, "",
                           "[[{{", '\\"[', "été ☃", "\r\n"])
    children = [json_value(rng, depth - 1) for _ in range(rng.randrange(4))]
    if rng.random() < 0.5:
        return children
    return {str(i): child for i, child in enumerate(children)}


def payload(rng: random.Random, kind: str) -> bytes:
    """Bytes for a field of type ``kind``: mostly right, some wrong for it."""
    odd = rng.random() < 0.3
    if kind == "string":
        return b"\xff\xfe" if odd else rng.choice(["", "hello", "été ☃", "a\r\nping\r\n"]
                                                  ).encode()
    if kind == "raw":
        return bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
    if kind == "int":
        return rng.choice([b"x", b"", b"9" * 5000, b"--1"]) if odd else rng.choice(
            [b"42", b"-7", b"1" * 100])
    if kind == "double":
        return rng.choice([b"x", b"", b"1e999", b"nan"]) if odd else b"1.5"
    if odd:
        return rng.choice([nested(65), nested(980), nested(64), b"[NaN]", b"[1e999]",
                           b'"\\ud800"', b"{", b"", b"[" * 100 + b'"]"'])
    return json.dumps(json_value(rng, rng.randrange(6))).encode()


@attrs.frozen
class Case:
    """Bytes to send, and what the server must do with them."""

    data: bytes
    commands: int  # lines that frame, each owed one answer
    breaks: bool = False  # then one line that cannot be framed: `protocol`, closed
    garbage: bool = False  # anything may happen but the server's end


def command(rng: random.Random) -> bytes:
    """One line that frames under docs/protocol.md, with its payloads. No word before
    the specs is a field or type name, so where they start is never in doubt."""
    roll = rng.random()
    if roll < 0.1:
        words = ["create", rng.choice(NAMES), rng.choice(KINDS)]
    elif roll < 0.15:
        words = ["open", rng.choice(NAMES)]
    elif roll < 0.17:
        words = ["delete_container", rng.choice(KINDS), rng.choice(NAMES)]
    elif roll < 0.2:
        words = ["auth", rng.choice([TOKEN, "wrong"])]
    else:
        words = [rng.choice(DATA if roll < 0.6 else PLAIN if roll < 0.85 else UNKNOWN)]
        if rng.random() < 0.9 or not words[0]:  # an empty line is no command
            words.append(rng.choice(HANDLES))
    name = words[0]
    words += rng.sample(OPTIONS, rng.randrange(3))
    specs, blocks = [], []
    for i in range(rng.choices([0, 1, 2, 3], [4, 4, 2, 1])[0]):
        # A data command's first spec names a field, or its specs start elsewhere.
        field = rng.choice(FIELDS) if (i == 0 and name in DATA) or rng.random() < 0.8 \
            else rng.choice(["valeu", "keys", "tag=x"])
        kind = rng.choice(TYPES)
        data = payload(rng, kind)
        specs += [field, kind, str(len(data))]
        blocks.append(data + rng.choice([b"\r\n", b"\r\n", b"XY"]))
    return " ".join(words + specs).encode() + b"\r\n" + b"".join(blocks)


def breaking(rng: random.Random) -> bytes:
    """A data command whose payload size cannot be read."""
    return (f"{rng.choice(DATA)} 1 value string {rng.choice(BAD_SIZES)}\r\n".encode()
            + b"xx\r\n")


def garbage(rng: random.Random, framed: bytes) -> bytes:
    """Random bytes, or a framed line mutated or cut short."""
    roll = rng.random()
    if roll < 0.3:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
    if roll < 0.6:
        cut = bytearray(framed)
        for _ in range(rng.randrange(1, 5)):
            cut[rng.randrange(len(cut))] = rng.randrange(256)
        return bytes(cut)
    if roll < 0.8:
        return framed[:rng.randrange(len(framed))]
    return b"push_back 1 value raw 100000\r\n" + b"x" * rng.randrange(1000)


def cases(rng: random.Random, token: str | None) -> Iterator[Case]:
    """The three inputs that used to kill a server, an unknown command's payload, then
    the fuzz."""
    auth = f"auth {token}\r\n".encode() if token else b""
    prefix = auth + b"create a volatile_list\r\nopen a\r\n"
    n = prefix.count(b"\r\n")
    yield Case(prefix + b"push_back 1 value string \xc2\xb2\r\nxx\r\n", n, breaks=True)
    yield Case(prefix + b"push_back 1 value string " + b"9" * 5000 + b"\r\n", n,
               breaks=True)
    deep = nested(980)
    yield Case(prefix + b"push_back 1 value json %d\r\n%s\r\nquery 1\r\npop_front 1\r\n"
               % (len(deep), deep), n + 3)
    yield Case(prefix + b"bogus 1 value string 6\r\nping 1\r\nping\r\n", n + 2)
    for _ in range(CASES):
        lines = [command(rng) for _ in range(rng.randrange(1, 6))]
        if token and rng.random() < 0.5:
            lines.insert(0, auth)
        roll = rng.random()
        if roll < 0.6:
            yield Case(b"".join(lines), len(lines))
        elif roll < 0.8:
            yield Case(b"".join(lines) + breaking(rng), len(lines), breaks=True)
        else:
            yield Case(b"".join(lines[:-1]) + garbage(rng, lines[-1]), 0, garbage=True)


def reply_offset(words: tuple[str, ...]) -> int | None:
    """Where a server line's specs start (docs/protocol.md, Answers and Events)."""
    if words[0] == "answer":
        return 3 if words[1:3] == ("ok", "data") else None
    if words[0] == "query":
        return 3 if words[2:3] == ("item",) else None
    return fields_start(words, 3) if words[0] == "event" else None


def answers(data: bytes) -> list[tuple[str, ...]]:
    """The answer lines (not events or query rows) in what a server sent."""
    got = Parser(reply_offset, max_payload=1 << 30).feed(data)
    assert all(isinstance(m, Message) for m in got), got
    return [m.words for m in got if isinstance(m, Message) and m.words[0] == "answer"]


def check(case: Case, got: bytes, closed: bool, where: str) -> None:
    """What the server sent for ``case`` is what the protocol promises."""
    if case.garbage:
        return
    said = answers(got)
    if case.breaks:
        assert closed, (where, case)
        assert case.commands + 1 == len(said), (where, case, said)
        assert ("answer", "error", "protocol", "payload", "size") == said[-1][:5]
    else:
        assert case.commands + 1 == len(said), (where, case, said)
        assert ("answer", "ok", "pong", "end") == said[-1], (where, case)


async def tcp_case(port: int, case: Case) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        got, closed = bytearray(), False
        end = b"ping end\r\n" if not (case.breaks or case.garbage) else b""
        try:
            await stream.send_all(case.data + end)
            if case.garbage:
                await stream.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        with trio.fail_after(10):
            while not (end and got.endswith(b"answer ok pong end\r\n")):
                try:
                    data = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    data = b""
                if not data:
                    closed = True
                    break
                got += data
    check(case, bytes(got), closed, "tcp")


def zmq_case(endpoint: str, case: Case) -> None:
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        end = b"ping end\r\n" if not (case.breaks or case.garbage) else b""
        sock.send(case.data + end)
        if case.garbage:
            sock.send(b"bye\r\n")
            return
        got, closed = b"", False
        while not got.endswith(b"answer ok pong end\r\n"):
            assert sock.poll(10_000), f"no answer; so far {got!r}"
            frame = sock.recv()
            if frame.startswith(b"event 0 closed"):
                closed = True
                break
            got += frame
        check(case, got, closed, "zmq")
    finally:
        sock.close()


@attrs.frozen
class Served:
    process: subprocess.Popen[bytes]
    port: int
    endpoint: str
    token: str | None
    log: Path


@pytest.fixture(params=[None, TOKEN], ids=["open", "token"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    """`corral serve` as a child process, on TCP and ZeroMQ ports it picks, logging to
    a file (a pipe nobody reads would fill up and stall it)."""
    token = request.param
    log = tmp_path / "server.log"
    args = [sys.executable, "-m", "corral.adapters.cli", "serve", "--port", "0",
            "--zmq", "tcp://127.0.0.1:0"] + (["--token", token] if token else [])
    with log.open("w") as out, subprocess.Popen(args, stderr=out,
                                                 stdout=subprocess.DEVNULL) as process:
        try:
            wait_until(lambda: "(ZeroMQ)" in log.read_text() or process.poll() is not None)
            text = log.read_text()
            port = re.search(r"listening on 127\.0\.0\.1:(\d+)", text)
            endpoint = re.search(r"listening on (tcp://\S+) \(ZeroMQ\)", text)
            assert port and endpoint, text
            yield Served(process, int(port.group(1)), endpoint.group(1), token, log)
        finally:
            if process.poll() is None:
                process.kill()


def deep_list(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


# A well-behaved client's values: one of each type, a JSON one as deep as allowed.
KEPT: list[Any] = ["été ☃", b"\x00\r\nping\r\n", 9**60, 0.1, [{"a": [1, None]}, "x"],
                   deep_list(64)]


async def keep(w: Wire, token: str | None) -> None:
    """The keeper's list: KEPT, pushed one by one."""
    if token:
        await w.send(f"auth {token}\r\n".encode())
        assert "answer ok " == await w.line()
    await w.send(b"create keeper volatile_list\r\n")
    assert "answer ok handle 1 volatile_list" == await w.line()
    for value in KEPT:
        await w.send(encode(("push_back", "1"), {"value": value}))
        assert "answer ok " == await w.line()


async def kept(w: Wire) -> list[Any]:
    """The values in the keeper's list, read with a query."""
    await w.send(b"query 1\r\n")
    while not re.search(rb"query \d+ end\r\n", w.buffer):
        await w._fill()
    got = Parser(reply_offset).feed(bytes(w.buffer))
    w.buffer.clear()
    return [m.fields["value"] for m in got if isinstance(m, Message) and m.fields]


def test_no_input_stops_a_real_server(served: Served) -> None:
    """Fuzzed and hostile input on fresh connections, TCP and ZeroMQ: every framed line
    gets one answer, an unframeable one closes its connection, and the server lives,
    with a waiting client's data intact, no unexpected error logged, and a clean stop."""
    rng = random.Random(SEED)
    all_cases = list(cases(rng, served.token))

    async def main() -> None:
        async with wire(served.port) as keeper:
            await keep(keeper, served.token)
            for case in all_cases:
                await tcp_case(served.port, case)
            for case in all_cases[:4] + all_cases[4::4]:
                await trio.to_thread.run_sync(zmq_case, served.endpoint, case)
            assert served.process.poll() is None
            await keeper.send(b"ping\r\n")
            assert "answer ok pong" == await keeper.line()
            assert KEPT == await kept(keeper)
        async with wire(served.port) as fresh:
            if served.token:
                await fresh.send(f"auth {served.token}\r\n".encode())
                assert "answer ok " == await fresh.line()
            await fresh.send(b"open keeper\r\nget_count 1\r\n")
            assert "answer ok handle 1 volatile_list" == await fresh.line()
            assert f"answer ok count {len(KEPT)}" == await fresh.line()

    trio.run(main)
    served.process.send_signal(signal.SIGTERM)
    assert 0 == served.process.wait(10)
    log = served.log.read_text(errors="replace")
    assert "unexpected error" not in log and "Traceback" not in log, log[-3000:]
    assert "unreadable input: payload size" in log  # hostile input met, and dropped


def test_the_fuzz_is_deterministic_and_draws_every_kind_of_case() -> None:
    """The same seed, the same cases: framed, breaking and garbage, with unknown
    commands, misspelt fields and json nested past the bound among them."""
    first = list(cases(random.Random(SEED), TOKEN))
    assert first == list(cases(random.Random(SEED), TOKEN))
    assert CASES + 4 == len(first)
    assert {(False, False), (True, False), (False, True)} == {
        (case.breaks, case.garbage) for case in first}
    sent = b"".join(case.data for case in first)
    for mark in (b"bogus", b"valeu", nested(65), b"\xc2\xb2", b"9" * 5000):
        assert mark in sent
