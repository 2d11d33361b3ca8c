"""give_back: the exact inverse of a wait's delivery, for a caller that is gone.

The property: in kernel A a wait of session S is served and then given back; in kernel
B, built from the same commands, S's wait is withdrawn before the same delivering
command (or, for a wait that completed at once, S never asked). Afterwards nobody else
can tell A from B: not the other sessions, not the subscribers (beyond the hand-off they
heard before the give-back, which happened), and not any command that follows.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
import trio
from hypothesis import assume, event, given, settings
from wire import running_server

from corral.kernel import (
    CorralError,
    Delivered,
    Effect,
    Event,
    InvalidArgument,
    Job,
    JobState,
    Kernel,
    Kind,
    LeaseLost,
    LimitExceeded,
    NotFound,
    Notified,
    Waiting,
    WrongKind,
)
from corral.transports.codec import Message, Parser, encode, fields_start
from corral.transports.journal import Journal, JournaledKernel, decode_call, encode_call

SESSIONS = (1, 2, 3)  # a fresh kernel's first three sessions
NAMES = {Kind.LIST: "l", Kind.MAP: "m", Kind.QUEUE: "q", Kind.JOBS: "j"}
HANDOFF = {Kind.LIST: "pop_front", Kind.MAP: "delete", Kind.QUEUE: "get",
           Kind.JOBS: "claimed"}  # what subscribers hear of a hand-off to a waiter
KEYS = st.sampled_from(["k", "x"])
TIMEOUTS = st.sampled_from([None, None, 0.0, 1.0, 4.0])
SESSION = st.sampled_from(SESSIONS)
PRIORITY = st.integers(-1, 2)
INDEX = st.integers(0, 5)

OPS = st.one_of(
    st.tuples(st.just("push"), st.booleans(), st.integers(0, 99), st.none() | st.just("m")),
    st.tuples(st.just("pop")),
    st.tuples(st.just("set"), KEYS, st.integers(0, 99)),
    st.tuples(st.just("delete"), KEYS),
    st.tuples(st.just("wnp"), SESSION, TIMEOUTS),
    st.tuples(st.just("wnp_key"), SESSION, KEYS, TIMEOUTS),
    st.tuples(st.just("queue_put"), SESSION, st.integers(0, 99), PRIORITY, TIMEOUTS),
    st.tuples(st.just("queue_get"), SESSION, TIMEOUTS),
    st.tuples(st.just("put"), st.integers(0, 99), PRIORITY, st.sampled_from([0.0, 2.0])),
    st.tuples(st.just("claim"), SESSION, TIMEOUTS),
    st.tuples(st.just("finish"), INDEX),
    st.tuples(st.just("cancel"), INDEX, st.sampled_from([0.0, 1.0])),
    st.tuples(st.just("stall"), INDEX),
    st.tuples(st.just("retry"), st.integers(1, 6)),
    st.tuples(st.just("subscribe"), SESSION, st.sampled_from(list(NAMES.values()))),
    st.tuples(st.just("subscribe"), SESSION, st.sampled_from(list(NAMES.values()))),
    st.tuples(st.just("cancel_wait"), SESSION, INDEX),
    st.tuples(st.just("advance"), st.sampled_from([0.5, 1.0, 3.0, 6.0])),
)
SUFFIX_OPS = OPS | st.tuples(st.just("close"), SESSION)


class World:
    """A kernel with a list, a map, a queue and a job queue, three sessions, a clock,
    and the claim tokens and waiters its commands have handed out (so that later
    commands can name them by index)."""

    def __init__(self, max_length: int | None) -> None:
        self.kernel = k = Kernel()
        for _ in SESSIONS:
            k.open_session()
        k.create("l", Kind.LIST)
        k.create("m", Kind.MAP)
        k.create("q", Kind.QUEUE, max_length=max_length)
        k.create("j", Kind.JOBS, lease=5.0, max_attempts=3, result_ttl=10.0)
        self.now = 0.0
        self.tokens: list[Job] = []
        self.waiters: list[tuple[int, int]] = []  # (session, waiter)

    def call(self, op: tuple[Any, ...]) -> Any:
        """Run one command; its result, or the type of the error it raised."""
        try:
            got = self._run(op)
        except CorralError as error:
            return type(error)
        if isinstance(got, Waiting):
            self.waiters.append((op[1], got.waiter))
        elif isinstance(got, Job):
            self.tokens.append(got)
        return got

    def _run(self, op: tuple[Any, ...]) -> Any:
        k, now = self.kernel, self.now
        name, *args = op
        if name == "push":
            front, value, metadata = args
            return (k.push_front if front else k.push_back)("l", value, metadata)
        if name == "pop":
            return k.pop_front("l")
        if name == "set":
            return k.set("m", args[0], args[1])
        if name == "delete":
            return k.delete("m", args[0])
        if name == "wnp":
            return k.wait_pop_next(args[0], "l", timeout=args[1], now=now)
        if name == "wnp_key":
            return k.wait_pop_key(args[0], "m", args[1], timeout=args[2], now=now)
        if name == "queue_put":
            session, item, priority, timeout = args
            return k.queue_put(session, "q", item, priority=priority, timeout=timeout,
                               now=now)
        if name == "queue_get":
            return k.queue_get(args[0], "q", timeout=args[1], now=now, receipt=True)
        if name == "put":
            item, priority, delay = args
            return k.put("j", item, priority=priority, delay=delay, now=now)
        if name == "claim":
            return k.claim(args[0], "j", timeout=args[1], now=now)
        if name in ("finish", "cancel", "stall"):
            if not self.tokens:
                return "no token"
            token = self.tokens[args[0] % len(self.tokens)]
            if name == "finish":
                return k.finish("j", token, "done", now=now)
            if name == "cancel":
                return k.cancel("j", token, delay=args[1], reason="failed", now=now)
            return k.stall("j", token, "stuck")
        if name == "retry":
            return k.retry("j", str(args[0]), now=now)
        if name == "subscribe":
            return k.subscribe(args[0], args[1])
        if name == "cancel_wait":
            if not self.waiters:
                return "no waiter"
            return k.cancel_wait(*self.waiters[args[1] % len(self.waiters)])
        if name == "advance":
            self.now += args[0]
            return k.advance(self.now)
        assert name == "close"
        return k.close_session(args[0], now=now)

    def effects(self, skip: int | None = None) -> list[Effect]:
        """Take the queued effects, noting the claim tokens they hand out (except to
        waiter ``skip``)."""
        taken = list(self.kernel.take_effects())
        for effect in taken:
            if (isinstance(effect, Delivered) and effect.waiter != skip
                    and isinstance(effect.event.value, Job)):
                self.tokens.append(effect.event.value)
        return taken

    def observe(self) -> Any:
        """What anyone can read of the state."""
        k = self.kernel
        return (k.query("l"), k.query("m"), k.keys("m"),
                {name: k.statistics(name) for name in NAMES.values()},
                {id: k.state("j", id) for id in k.ids("j")},
                k.sessions(), k.next_deadline(), k.now)

    def drain(self) -> Any:
        """Take everything a newcomer can take: the queue's items with their order
        keys, and the ready jobs with their attempts."""
        k = self.kernel
        newcomer = k.open_session()
        items, jobs = [], []
        while isinstance(got := self.call(("queue_get", newcomer, 0.0)), tuple):
            items.append(got)
        while isinstance(got := self.call(("claim", newcomer, 0.0)), Job):
            jobs.append(got)
        return items, jobs, self.effects()


def wait_of(kind: Kind, session: int, key: str, timeout: float | None) -> tuple[Any, ...]:
    return {Kind.LIST: ("wnp", session, timeout),
            Kind.MAP: ("wnp_key", session, key, timeout),
            Kind.QUEUE: ("queue_get", session, timeout),
            Kind.JOBS: ("claim", session, timeout)}[kind]


def feed_of(kind: Kind, i: int, key: str, feeder: int, priority: int, front: bool
            ) -> tuple[Any, ...]:
    """The i-th command of a run that serves waiters of ``kind`` (distinct items)."""
    return {Kind.LIST: ("push", front, 100 + i, f"meta {i}"),
            Kind.MAP: ("set", key, 100 + i),
            Kind.QUEUE: ("queue_put", feeder, 100 + i, priority, 0.0),
            Kind.JOBS: ("put", 100 + i, priority, 0.0)}[kind]


def immediate_delivery(kind: Kind, key: str, got: Any) -> Event:
    """The delivery a client builds from a wait's immediate result."""
    name = NAMES[kind]
    if kind is Kind.JOBS:
        return Event(name, "claimed", None, got, None)
    value, metadata = got
    return {Kind.LIST: Event(name, "wnp_next", 0, value, metadata),
            Kind.MAP: Event(name, "wnp_key", key, value, metadata),
            Kind.QUEUE: Event(name, "get", None, value, metadata)}[kind]


def check(*worlds: World) -> None:
    for world in worlds:
        world.kernel._check()


@settings(max_examples=1000)
@given(kind=st.sampled_from(list(NAMES)), max_length=st.none() | st.just(2),
       prefix=st.lists(OPS, max_size=30), session=SESSION, key=KEYS,
       timeout=st.sampled_from([None, 4.0]), feeder=SESSION, priority=PRIORITY,
       front=st.booleans(), behind=st.lists(SESSION, max_size=2),
       suffix=st.lists(SUFFIX_OPS, max_size=15))
def test_deliver_then_give_back_is_never_delivered(
        kind: Kind, max_length: int | None, prefix: list[Any], session: int, key: str,
        timeout: float | None, feeder: int, priority: int, front: bool,
        behind: list[int], suffix: list[Any]) -> None:
    """Served then given back equals withdrawn first (or never asked), to everyone else."""
    name = NAMES[kind]
    a, b = World(max_length), World(max_length)
    for op in prefix:
        assert a.call(op) == b.call(op)
        assert a.effects() == b.effects()
    assert a.observe() == b.observe()
    subscribers = a.kernel.statistics(name).subscribers

    wait = wait_of(kind, session, key, timeout)
    got = a._run(wait)
    if isinstance(got, Waiting):  # served later: B withdraws the same waiter
        assert got == b._run(wait)
        for other in behind:  # waiters that park behind W
            op = wait_of(kind, other, key, timeout)
            assert a.call(op) == b.call(op)
        assert b.kernel.cancel_wait(session, got.waiter)
        assert [] == a.effects() == b.effects()
        a_effects: list[Effect] = []
        b_effects: list[Effect] = []
        for i in range(20):
            feed = feed_of(kind, i, key, feeder, priority, front)
            assert a.call(feed) == b.call(feed)
            a_effects += a.effects(skip=got.waiter)
            b_effects += b.effects()
            served = [e for e in a_effects
                      if isinstance(e, Delivered) and e.waiter == got.waiter]
            if served:
                break
        [delivered] = served
        at = a_effects.index(delivered)  # right after what subscribers heard of it
        handoff = a_effects[at - subscribers:at]
        heard, unheard = a_effects[:at] + a_effects[at + 1:], (
            a_effects[:at - subscribers] + a_effects[at + 1:])
        delivery = delivered.event
    else:  # served at once: B never asked
        handoff = heard = a.effects()
        unheard = b_effects = []
        assume(not any(isinstance(e, Delivered) for e in handoff))  # admitted no putter
        delivery = immediate_delivery(kind, key, got)
    assert subscribers == len(handoff)
    assert all(isinstance(e, Notified) and (name, HANDOFF[kind]) == (
        e.event.container, e.event.name) for e in handoff)

    a.kernel.give_back(session, name, delivery, now=a.now)
    given_back = a.effects()
    event(f"{kind.value}: {'parked' if isinstance(got, Waiting) else 'at once'}, "
          f"{'served to another' if given_back else 'kept'}, {subscribers} subscribers")
    if given_back:  # another waiter had parked: it was served instead, silently
        assert all(isinstance(e, Delivered) for e in given_back)
        assert b_effects == heard + given_back
    else:  # kept: the subscribers heard the hand-off, which did happen
        assert b_effects == unheard
    check(a, b)
    assert a.observe() == b.observe()

    for op in suffix:
        assert b.call(op) == a.call(op)
        assert b.effects() == a.effects()
    check(a, b)
    assert b.observe() == a.observe()
    assert b.drain() == a.drain()


# -- each kind, and each refusal ---------------------------------------------------------------


@pytest.fixture
def k() -> Kernel:
    kernel = Kernel()
    kernel.create("l", Kind.LIST)
    kernel.create("m", Kind.MAP)
    kernel.create("q", Kind.QUEUE, max_length=2)
    kernel.create("j", Kind.JOBS, lease=5.0, backoff=0)  # retries at once
    return kernel


def test_a_list_record_goes_back_to_the_front_unseen(k: Kernel) -> None:
    """The record is first again, with its metadata, and subscribers hear nothing."""
    s, watcher = k.open_session(), k.open_session()
    k.push_back("l", "a", "meta")
    k.push_back("l", "b")
    got = k.wait_pop_next(s, "l")
    k.subscribe(watcher, "l")
    k.give_back(s, "l", Event("l", "wnp_next", 0, *got))
    assert [] == list(k.take_effects())
    assert [("a", "meta"), ("b", None)] == [(r.value, r.metadata) for r in k.query("l")]


def test_what_is_given_back_is_held_to_the_rule_for_values(k: Kernel) -> None:
    """A caller builds the delivery it gives back, so its value is checked as any value
    coming in: kept by the rule (a tuple as a list), or refused with nothing changed."""
    s = k.open_session()
    k.push_back("l", "a")
    k.wait_pop_next(s, "l")
    with pytest.raises(InvalidArgument, match="cannot be kept"):
        k.give_back(s, "l", Event("l", "wnp_next", 0, float("nan"), None))
    assert 0 == k.count("l")
    k.give_back(s, "l", Event("l", "wnp_next", 0, ("a", 1), {"m": (2,)}))
    assert [(["a", 1], {"m": [2]})] == [(r.value, r.metadata) for r in k.query("l")]


def test_a_parked_waiter_is_served_what_is_given_back(k: Kernel) -> None:
    """A waiter that parked after the delivery is served the record at once."""
    s, other = k.open_session(), k.open_session()
    k.push_back("l", "a")
    got = k.wait_pop_next(s, "l")
    later = k.wait_pop_next(other, "l")
    assert isinstance(later, Waiting)
    k.give_back(s, "l", Event("l", "wnp_next", 0, *got))
    assert [Delivered(other, later.waiter, Event("l", "wnp_next", 0, "a", None))] == list(
        k.take_effects())
    assert 0 == k.count("l")
    k._check()


def test_a_map_key_set_meanwhile_keeps_its_newer_value(k: Kernel) -> None:
    """A key set again after the delivery is not overwritten by the given-back value."""
    s = k.open_session()
    k.set("m", "k", "old")
    got = k.wait_pop_key(s, "m", "k")
    k.set("m", "k", "new")
    k.give_back(s, "m", Event("m", "wnp_key", "k", *got))
    assert "new" == k.get("m", "k").value
    k.delete("m", "k")
    k.give_back(s, "m", Event("m", "wnp_key", "k", *got))
    assert "old" == k.get("m", "k").value


def test_a_full_bounded_queue_takes_the_item_back_at_its_old_place(k: Kernel) -> None:
    """The item goes back first, past max_length; puts wait until it is below again."""
    s = k.open_session()
    k.queue_put(s, "q", "a")
    k.queue_put(s, "q", "b")
    admitted = k.queue_put(s, "q", "c", timeout=None)
    got = k.queue_get(s, "q", receipt=True)
    assert ("a", (0, 1)) == got
    [put] = k.take_effects()
    assert isinstance(admitted, Waiting) and admitted.waiter == put.waiter
    k.give_back(s, "q", Event("q", "get", None, *got))
    assert 3 == k.count("q")
    with pytest.raises(LimitExceeded):
        k.queue_put(s, "q", "d")
    parked = k.queue_put(s, "q", "d", timeout=None)
    k._check()
    assert ("a", (0, 1)) == k.queue_get(s, "q", receipt=True)
    assert [] == list(k.take_effects())  # still full: d waits
    assert ("b", (0, 2)) == k.queue_get(s, "q", receipt=True)
    [put] = k.take_effects()
    assert isinstance(parked, Waiting) and parked.waiter == put.waiter
    assert [("c", (0, 3)), ("d", (0, 4))] == [k.queue_get(s, "q", receipt=True) for _ in range(2)]
    k._check()


def test_a_queue_item_keeps_its_priority_and_age(k: Kernel) -> None:
    """An item goes back after higher priorities and before younger items of its own."""
    s, other = k.open_session(), k.open_session()
    waiting = k.queue_get(other, "q")
    k.queue_put(s, "q", "first", priority=1)
    [delivered] = k.take_effects()
    assert isinstance(waiting, Waiting) and delivered == Delivered(
        other, waiting.waiter, Event("q", "get", 1, "first", (1, 1)))
    k.queue_put(s, "q", "high", priority=2)
    k.queue_put(s, "q", "same", priority=1)
    k.give_back(other, "q", delivered.event)
    assert [("high", (2, 2)), ("first", (1, 1)), ("same", (1, 3))] == [
        k.queue_get(s, "q", receipt=True) for _ in range(3)]


def test_a_claim_given_back_is_ready_with_its_attempt_restored(k: Kernel) -> None:
    """The job is ready, unleased, at the same attempt; a parked claimer gets it quietly."""
    s, other, watcher = k.open_session(), k.open_session(), k.open_session()
    first = k.put("j", "one")
    k.put("j", "two")
    token = k.claim(s, "j", now=1.0)
    assert Job(first, "one", 1) == token
    k.give_back(s, "j", Event("j", "claimed", None, token, None), now=1.0)
    assert (JobState.READY, None) == (k.state("j", first), k.next_deadline())
    assert token == k.claim(other, "j")
    k.claim(s, "j")  # "two"
    parked = k.claim(s, "j", now=2.0)
    k.subscribe(watcher, "j")
    k.give_back(other, "j", Event("j", "claimed", first, token, None), now=2.0)
    assert isinstance(parked, Waiting)
    assert [Delivered(s, parked.waiter, Event("j", "claimed", first, token, None))] == (
        list(k.take_effects()))
    assert 6.0 == k.next_deadline()  # the lease of "two"; this one's ends at 7
    k._check()


def test_a_stale_or_foreign_claim_is_lease_lost(k: Kernel) -> None:
    """An expired, cancelled or other session's claim is LeaseLost and changes nothing."""
    s, other = k.open_session(), k.open_session()
    id = k.put("j", "x")
    token = k.claim(s, "j", now=0.0)
    assert isinstance(token, Job)
    with pytest.raises(LeaseLost):
        k.give_back(other, "j", Event("j", "claimed", id, token, None))
    k.advance(10.0)
    k.take_effects()
    with pytest.raises(LeaseLost):
        k.give_back(s, "j", Event("j", "claimed", id, token, None), now=10.0)
    again = k.claim(other, "j", now=10.0)
    assert Job(id, "x", 2) == again
    k.cancel("j", again, now=10.0)
    with pytest.raises(LeaseLost):
        k.give_back(other, "j", Event("j", "claimed", id, again, None), now=10.0)
    assert JobState.READY == k.state("j", id)


def test_only_a_waits_delivery_can_be_given_back(k: Kernel) -> None:
    """Puts, results and others are InvalidArgument; NotFound and WrongKind as usual."""
    s = k.open_session()
    for other in (Event("q", "put", 0, "x", None), Event("j", "finished", "1", "r", None),
                  Event("l", "push_back", 0, "x", None)):
        with pytest.raises(InvalidArgument, match=f"a {other.name} delivery"):
            k.give_back(s, other.container, other)
    with pytest.raises(InvalidArgument):
        k.give_back(s, "l", ("x", None))  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        k.give_back(s, "nowhere", Event("nowhere", "wnp_next", 0, "x", None))
    with pytest.raises(WrongKind):
        k.give_back(s, "m", Event("m", "wnp_next", 0, "x", None))
    with pytest.raises(NotFound):
        k.give_back(99, "l", Event("l", "wnp_next", 0, "x", None))
    with pytest.raises(InvalidArgument):
        k.give_back(s, "l", Event("m", "wnp_next", 0, "x", None))


def test_a_refused_give_back_changes_nothing(k: Kernel) -> None:
    """A malformed or repeated delivery is InvalidArgument and leaves everything as it was."""
    s = k.open_session()
    k.queue_put(s, "q", "a")
    got = k.queue_get(s, "q", receipt=True)
    k.give_back(s, "q", Event("q", "get", 0, *got))
    before = (k.query("l"), k.query("m"), k.count("q"), k.statistics("j"), k.now)
    for bad in (Event("l", "wnp_next", 3, "x", None), Event("m", "wnp_key", 5, "x", None),
                Event("q", "get", 0, "x", None), Event("q", "get", 0, "x", 7),
                Event("q", "get", 1, "a", (0, 1)), Event("q", "get", 0, "a", (0, 9)),
                Event("q", "get", 0, *got), Event("j", "claimed", "1", "not a token", None)):
        with pytest.raises(InvalidArgument):
            k.give_back(s, bad.container, bad, now=5.0)
    assert before == (k.query("l"), k.query("m"), k.count("q"), k.statistics("j"), k.now)
    assert [] == list(k.take_effects())
    k._check()


# -- the journal --------------------------------------------------------------------------------


def test_a_give_back_is_journaled_and_replayed_exactly(tmp_path: Path) -> None:
    """Receipts with bytes, JSON, order keys and job tokens replay to the same state."""
    receipt = Event("j", "claimed", "7", Job("7", {"a": [1, b"x".hex()]}, 2), None)
    assert ("give_back", [1, "j", receipt], {"now": 1.5}) == decode_call(
        encode_call("give_back", (1, "j", receipt), {"now": 1.5}))

    def drive(kernel: Kernel) -> None:
        s = kernel.open_session()
        for name, kind in (("l", Kind.LIST), ("m", Kind.MAP), ("q", Kind.QUEUE),
                           ("j", Kind.JOBS)):
            kernel.create(name, kind)
        kernel.push_back("l", b"\x00raw", {"json": [1, 2]})
        kernel.give_back(s, "l", Event("l", "wnp_next", 0, *kernel.wait_pop_next(s, "l")))
        kernel.set("m", "k", [1, "two"], b"meta")
        kernel.give_back(s, "m", Event("m", "wnp_key", "k", *kernel.wait_pop_key(s, "m", "k")))
        kernel.queue_put(s, "q", b"old", priority=3)
        got = kernel.queue_get(s, "q", receipt=True)
        kernel.queue_put(s, "q", "new", priority=3)
        kernel.give_back(s, "q", Event("q", "get", None, *got))
        kernel.put("j", b"job", now=1.0)
        token = kernel.claim(s, "j", now=1.0)
        kernel.give_back(s, "j", Event("j", "claimed", None, token, None), now=2.0)

    def state(kernel: Kernel) -> Any:
        s = kernel.open_session()
        return (kernel.query("l"), kernel.query("m"),
                [kernel.queue_get(s, "q", timeout=0) for _ in range(2)],
                kernel.claim(s, "j", now=3.0), kernel.next_deadline(), kernel.now)

    plain = Kernel()
    drive(plain)
    with Journal(tmp_path) as journal:
        drive(JournaledKernel(journal))
    with Journal(tmp_path) as journal:
        replayed = JournaledKernel(journal)
        replayed._check()
        assert state(plain) == state(replayed)


# -- the wire -----------------------------------------------------------------------------------


OK = ("answer", "ok", "")  # a plain answer, as Tio writes it


class Peer:
    """A raw connection that reads what the server sends as the codec parses it, so
    that a delivery's fields can be sent back exactly as they came."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.parser = Parser(lambda words: fields_start(words, 0))
        self.pending: deque[Any] = deque()

    async def send(self, *words: str, **fields: Any) -> None:
        await self.stream.send_all(encode(words, fields or None))

    async def receive(self) -> Message:
        while not self.pending:
            with trio.fail_after(10):
                data = await self.stream.receive_some(65536)
            assert data, "the server closed the connection"
            self.pending.extend(self.parser.feed(data))
        message = self.pending.popleft()
        assert isinstance(message, Message)
        return message

    async def ask(self, *words: str, **fields: Any) -> Message:
        await self.send(*words, **fields)
        return await self.receive()


def run_wire(test: Any) -> None:
    async def main() -> None:
        async with (running_server() as (_, port),
                    await trio.open_tcp_stream("127.0.0.1", port) as a,
                    await trio.open_tcp_stream("127.0.0.1", port) as b):
            await test(Peer(a), Peer(b))

    trio.run(main)


def test_give_back_over_the_wire() -> None:
    """Taken records, queue items and claims come back when their fields are sent back."""

    async def test(a: Peer, b: Peer) -> None:
        for peer in (a, b):
            for name, kind in (("l", "volatile_list"), ("q", "queue"), ("j", "job")):
                await peer.ask("create", name, kind)
        # a list record taken at once
        await a.ask("push_back", "1", value="first")
        await a.ask("push_back", "1", value="second")
        served = await a.ask("wnp_next", "1", "tag=1")
        assert ("answer", "ok", "data") == served.words
        assert {"key": 0, "value": "first"} == served.fields
        assert OK == (await a.ask("give_back", "1", "of=wnp_next", **served.fields)).words
        assert {"key": 0, "value": "first"} == (await b.ask("pop_front", "1")).fields
        # a queue item taken at once: its metadata is its order key
        await a.ask("queue_put", "2", "priority=2", value="item")
        served = await a.ask("queue_get", "2", "tag=2")
        assert {"value": "item", "metadata": [2, 1]} == served.fields
        await a.ask("queue_put", "2", "priority=2", value="younger")
        await a.ask("give_back", "2", "of=get", **served.fields)
        assert served.fields == (await b.ask("queue_get", "2", "tag=1")).fields
        # a queue item handed to a parked take
        await b.ask("queue_get", "2", "tag=2")  # "younger": the queue is empty again
        assert ("answer", "ok", "waiting", "3") == (await a.ask("queue_get", "2", "tag=3")).words
        assert ("answer", "ok", "waiting", "4") == (await a.ask("queue_get", "2", "tag=4")).words
        assert OK == (await b.ask("queue_put", "2", value="handed")).words
        event = await a.receive()
        assert ("event", "2", "get", "tag=3") == event.words
        assert {"key": 0, "value": "handed", "metadata": [0, 3]} == event.fields
        await a.send("give_back", "2", "of=get", **event.fields)
        event = await a.receive()  # the parked take behind it is served instead
        assert ("event", "2", "get", "tag=4") == event.words
        assert {"key": 0, "value": "handed", "metadata": [0, 3]} == event.fields
        assert OK == (await a.receive()).words
        # a claim: its attempt is restored; a second give-back finds the lease gone
        await b.ask("put", "3", value="work")
        served = await a.ask("claim", "3", "tag=5")
        assert {"key": "1", "value": "work", "metadata": 1} == served.fields
        assert OK == (await a.ask("give_back", "3", "of=claimed", key="1",
                                  metadata=1)).words
        assert ("answer", "error", "lease_lost") == (await a.ask(
            "give_back", "3", "of=claimed", key="1", metadata=1)).words[:3]
        assert {"key": "1", "value": "ready"} == (await b.ask("state", "3", key="1")).fields
        assert served.fields == (await b.ask("claim", "3", "tag=1")).fields
        # what cannot be given back
        assert ("answer", "error", "invalid_argument") == (await a.ask(
            "give_back", "2", "of=put", value="x")).words[:3]

    run_wire(test)
