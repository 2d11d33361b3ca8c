"""The TCP server's extended commands, limits and robustness, over real sockets."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
from wire import running_server, wire

from corral.kernel import InvalidArgument
from corral.transports.tcp import Limits, Server, check_bind, serve_tcp


def run(test: Callable[..., Awaitable[None]], **server: Any) -> None:
    async def main() -> None:
        async with running_server(**server) as (srv, port):
            await test(srv, port)

    trio.run(main)


def test_jobs_across_connections_with_tags_and_the_fence() -> None:
    """A tagged claim parks; a put from another connection serves it with an event that
    carries the tag; a finish with a stale attempt is lease_lost."""

    async def test(server: Server, port: int) -> None:
        async with wire(port) as worker, wire(port) as client:
            await worker.send(b"create render job lease=30\r\nclaim 1 tag=w1\r\n")
            assert "answer ok handle 1 job" == await worker.line()
            assert "answer ok waiting w1" == await worker.line()
            await client.send(b"open render\r\nput 1 priority=2 value json 8\r\n"
                              b'{"f": 7}\r\n')
            assert "answer ok handle 1 job" == await client.line()
            assert ["answer ok data key string 1", "1"] == await client.message()
            assert ["event 1 claimed tag=w1 key string 1 value json 7 metadata int 1", "1",
                    '{"f":7}', "1"] == await worker.message()
            await worker.send(b"finish 1 attempt=2 key string 1 value string 4\r\n1\r\n"
                              b"late\r\n"
                              b"finish 1 attempt=1 key string 1 value string 4\r\n1\r\n"
                              b"done\r\n")
            assert (await worker.line()).startswith("answer error lease_lost ")
            assert "answer ok " == await worker.line()
            await client.send(b"result 1 key string 1\r\n1\r\nstate 1 key string 1\r\n1\r\n")
            assert ["answer ok data value string 4", "done"] == await client.message()
            assert ["answer ok data key string 1 value string 8", "1", "finished"
                    ] == await client.message()

    run(test)


def test_disconnect_releases_leases_and_withdraws_waiters() -> None:
    """A connection that goes away frees its claims at once and leaves no waiter behind:
    the claim goes to the next claimer, the next push to the waiter still connected."""

    async def test(server: Server, port: int) -> None:
        async with wire(port) as keeper:
            await keeper.send(b"create j job\r\ncreate l volatile_list\r\n"
                              b"put 1 value int 1\r\n7\r\n")
            for _ in range(3):
                await keeper.message()
            async with wire(port) as doomed:
                await doomed.send(b"open j\r\nclaim 1\r\nopen l\r\nwnp_next 2\r\n")
                assert "answer ok handle 1 job" == await doomed.line()
                assert (await doomed.message())[0].startswith("answer ok data key string 1")
                assert "answer ok handle 2 volatile_list" == await doomed.line()
                assert "answer ok " == await doomed.line()
                await keeper.send(b"claim 1 tag=k\r\nwnp_next 2 tag=n\r\n")
                assert "answer ok waiting k" == await keeper.line()
                assert "answer ok waiting n" == await keeper.line()
            claimed = await keeper.message()  # released when doomed went: attempt 2
            assert claimed[0].startswith("event 1 claimed tag=k key string 1")
            assert "2" == claimed[-1]
            await keeper.send(b"push_back 2 value int 1\r\n5\r\n")
            assert ["event 2 wnp_next tag=n key int 1 value int 1", "0", "5"
                    ] == await keeper.message()

    run(test)


def test_wait_timeouts_come_back_as_cancelled_events() -> None:
    """A tagged wait with a timeout ends with a cancelled event naming the error."""

    async def test(server: Server, port: int) -> None:
        async with wire(port) as w:
            await w.send(b"create q queue\r\nqueue_get 1 timeout=0.05 tag=t\r\n")
            assert "answer ok handle 1 queue" == await w.line()
            assert "answer ok waiting t" == await w.line()
            message = await w.message()
            assert message[0].startswith("event 1 cancelled tag=t empty value string")

    run(test)


def test_feeds_queues_and_statistics_over_the_wire() -> None:
    """Feed publish and items (trimmed to max_length); sorted feed moves; queue
    priority; statistics."""

    async def test(server: Server, port: int) -> None:
        async with wire(port) as w:
            await w.send(b"create f feed max_length=2\r\n"
                         b"publish 1 value string 1\r\na\r\n"
                         b"publish 1 key string 1 value string 1\r\nb\r\nB\r\n"
                         b"publish 1 value string 1\r\nc\r\nitems 1\r\n")
            assert "answer ok handle 1 feed" == await w.line()
            assert ["answer ok data key string 1", "1"] == await w.message()
            assert ["answer ok data key string 1", "b"] == await w.message()
            assert ["answer ok data key string 1", "2"] == await w.message()
            assert "answer ok query 1" == await w.line()
            assert ["query 1 item key string 1 value string 1", "b", "B"] == await w.message()
            assert ["query 1 item key string 1 value string 1", "2", "c"] == await w.message()
            assert "query 1 end" == await w.line()
            await w.send(b"create s sorted_feed\r\nappend 2 value string 1\r\nx\r\n"
                         b"append 2 value string 1\r\ny\r\n"
                         b"move_before 2 key int 1 value int 1\r\n2\r\n1\r\nids 2\r\n")
            assert "answer ok handle 2 sorted_feed" == await w.line()
            assert ["answer ok data key int 1", "1"] == await w.message()
            assert ["answer ok data key int 1", "2"] == await w.message()
            assert "answer ok " == await w.line()
            assert "answer ok query 2" == await w.line()
            assert ["2", "1"] == [(await w.message())[1], (await w.message())[1]]
            assert "query 2 end" == await w.line()
            await w.send(b"create q queue\r\nqueue_put 3 value int 1\r\n1\r\n"
                         b"queue_put 3 priority=5 value int 1\r\n2\r\nqueue_get 3\r\n"
                         b"statistics 3\r\n")
            assert ["answer ok handle 3 queue", "answer ok ", "answer ok "] == [
                await w.line() for _ in range(3)]
            assert ["answer ok data value int 1", "2"] == await w.message()
            stats = await w.message()
            assert '"records":1' in stats[1] and '"kind":"queue"' in stats[1]

    run(test)


def test_a_subscriber_that_never_reads_is_dropped() -> None:
    """Events for a peer that does not read pile up only to the cap; then it is dropped
    and the server, and everyone else, carries on."""

    async def test(server: Server, port: int) -> None:
        async with wire(port) as lazy, wire(port) as busy:
            await lazy.send(b"create l volatile_list\r\nsubscribe 1\r\n")
            await busy.send(b"create l volatile_list\r\n")
            assert "answer ok handle 1 volatile_list" == await busy.line()
            payload = b"x" * 50_000
            for _ in range(2000):  # up to 100 MB: past the sockets' own buffers, then ours
                await busy.send(b"push_back 1 value raw 50000\r\n" + payload + b"\r\n")
                assert "answer ok " == await busy.line()
                if len(server.connections) == 1:
                    break
            assert 1 == len(server.connections)
            await busy.send(b"ping\r\n")
            assert "answer ok pong" == await busy.line()

    run(test, limits=Limits(max_outbound=256 * 1024))


def test_caps_on_handles_waiters_and_lines() -> None:
    """Too many handles or waits are refused; an over-long line drops the connection."""

    async def test(server: Server, port: int) -> None:
        async with wire(port) as w:
            await w.send(b"create l volatile_list\r\ncreate l volatile_list\r\n"
                         b"wnp_next 1\r\nwnp_next 1\r\nwnp_next 1\r\n")
            got = [await w.line() for _ in range(5)]
            assert got[1].startswith("answer error invalid_argument 1 handles")
            assert ["answer ok ", "answer ok "] == got[2:4]
            assert got[4].startswith("answer error invalid_argument wnp_next: 2 waits")
        async with wire(port) as w:
            await w.send(b"ping " + b"x" * 2000 + b"\r\n")
            assert (await w.line()).startswith("answer error protocol line longer")
            assert await w.closed()
        async with wire(port) as w:
            await w.send(b"ping\r\n")
            assert "answer ok pong" == await w.line()

    run(test, limits=Limits(max_handles=1, max_waiters=2, max_line=1024))


def test_token_guards_everything_but_ping_and_auth() -> None:
    """With a token, commands before auth are refused; a wrong token is refused."""

    async def test(server: Server, port: int) -> None:
        async with wire(port) as w:
            await w.send(b"create l volatile_list\r\nping\r\nauth nope\r\nauth s3cret\r\n"
                         b"create l volatile_list\r\n")
            got = [await w.line() for _ in range(5)]
            assert got[0].startswith("answer error access_denied")
            assert "answer ok pong" == got[1]
            assert got[2].startswith("answer error access_denied")
            assert ["answer ok ", "answer ok handle 1 volatile_list"] == got[3:]
        async with wire(port) as classic:  # Tio's client: auth USER clean PASSWORD
            await classic.send(b"auth me clean s3cret\r\nget_count 1\r\n")
            assert "answer ok " == await classic.line()
            assert (await classic.line()).startswith("answer error not_found")

    run(test, token="s3cret")


def test_binding_beyond_loopback_needs_a_token() -> None:
    """check_bind refuses a non-loopback address without a token."""
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    check_bind("0.0.0.0", "token")
    with pytest.raises(InvalidArgument, match="needs --token"):
        check_bind("0.0.0.0", None)

    async def refuse() -> None:
        await serve_tcp(Server(), "0.0.0.0", 0)

    with pytest.raises(InvalidArgument):
        trio.run(refuse)


def test_fuzzed_input_never_kills_the_server() -> None:
    """Random bytes (and random mutations of real commands) on many connections; after
    each, the server still answers ping on a fresh connection."""
    rng = random.Random(2605)
    seeds = [b"create l volatile_list\r\n", b"push_back 1 value string 3\r\nabc\r\n",
             b"set 1 key string 1 value int 2\r\nk\r\n10\r\n", b"wnp_next 1 tag=x\r\n",
             b"claim 1 timeout=0\r\n", b"subscribe 1 0\r\n", b"query 1 -5 3\r\n"]

    async def test(server: Server, port: int) -> None:
        for _ in range(60):
            if rng.random() < 0.5:
                junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
            else:
                junk = bytearray(b"".join(rng.choices(seeds, k=4)))
                for _ in range(rng.randrange(1, 6)):
                    junk[rng.randrange(len(junk))] = rng.randrange(256)
                junk = bytes(junk)
            async with wire(port) as w:
                await w.send(junk)
                with trio.move_on_after(0.05):
                    await w.closed()
        async with wire(port) as w:
            await w.send(b"ping\r\n")
            assert "answer ok pong" == await w.line()

    run(test)


def test_nothing_more_is_applied_once_a_client_is_dropped() -> None:
    """A command whose answer overflows the outbound cap drops its client; commands
    pipelined behind it in the same packet are not applied."""

    async def test(server: Server, port: int) -> None:
        async with wire(port) as setup:
            await setup.send(b"create big volatile_list\r\ncreate after volatile_list\r\n")
            await setup.line()
            await setup.line()
            for _ in range(40):
                await setup.send(b"push_back 1 value raw 10000\r\n" + b"x" * 10000 + b"\r\n")
                assert "answer ok " == await setup.line()
        async with wire(port) as greedy:
            await greedy.send(b"open big\r\nopen after\r\nquery 1\r\n"
                              b"push_back 2 value string 4\r\nlost\r\n")
            assert await greedy.closed()
        async with wire(port) as check:
            await check.send(b"open after\r\nget_count 1\r\n")
            await check.line()
            assert "answer ok count 0" == await check.line()

    run(test, limits=Limits(max_outbound=64 * 1024))
