"""The client's protocol core and a server session, wired together in memory.

No sockets and no threads: bytes move between a ``ClientConnection`` and a server
``Session`` only when a rule says so, and in pieces cut anywhere, so every order of
serve, cancel, the unwait answer, give-back and connection loss is reachable (as h11
wires a client and a server ``Connection``). Nothing may be lost or had twice.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
)

from corral.kernel import Closed, Empty, InvalidArgument, Job, Kernel, Kind, NotFound
from corral.transports.codec import Message, Parser
from corral.transports.connection import (
    ClientConnection,
    Request,
    Wait,
    WaitState,
    Withdrawn,
)
from corral.transports.protocol import data_offset
from corral.transports.requests import client_data_offset
from corral.transports.server import Connection, Server


class MemorySession(Connection):
    """A server session whose peer is a buffer."""

    def __init__(self, server: Server) -> None:
        super().__init__(server, "memory")
        self.to_client = bytearray()  # sent, not yet read by the client
        self.sent = bytearray()  # everything sent

    def flush(self) -> None:
        self.to_client += self.outbound
        self.sent += self.outbound
        self.outbound.clear()

    def unread_values(self) -> set[Any]:
        """The values in the messages the client has not read whole."""
        read = len(self.sent) - len(self.to_client)
        whole = len(Parser(client_data_offset).feed(bytes(self.sent[:read])))
        unread = Parser(client_data_offset).feed(bytes(self.sent))[whole:]
        return {m.fields["value"] for m in unread
                if isinstance(m, Message) and isinstance(m.fields.get("value"), str)}

    def drop(self, reason: str, *, flush: bool = False) -> None:
        raise AssertionError(f"the server dropped the client: {reason}")


class Pair:
    """One client core and its server session, with the bytes between them."""

    def __init__(self, server: Server | None = None) -> None:
        self.server = server or Server(kernel=Kernel())
        self.server.now = lambda: 0.0  # type: ignore[method-assign]
        self.client = ClientConnection()
        self.session = MemorySession(self.server)
        self.to_server = bytearray()  # sent, not yet read by the server
        self.sent = bytearray()  # everything the client sent on this connection

    def up(self, size: int | None = None) -> None:
        """Move up to ``size`` bytes (all by default) from the client to the server."""
        self._take()
        size = len(self.to_server) if size is None else size
        data = bytes(self.to_server[:size])
        del self.to_server[:size]
        self.session.receive(data)
        self.server.flush()

    def _take(self) -> None:
        data = self.client.data_to_send()
        self.to_server += data
        self.sent += data

    def unread_give_backs(self) -> set[Any]:
        """The values in give_back commands the server has not read whole."""
        self._take()
        read = len(self.sent) - len(self.to_server)
        whole = len(Parser(data_offset).feed(bytes(self.sent[:read])))
        unread = Parser(data_offset).feed(bytes(self.sent))[whole:]
        return {m.fields.get("value") for m in unread
                if isinstance(m, Message) and m.words[0] == "give_back"}

    def down(self, size: int | None = None) -> list[Request]:
        """Move up to ``size`` bytes from the server to the client; the requests
        completed."""
        buffer = self.session.to_client
        size = len(buffer) if size is None else size
        data = bytes(buffer[:size])
        del buffer[:size]
        done, _ = self.client.receive_data(data) if data else ([], [])
        return done

    def settle(self) -> None:
        """Move bytes both ways until nothing is left to move."""
        for _ in range(20):
            self.up()
            if not self.session.to_client:
                return
            self.down()
        raise AssertionError("the pair never settled")

    def run(self, request: Request) -> Any:
        self.settle()
        assert request.done
        if request.error is not None:
            raise request.error
        return request.value


def test_commands_round_trip_in_memory() -> None:
    """Requests become bytes and answers become values, with no socket."""
    pair = Pair()
    assert Kind.LIST == pair.run(pair.client.create("l", Kind.LIST))
    pair.run(pair.client.push_back("l", "a"))
    pair.run(pair.client.push_back("l", "b"))
    assert 2 == pair.run(pair.client.count("l"))
    assert ["a", "b"] == [r.value for r in pair.run(pair.client.query("l"))]
    with pytest.raises(NotFound):
        pair.run(pair.client.get("nothing", 0))


def test_reopening_a_container_reuses_its_handle() -> None:
    """create() on a name the connection knows reuses its handle: 5,000 reopens take
    one server handle."""
    pair = Pair()
    for _ in range(5000):
        pair.client.create("jobs", Kind.JOBS)
        pair.client.put("jobs", "x")
    pair.settle()
    assert 1 == len(pair.session.handles)
    assert 5000 == pair.server.kernel.statistics("jobs").ready


def test_a_call_on_a_name_not_yet_open_pipelines_its_open() -> None:
    """A command on an unknown name sends its open first, in the same flight; if the
    open fails, the command fails with the open's error and the name stays unbound."""
    pair = Pair()
    pair.server.kernel.create("there", Kind.LIST)
    push = pair.client.push_back("there", 1)
    missing = pair.client.push_back("absent", 1)
    pair.settle()
    assert push.error is None
    assert isinstance(missing.error, NotFound) and "absent" in str(missing.error)
    assert ["there"] == list(pair.session.handles.values())


def test_an_outcome_in_the_same_chunk_as_its_park_is_kept_for_it() -> None:
    """The answer that a wait parked and the event that serves it, read at once: the
    wait settles with the value."""
    pair = Pair()
    pair.run(pair.client.create("l", Kind.LIST))
    wait = pair.client.wait_pop_next("l")
    pair.up()
    pair.server.kernel.push_back("l", "early")
    pair.server.route()
    pair.server.flush()
    pair.down()
    assert (WaitState.DONE, ("early", None)) == (wait.state, wait.value)


def test_an_unknown_tag_loses_the_connection() -> None:
    """An event for a tag nobody waits for is a protocol error: the connection is
    lost and every open request fails with Closed, never with an empty name."""
    client = ClientConnection()
    pending = client.ping()
    client.receive_data(b"event 1 wnp_next tag=99 value string 1\r\nx\r\n")
    assert client.lost is not None and "tag 99" in client.lost
    assert isinstance(pending.error, Closed)


def test_a_cancel_that_loses_the_race_returns_the_value_or_gives_it_back() -> None:
    """Served before the unwait arrived: a caller still there gets the value; a caller
    gone has it given back to the front of the list, without subscriber events."""
    for gone in (False, True):
        pair = Pair()
        pair.run(pair.client.create("l", Kind.LIST))
        wait = pair.client.wait_pop_next("l")
        pair.up()
        pair.down()
        assert WaitState.PARKED == wait.state
        pair.server.kernel.push_back("l", "served")
        pair.server.kernel.push_back("l", "behind")
        pair.server.route()
        pair.server.flush()
        pair.client.cancel_wait(wait, gone=gone)  # the unwait crosses the outcome
        pair.settle()
        stored = [r.value for r in pair.server.kernel.query("l")]
        if gone:
            assert ["served", "behind"] == stored
        else:
            assert (("served", None), ["behind"]) == (wait.value, stored)


def test_a_cancel_in_time_withdraws() -> None:
    """Cancelled while parked and not served: the wait ends Withdrawn, nothing moves."""
    pair = Pair()
    pair.run(pair.client.create("q", Kind.QUEUE))
    wait = pair.client.queue_get("q")
    pair.settle()
    pair.client.cancel_wait(wait, gone=False)
    pair.settle()
    assert isinstance(wait.error, Withdrawn)
    assert 0 == pair.server.kernel.statistics("q").waiters


KINDS = ("list", "queue", "jobs")


class ServeCancelLose(RuleBasedStateMachine):
    """Waits on a list, a queue and a job queue; items produced on the server; bytes
    moving in pieces; cancels by callers that stay or go; connection losses and
    reconnections. Every item ends exactly once: taken by a caller still there, still
    stored, or served into a connection that broke (at-most-once, as documented)."""

    waits = Bundle("waits")

    def __init__(self) -> None:
        super().__init__()
        self.server = Server(kernel=Kernel())
        self.pair = Pair(self.server)
        for name, kind in (("list", Kind.LIST), ("queue", Kind.QUEUE),
                           ("jobs", Kind.JOBS)):
            self.pair.run(self.pair.client.create(name, kind))
        self.produced: list[str] = []
        self.taken: list[str] = []  # by callers still there
        self.in_flight_at_loss: set[str] = set()
        self.gone: dict[int, Wait] = {}
        self.open: dict[int, tuple[str, Wait]] = {}

    def _produce_on_server(self, kind: str, item: str) -> None:
        kernel = self.server.kernel
        if kind == "list":
            kernel.push_back("list", item)
        elif kind == "queue":
            kernel.queue_put(self.pair.session.session, "queue", item)
        else:
            kernel.put("jobs", item)
        self.server.route()
        self.server.flush()

    @rule(target=waits, kind=st.sampled_from(KINDS))
    def start_wait(self, kind: str) -> Wait:
        client = self.pair.client
        try:
            wait = (client.wait_pop_next("list") if kind == "list" else
                    client.queue_get("queue") if kind == "queue" else client.claim("jobs"))
        except Closed:
            wait = Wait(done=True, error=Closed("down"))
        self.open[id(wait)] = (kind, wait)
        return wait

    @rule(kind=st.sampled_from(KINDS))
    def produce(self, kind: str) -> None:
        item = f"{kind}-{len(self.produced)}"
        self.produced.append(item)
        self._produce_on_server(kind, item)

    @rule(size=st.integers(1, 200))
    def bytes_up(self, size: int) -> None:
        if self.pair.client.lost is None:
            self.pair.up(size)

    @rule(size=st.integers(1, 200))
    def bytes_down(self, size: int) -> None:
        self.pair.down(size)

    @rule(wait=waits, gone=st.booleans())
    def cancel(self, wait: Wait, gone: bool) -> None:
        if self.pair.client.lost is None and not (wait.done and wait.error is not None):
            if gone:
                self.gone[id(wait)] = wait
            self.pair.client.cancel_wait(wait, gone=gone)

    @rule()
    def lose_and_reconnect(self) -> None:
        """The connection breaks: what the server sent and the client did not read is
        gone with it; the server ends the session; the client reconnects."""
        pair = self.pair
        self.in_flight_at_loss |= pair.session.unread_values() | pair.unread_give_backs()
        self.in_flight_at_loss |= {  # outcomes whose callers left, read, not yet given back
            wait.held.fields.get("value") for _, wait in self.open.values()
            if wait.gone and wait.held is not None and not wait.done}
        pair.client.connection_lost("test")
        pair.to_server.clear()
        pair.sent.clear()
        pair.session.close()
        pair.session = MemorySession(self.server)
        pair.client.reconnect()

    @invariant()
    def kernel_is_consistent(self) -> None:
        self.server.kernel._check()

    def teardown(self) -> None:
        pair = self.pair
        if pair.client.lost is None:
            pair.settle()
        for _, wait in list(self.open.values()):
            if not wait.done and pair.client.lost is None:
                pair.client.cancel_wait(wait, gone=True)
                self.gone[id(wait)] = wait
        if pair.client.lost is None:
            pair.settle()
        kernel = self.server.kernel
        jobs = kernel._containers["jobs"].jobs  # type: ignore[union-attr]
        taken: list[str] = []
        for kind, wait in self.open.values():
            assert wait.done or pair.client.lost is not None, f"{kind} wait never settled"
            if id(wait) in self.gone or not wait.done or wait.error is not None:
                continue
            value = wait.value
            if isinstance(value, Job):  # a claim counts while it is the current one
                record = jobs.get(value.id)
                if record is not None and record.attempt == value.attempt and (
                        record.state.value == "claimed"):
                    taken.append(value.item)
            else:
                taken.append(value[0])
        stored = [r.value for r in kernel.query("list")]
        stored += [item for _, item in self._queue_items()]
        stored += [jobs[id].item for id in kernel.ids("jobs")
                   if jobs[id].state.value == "ready"]
        everything = taken + stored
        assert len(everything) == len(set(everything)), "an item was had twice"
        lost = set(self.produced) - set(everything)
        assert lost <= self.in_flight_at_loss, f"lost: {sorted(lost)}"
        assert not any(item.startswith("jobs") for item in lost), "jobs are never lost"

    def _queue_items(self) -> list[tuple[Any, Any]]:
        container = self.server.kernel._containers["queue"]
        return list(container.entries.items())  # type: ignore[union-attr]


TestServeCancelLose = ServeCancelLose.TestCase


def test_cancelling_before_the_answer_withdraws_once_it_parks() -> None:
    """A cancel asked while the wait is still on its way is carried out when the
    server says it parked."""
    pair = Pair()
    pair.run(pair.client.create("l", Kind.LIST))
    wait = pair.client.wait_pop_next("l")
    pair.client.cancel_wait(wait, gone=False)
    pair.settle()
    assert isinstance(wait.error, Withdrawn)
    with pytest.raises(Empty):
        pair.server.kernel.pop_front("l")


def test_a_bad_line_fails_every_open_request_and_says_so() -> None:
    """Bytes that are not the protocol lose the connection: the requests answered
    before them complete with their values, the others with Closed, and every one is
    reported done, so that its caller wakes."""
    client = ClientConnection()
    first, second = client.ping(), client.ping()
    for request in (first, second):
        request.waker = object()
    done, _ = client.receive_data(b"answer ok pong\r\nbogus line\r\n")
    assert [first, second] == done
    assert (None, True) == (first.error, isinstance(second.error, Closed))


def test_an_answer_that_does_not_decode_fails_its_request() -> None:
    """An answer of the wrong shape is a protocol error: its request fails with Closed
    instead of being left undone."""
    client = ClientConnection()
    count = client.count("l")
    client.receive_data(b"answer ok handle 1 volatile_list\r\nanswer ok count many\r\n")
    assert count.done and isinstance(count.error, Closed)
    assert client.lost is not None


def test_raw_refuses_what_the_core_must_track() -> None:
    """raw() sends any command but those whose events or handles the core keeps: a
    wait sent raw would bring an outcome no wait of its expects."""
    client = ClientConnection()
    for words in (["wnp_next", "1"], ["subscribe", "1"], ["close", "1"],
                  ["queue_put", "1", "timeout=none", "tag=3"]):
        with pytest.raises(InvalidArgument):
            client.raw(words)
    assert b"" == client.data_to_send()
    client.raw(["create", "p", "volatile_list"])
    assert b"create p volatile_list handle=1\r\n" == client.data_to_send()
