"""The remote client's own promises: a lost connection fails what was in flight with
Closed, explicitly."""

from __future__ import annotations

import threading

import pytest
from conftest import server_thread, serving, start, wait_until

from corral.adapters.client import connect
from corral.kernel import Closed, InvalidArgument
from corral.transports.codec import ProtocolError
from corral.transports.remote import parse_url


@pytest.mark.parametrize("transport", ["tcp", "zmq"])
def test_losing_the_server_fails_waits_and_calls_with_closed(transport: str) -> None:
    """A parked wait ends with Closed when the server goes; so does every later call."""
    errors: list[BaseException] = []
    with serving() as urls:
        corral = connect(getattr(urls, transport))
        lst = corral.list("work")

        def wait() -> None:
            try:
                lst.wait_pop_next()
            except Closed as error:
                errors.append(error)

        waiter = start(wait)
        wait_until(lambda: lst.statistics().waiters == 1)
    waiter.join(10)
    assert 1 == len(errors) and "lost" in str(errors[0])
    with pytest.raises(Closed):
        lst.push_back(1)
    corral.close()


def test_urls() -> None:
    """corral:// and tio:// URLs; the port defaults to 2605."""
    assert ("127.0.0.1", 2605) == parse_url("corral://127.0.0.1")
    assert ("localhost", 7000) == parse_url("tio://localhost:7000")
    with pytest.raises(InvalidArgument):
        parse_url("http://127.0.0.1:2605")


@pytest.mark.parametrize("transport", ["tcp", "zmq"])
def test_token_is_sent_first(transport: str) -> None:
    """connect(token=) authenticates; without it the server refuses commands."""
    with serving(token="s3cret") as urls:
        url = getattr(urls, transport)
        with connect(url, token="s3cret") as corral:
            corral.list("ok").push_back("in")
        with connect(url) as corral, pytest.raises(ProtocolError) as caught:
            corral.list("no")
        assert "send auth TOKEN first" in str(caught.value)


def test_values_travel_as_json() -> None:
    """str, bytes, int, float and JSON values round-trip; None too."""
    with server_thread() as port, connect(f"corral://127.0.0.1:{port}") as corral:
        lst = corral.list("values")
        values = ["text", b"\x00raw", 10**30, 2.5, {"a": [1, None]}, None, True]
        for value in values:
            lst.push_back(value)
        assert values == [lst.pop_front() for _ in values]


@pytest.mark.parametrize("transport", ["tcp", "zmq"])
def test_threads_sharing_a_client_each_get_their_own_answers(transport: str) -> None:
    """Eight threads on one connection, their calls in flight together (only waits
    hold the facade's lock), one of them parked meanwhile: every answer reaches the
    thread that asked, and the parked wait is served by the push made for it."""
    with serving() as urls, connect(getattr(urls, transport)) as corral:
        parked = corral.list("parked")
        got: list[object] = []
        waiter = start(lambda: got.append(parked.wait_pop_next(timeout=30)))
        wait_until(lambda: parked.statistics().waiters == 1)
        wrong: list[tuple[int, int, object]] = []

        def work(thread: int) -> None:
            mine = corral.list(f"own-{thread}")
            for i in range(300):
                mine.push_back([thread, i])
                value = mine.pop_back()
                if value != [thread, i]:
                    wrong.append((thread, i, value))

        workers = [start(work, n) for n in range(8)]
        for worker in workers:
            worker.join(60)
        parked.push_back("for the waiter")
        waiter.join(30)
        assert [] == wrong
        assert ["for the waiter"] == got
        assert not any(worker.is_alive() for worker in workers)


@pytest.mark.parametrize("transport", ["tcp", "zmq"])
def test_closing_a_shared_client_ends_every_call_in_flight(transport: str) -> None:
    """Threads in the middle of calls on one connection when it is closed: each call
    either completes or raises Closed, and none is left waiting."""
    with serving() as urls:
        corral = connect(getattr(urls, transport))
        lst = corral.list("l")
        outcomes: list[str] = []
        going = threading.Event()

        def work() -> None:
            try:
                while True:
                    lst.push_back(1)
                    going.set()
            except Closed:
                outcomes.append("closed")

        workers = [start(work) for _ in range(8)]
        going.wait(10)
        corral.close()
        for worker in workers:
            worker.join(10)
        assert not any(worker.is_alive() for worker in workers)
        assert ["closed"] * 8 == outcomes
