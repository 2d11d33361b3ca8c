"""The ZeroMQ transport: the TCP protocol in frames on a ROUTER socket, one kernel for
both transports, and how sessions end when ZeroMQ says nothing of disconnections."""

from __future__ import annotations

import logging
import os
import random
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import zmq
from conftest import serving, start, wait_until

from corral.adapters.client import connect
from corral.kernel import Closed, InvalidArgument, JobState
from corral.transports.codec import encode
from corral.transports.zeromq import ZmqWire, check_endpoint


@contextmanager
def dealer(url: str) -> Iterator[zmq.Socket[bytes]]:
    """A raw DEALER socket on the server, as any ZeroMQ program would open one."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.ROUTING_ID, os.urandom(8))
    sock.connect(url.removeprefix("zmq+"))
    try:
        yield sock
    finally:
        sock.close(linger=0)


def ask(sock: zmq.Socket[bytes], *words: str, **fields: object) -> bytes:
    sock.send(encode(words, fields or None))
    return frame(sock)


def frame(sock: zmq.Socket[bytes]) -> bytes:
    assert sock.poll(5000), "no answer within 5 s"
    data: bytes = sock.recv()
    return data


def test_the_same_protocol_in_frames() -> None:
    """Tio's transcript over a DEALER: commands in frames, events before their answer,
    a classic wnp_next answered with its event."""
    with serving() as urls, dealer(urls.zmq) as sock:
        assert b"answer ok handle 1 volatile_list\r\n" == ask(sock, "create", "l",
                                                              "volatile_list")
        assert b"answer ok \r\n" == ask(sock, "push_back", "1", value="one")
        assert (b"event 1 wnp_next key int 1 value string 3\r\n0\r\none\r\n"
                b"answer ok \r\n") == ask(sock, "wnp_next", "1")
        assert b"answer ok waiting 7\r\n" == ask(sock, "wnp_next", "1", "tag=7")
        # the push serves this peer's own wait: its event comes first, in the same frame
        assert (b"event 1 wnp_next tag=7 key int 1 value string 3\r\n0\r\ntwo\r\n"
                b"answer ok \r\n") == ask(sock, "push_back", "1", value="two")
        # pipelined: two commands in one frame, two answers
        sock.send(encode(("ping", "a")) + encode(("ping", "b")))
        assert b"answer ok pong a\r\nanswer ok pong b\r\n" == frame(sock)


def test_both_transports_serve_one_kernel() -> None:
    """A TCP client hands an item to a ZeroMQ client parked on the same list."""
    with serving() as urls, connect(urls.tcp) as tcp, connect(urls.zmq) as zmq_client:
        got: list[object] = []
        waiter = start(lambda: got.append(zmq_client.list("work").wait_pop_next(timeout=10)))
        wait_until(lambda: tcp.list("work").statistics().waiters == 1)
        tcp.list("work").push_back({"n": 1})
        waiter.join(10)
        assert [{"n": 1}] == got


def test_bye_ends_the_session_and_releases_its_claim() -> None:
    """Closing a client says bye: its claimed job goes back at once."""
    with serving() as urls, connect(urls.tcp) as watcher:
        jobs = watcher.jobs("j", lease=60)
        id = jobs.put("x")
        with connect(urls.zmq) as worker:
            assert "x" == worker.jobs("j").claim(timeout=5).item
            assert JobState.CLAIMED == jobs.state(id)
        wait_until(lambda: jobs.state(id) is JobState.READY)


def test_a_silent_peer_is_ended_and_told_closed_afterwards(
        caplog: pytest.LogCaptureFixture) -> None:
    """A peer that sends nothing for idle_timeout loses its session (and its claim); a
    message from it afterwards is answered closed, never served by a fresh session."""
    with serving(zmq_options={"idle_timeout": 1.0}) as urls, connect(urls.tcp) as watcher, \
            dealer(urls.zmq) as sock:
        jobs = watcher.jobs("j", lease=60)
        id = jobs.put("x")
        assert ask(sock, "open", "j").startswith(b"answer ok handle 1")
        assert ask(sock, "claim", "1").startswith(b"answer ok data key")
        assert b"event 0 closed value string" in frame(sock)  # told why, best effort
        assert JobState.READY == jobs.state(id)
        assert ask(sock, "ping").startswith(b"answer error closed session ended: silent")
    assert "silent for more than 1 s" in caplog.text


def test_a_peer_that_does_not_read_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    """A subscriber whose queue reaches the high-water mark is dropped and logged; the
    server goes on serving others."""
    caplog.set_level(logging.WARNING)
    with serving(zmq_options={"sndhwm": 50}) as urls, connect(urls.tcp) as writer, \
            dealer(urls.zmq) as sock:
        sock.setsockopt(zmq.RCVHWM, 10)
        writer.list("feed")
        assert ask(sock, "open", "feed").startswith(b"answer ok handle")
        assert b"answer ok\r\n" == ask(sock, "subscribe", "1")  # Tio: no space here
        lst = writer.list("feed")
        for _round in range(100):  # 20,000 events of 1 kB at most
            if "does not read" in caplog.text:
                break
            for _i in range(200):
                lst.push_back("x" * 1000)
            lst.clear()
        assert "does not read" in caplog.text
        with connect(urls.zmq) as other:
            other.list("alive").push_back(1)


def test_garbage_frames_never_stop_the_server() -> None:
    """Random frames get errors (or end that peer's session); others are served."""
    rng = random.Random(2606)
    with serving() as urls:
        for _ in range(20):
            with dealer(urls.zmq) as sock:
                sock.send(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))))
                sock.poll(50)
        with connect(urls.zmq) as client:
            client.list("ok").push_back(1)


def test_connecting_to_nothing_fails_promptly() -> None:
    """A DEALER's connect never fails, so the client pings first: nothing listening is
    a refused connection, a listener that does not answer a timeout."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        ZmqWire(f"tcp://127.0.0.1:{port}", connect_timeout=10)
    with zmq.Context.instance().socket(zmq.ROUTER) as router:
        port = router.bind_to_random_port("tcp://127.0.0.1")
        with pytest.raises(TimeoutError):
            ZmqWire(f"tcp://127.0.0.1:{port}", connect_timeout=0.3)  # nobody answers


def test_a_server_that_stops_answering_is_taken_for_dead() -> None:
    """A request unanswered for dead_after seconds ends the connection."""
    with zmq.Context.instance().socket(zmq.ROUTER) as router:
        port = router.bind_to_random_port("tcp://127.0.0.1")

        def pong_once() -> None:  # answers the handshake, then goes quiet
            identity, _ = router.recv_multipart()
            router.send_multipart((identity, b"answer ok pong\r\n"))

        thread = start(pong_once)
        wire = ZmqWire(f"tcp://127.0.0.1:{port}", dead_after=0.3)
        thread.join(5)
        wire.heartbeat = 0.1
        wire.sendall(b"ping\r\n")
        assert b"" == wire.recv(65536)
        wire.close()


def test_closed_client_raises_closed() -> None:
    with serving() as urls:
        client = connect(urls.zmq)
        client.close()
        with pytest.raises(Closed):
            client.list("x").push_back(1)


def test_endpoints_are_checked() -> None:
    """Beyond loopback needs a token; only tcp, ipc and inproc endpoints."""
    check_endpoint("tcp://127.0.0.1:2606", None)
    check_endpoint("ipc:///tmp/corral.ipc", None)
    check_endpoint("tcp://0.0.0.0:2606", "token")
    with pytest.raises(InvalidArgument):
        check_endpoint("tcp://0.0.0.0:2606", None)
    with pytest.raises(InvalidArgument):
        check_endpoint("udp://127.0.0.1:1", None)


def test_peers_beyond_the_cap_are_refused() -> None:
    with serving(zmq_options={"max_peers": 1}) as urls, dealer(urls.zmq) as first, \
            dealer(urls.zmq) as second:
        assert ask(first, "ping").startswith(b"answer ok pong")
        assert ask(second, "ping").startswith(b"answer error closed session ended: 1 peers")
        assert ask(first, "ping").startswith(b"answer ok pong")  # the first is served on
