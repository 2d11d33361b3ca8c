"""The TCP server over real sockets on 127.0.0.1: Tio's transcripts and then some."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio
from wire import running_server, wire


def run(test: Callable[..., Awaitable[None]]) -> None:
    async def main() -> None:
        async with running_server() as (server, port):
            await test(server, port)

    trio.run(main)


def test_wnp_next_transcript() -> None:
    """The seed's wnp_next session: present items pop at once; a parked wnp_next gets the
    next push_back, whose event comes before the pusher's answer."""

    async def test(server: Any, port: int) -> None:
        async with wire(port) as w:
            await w.send(b"create test volatile_list\r\n")
            assert "answer ok handle 1 volatile_list" == await w.line()
            await w.send(b"push_back 1 value string 9\r\nhello tio\r\n"
                         b"push_back 1 value string 4\r\nxpto\r\nget_count 1\r\n")
            assert ["answer ok ", "answer ok ", "answer ok count 2"] == [
                await w.line() for _ in range(3)]
            await w.send(b"wnp_next 1\r\n")
            assert ["event 1 wnp_next key int 1 value string 9", "0", "hello tio"] == (
                await w.message())
            assert "answer ok " == await w.line()
            await w.send(b"get_count 1\r\nwnp_next 1\r\n")
            assert "answer ok count 1" == await w.line()
            assert "xpto" == (await w.message())[-1]
            assert "answer ok " == await w.line()
            await w.send(b"wnp_next 1\r\n")
            assert "answer ok " == await w.line()  # parked: no event yet
            await w.send(b"push_back 1 value string 3\r\nabc\r\n")
            assert ["event 1 wnp_next key int 1 value string 3", "0", "abc"] == (
                await w.message())
            assert "answer ok " == await w.line()
            await w.send(b"get_count 1\r\n")
            assert "answer ok count 0" == await w.line()

    run(test)


def test_wnp_key_transcript() -> None:
    """The seed's wnp_key session, across two connections."""

    async def test(server: Any, port: int) -> None:
        async with wire(port) as a, wire(port) as b:
            await a.send(b"create dict volatile_map\r\n")
            assert "answer ok handle 1 volatile_map" == await a.line()
            await a.send(b"set 1 key string 7 value string 7\r\nrodrigo\r\nstrauss\r\n")
            assert "answer ok " == await a.line()
            await a.send(b"wnp_key 1 key string 7\r\nrodrigo\r\n")
            assert ["event 1 wnp_key key string 7 value string 7", "rodrigo", "strauss"
                    ] == await a.message()
            assert "answer ok " == await a.line()
            await a.send(b"wnp_key 1 key string 7\r\nrodrigo\r\n")
            assert "answer ok " == await a.line()
            await b.send(b"open dict\r\n")
            assert "answer ok handle 1 volatile_map" == await b.line()
            await b.send(b"set 1 key string 5 value string 7\r\nlinus\r\ntovards\r\n"
                         b"set 1 key string 7 value string 7\r\nrodrigo\r\nSurname\r\n")
            assert ["answer ok ", "answer ok "] == [await b.line(), await b.line()]
            assert ["event 1 wnp_key key string 7 value string 7", "rodrigo", "Surname"
                    ] == await a.message()

    run(test)


def test_subscription_events_and_pipelining() -> None:
    """A subscriber on another connection sees push_back then pop_front; pipelined
    commands are answered in order; a subscriber's own events precede its answers."""

    async def test(server: Any, port: int) -> None:
        async with wire(port) as a, wire(port) as b:
            await b.send(b"create q volatile_list\r\nsubscribe 1\r\n")
            assert ["answer ok handle 1 volatile_list", "answer ok"] == [
                await b.line(), await b.line()]
            await a.send(b"create q volatile_list\r\npush_back 1 value int 2\r\n10\r\n"
                         b"pop_front 1\r\nping x y\r\n")
            assert ["answer ok handle 1 volatile_list", "answer ok "] == [
                await a.line(), await a.line()]
            assert ["answer ok data key int 1 value int 2", "0", "10"] == await a.message()
            assert "answer ok pong x y" == await a.line()
            assert ["event 1 push_back key int 1 value int 2", "0", "10"] == await b.message()
            assert ["event 1 pop_front key int 1 value int 2", "0", "10"] == await b.message()

    run(test)


def test_errors_answer_and_the_server_goes_on() -> None:
    """Bad commands get answer error <code> <message>; a declared payload is drained
    even after an error; the connection keeps working."""

    async def test(server: Any, port: int) -> None:
        async with wire(port) as w:
            await w.send(b"push_back 99 value string 3\r\nabc\r\nping\r\n"
                         b"frobnicate\r\ncreate m volatile_map\r\n"
                         b"set 1 key int 1 value int 1\r\n1\r\n1\r\n"
                         b"get 1 key string 2\r\nno\r\nstop\r\nver\r\n")
            got = [await w.line() for _ in range(7)]
            assert got[0].startswith("answer error not_found ")
            assert "answer ok pong" == got[1]
            assert got[2].startswith("answer error invalid_command ")
            assert "answer ok handle 1 volatile_map" == got[3]
            assert got[4].startswith("answer error invalid_argument ")
            assert got[5].startswith("answer error not_found ")
            assert got[6].startswith("answer error invalid_command ")  # no remote stop
            assert "answer ok 0.1" == await w.line()

    run(test)
