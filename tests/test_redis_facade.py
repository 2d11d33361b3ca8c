"""The thread facade on Redis (``connect("unix://...")``, ``RedisCorral``), with real
threads and two facades on one redis-server standing for two processes: commands,
waits served across them in FIFO order, timeouts, interrupts, close, and a load where
every item is taken exactly once."""

from __future__ import annotations

import contextlib
import functools
import os
import random
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest
from conftest import start, wait_until

from corral.adapters._redis_client import RedisCorral
from corral.adapters.client import connect
from corral.adapters.workers import Executor, ExecutorClient, Worker
from corral.kernel import (
    AlreadyExists,
    Closed,
    Empty,
    InvalidArgument,
    Job,
    JobFailed,
    JobState,
    Kind,
    LeaseLost,
    LimitExceeded,
    NotFound,
    WrongKind,
)
from corral.transports.redis_backend import RedisKernel


@pytest.fixture
def a(url: str) -> Iterator[RedisCorral]:
    with connect(url) as corral:
        assert isinstance(corral, RedisCorral)
        yield corral


@pytest.fixture
def b(url: str) -> Iterator[RedisCorral]:
    """Another facade on the same Redis and prefix: another process, as far as either
    can tell."""
    with connect(url) as corral:
        assert isinstance(corral, RedisCorral)
        yield corral


def waiters(redis_server: Any, prefix: str, name: str, key: str | None = None) -> int:
    """How many waiters Redis has queued on list ``name`` (or map ``name``'s ``key``)."""
    queue = f"{prefix}:{{{name}}}:w" if key is None else f"{prefix}:{{{name}}}:wk:{key}"
    return len(redis_server.lrange(queue, 0, -1))


def test_list_commands_are_shared(a: RedisCorral, b: RedisCorral) -> None:
    """What one facade does to a list, the other sees."""
    lst, other = a.list("l"), b.list("l")
    lst.push_back(1)
    lst.push_back({"two": [2]}, metadata="m")
    other.push_front(0)
    assert [0, 1, {"two": [2]}] == [r.value for r in other.query()]
    assert "m" == lst.query(-1)[0].metadata
    assert 3 == other.count() == len(lst)
    other.set(1, "one")
    lst.insert(1, "half")
    assert "one" == other.get(2) and "half" == lst.get(-3)
    other.delete(0)
    assert ["half", "one"] == [r.value for r in lst.query(0, 2)]
    assert "half" == lst.pop_front() and {"two": [2]} == other.pop_back()
    assert "one" == other.wait_pop_next(timeout=0)
    with pytest.raises(Empty):
        lst.pop_front()
    with pytest.raises(NotFound):
        other.get(0)
    lst.set_property("owner", "a")
    assert "a" == other.get_property("owner")
    with pytest.raises(NotFound):
        other.get_property("nobody")
    stats = other.statistics()
    assert (0, 0, 0) == (stats.records, stats.waiters, stats.subscribers)
    lst.push_back("x")
    other.clear()
    assert 0 == lst.count()


def test_map_commands_are_shared(a: RedisCorral, b: RedisCorral) -> None:
    m, other = a.map("m"), b.map("m")
    m.set("b", 2)
    other.insert("a", 1, metadata={"k": 1})
    with pytest.raises(AlreadyExists):
        m.insert("a", 3)
    assert ["a", "b"] == other.keys() == m.keys()
    assert 1 == m.get("a") and {"k": 1} == m.query(0, 1)[0].metadata
    assert [("a", 1), ("b", 2)] == [(r.key, r.value) for r in other.query()]
    other.delete("b")
    with pytest.raises(NotFound):
        m.delete("b")
    assert 1 == m.wait_pop_key("a", timeout=0) and 0 == other.count()
    with pytest.raises(Empty):
        m.wait_pop_key("a", timeout=0)
    m.set_property("p", "v")
    assert "v" == other.get_property("p") and 0 == len(other)


def test_what_is_not_on_redis_yet(a: RedisCorral, redis_server: Any, prefix: str) -> None:
    """Subscriptions and deleting containers raise InvalidArgument; a kind the Redis
    kernel refuses is refused alike (the kernel says which kinds are there so far)."""
    kernel = RedisKernel(redis_server, prefix=f"{prefix}k")
    for kind, make in ((Kind.FEED, a.feed), (Kind.SORTED_FEED, a.sorted_feed),
                       (Kind.QUEUE, a.queue), (Kind.JOBS, a.jobs)):
        outcomes = []
        for create in (functools.partial(kernel.create, kind=kind), make):
            try:
                create(kind.value)
                outcomes.append("made")
            except InvalidArgument as error:
                outcomes.append(str(error))
        assert outcomes[0] == outcomes[1]
    a.map("m")
    with pytest.raises(WrongKind):
        a.list("m")


def test_parked_consumer_is_served_by_the_other_process(a: RedisCorral, b: RedisCorral,
                                                        redis_server: Any,
                                                        prefix: str) -> None:
    got: list[Any] = []
    thread = start(lambda: got.append(a.list("jobs").wait_pop_next(timeout=30)))
    wait_until(lambda: waiters(redis_server, prefix, "jobs") == 1)
    assert 1 == b.list("jobs").statistics().waiters
    b.list("jobs").push_back({"n": 1})
    thread.join(10)
    assert [{"n": 1}] == got
    assert 0 == b.list("jobs").statistics().waiters


def test_list_waiters_are_served_first_come_first_served(a: RedisCorral, b: RedisCorral,
                                                         redis_server: Any,
                                                         prefix: str) -> None:
    """Three consumers (on both facades) park in a known order; three pushes: consumer
    i gets item i."""
    got: dict[int, Any] = {}

    def consume(corral: RedisCorral, i: int) -> None:
        got[i] = corral.list("fifo").wait_pop_next(timeout=30)

    threads = []
    for i, corral in enumerate((a, b, a)):
        threads.append(start(consume, corral, i))
        wait_until(lambda i=i: waiters(redis_server, prefix, "fifo") == i + 1)
    for i in range(3):
        (b if i % 2 else a).list("fifo").push_back(f"item {i}")
    for thread in threads:
        thread.join(10)
    assert {0: "item 0", 1: "item 1", 2: "item 2"} == got


def test_map_key_waiters_are_served_in_order(a: RedisCorral, b: RedisCorral,
                                             redis_server: Any, prefix: str) -> None:
    got: dict[int, Any] = {}

    def consume(corral: RedisCorral, i: int) -> None:
        got[i] = corral.map("replies").wait_pop_key("r", timeout=30)

    threads = []
    for i, corral in enumerate((b, a, b)):
        threads.append(start(consume, corral, i))
        wait_until(lambda i=i: waiters(redis_server, prefix, "replies", "r") == i + 1)
    b.map("replies").set("other", "not waited for")
    for i in range(3):
        a.map("replies").set("r", i)
        wait_until(lambda i=i: i in got)  # each set is taken before the next is made
    for thread in threads:
        thread.join(10)
    assert {0: 0, 1: 1, 2: 2} == got
    assert ["other"] == a.map("replies").keys()


def test_a_timeout_raises_empty_and_leaves_no_waiter(a: RedisCorral, b: RedisCorral) -> None:
    with pytest.raises(Empty, match="timed out"):
        a.list("l").wait_pop_next(timeout=0.05)
    with pytest.raises(Empty, match="timed out"):
        a.map("m").wait_pop_key("k", timeout=0.05)
    with pytest.raises(Empty):
        a.list("l").wait_pop_next(timeout=0)
    assert 0 == b.list("l").statistics().waiters == b.map("m").statistics().waiters
    b.list("l").push_back("later")
    assert "later" == a.list("l").wait_pop_next(timeout=5)
    with pytest.raises(InvalidArgument):
        a.list("l").wait_pop_next(timeout=-1)


def test_interrupt_ends_a_parked_wait_and_loses_nothing(a: RedisCorral, b: RedisCorral,
                                                        redis_server: Any,
                                                        prefix: str) -> None:
    outcome: list[Any] = []

    def wait() -> None:
        try:
            outcome.append(a.list("l").wait_pop_next())
        except Empty as error:
            outcome.append(error)

    thread = start(wait)
    wait_until(lambda: waiters(redis_server, prefix, "l") == 1)
    a.interrupt(thread)
    thread.join(10)
    assert not thread.is_alive()
    assert 1 == len(outcome) and isinstance(outcome[0], Empty)
    assert "interrupted" in str(outcome[0])
    assert 0 == b.list("l").statistics().waiters
    b.list("l").push_back("kept")
    assert ["kept"] == [r.value for r in b.list("l").query()]


def test_interrupt_before_parking_ends_the_next_wait(a: RedisCorral) -> None:
    lst = a.list("l")
    lst.push_back("there")
    a.interrupt(threading.current_thread())
    assert "there" == lst.wait_pop_next()  # completes at once: not affected
    with pytest.raises(Empty, match="interrupted"):
        lst.wait_pop_next(timeout=30)  # bounded, should the interrupt be lost
    with pytest.raises(Empty, match="timed out"):  # used up
        lst.wait_pop_next(timeout=0.01)
    assert 0 == lst.statistics().waiters


def test_close_ends_parked_callers_with_closed(url: str, b: RedisCorral,
                                               redis_server: Any, prefix: str) -> None:
    a = connect(url)
    outcomes: list[Any] = []

    def wait(call: Any, *args: Any) -> None:
        try:
            outcomes.append(call(*args))
        except Closed as error:
            outcomes.append(error)

    threads = [start(wait, a.list("l").wait_pop_next),
               start(wait, a.map("m").wait_pop_key, "k")]
    wait_until(lambda: waiters(redis_server, prefix, "l") == 1
               and waiters(redis_server, prefix, "m", "k") == 1)
    a.close()
    for thread in threads:
        thread.join(10)
    assert 2 == len(outcomes) and all(isinstance(o, Closed) for o in outcomes)
    assert 0 == b.list("l").statistics().waiters == b.map("m").statistics().waiters
    assert a.closed and not a.wait_connected()
    with pytest.raises(Closed):
        a.list("l")
    with pytest.raises(Closed):
        a.list("l").wait_pop_next(timeout=0)
    a.close()  # idempotent
    b.list("l").push_back("kept")
    assert 1 == b.list("l").count()


def test_ctrl_c_while_parked_withdraws_the_wait(a: RedisCorral, b: RedisCorral,
                                                redis_server: Any, prefix: str) -> None:
    """A SIGINT while the main thread is parked withdraws its waiter."""
    main = threading.get_ident()
    start(lambda: (wait_until(lambda: waiters(redis_server, prefix, "l") == 1),
                   signal.pthread_kill(main, signal.SIGINT)))
    with pytest.raises(KeyboardInterrupt):
        a.list("l").wait_pop_next(timeout=30)
    assert 0 == b.list("l").statistics().waiters
    b.list("l").push_back("kept")
    assert ["kept"] == [r.value for r in a.list("l").query()]


@pytest.mark.parametrize("kind", ["list", "map"])
def test_ctrl_c_after_being_served_gives_the_item_back(
        a: RedisCorral, b: RedisCorral, redis_server: Any, prefix: str, kind: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C that lands once the wait was served, before its caller took the item:
    the item goes back (a list's to the front, a map's key if still absent)."""
    receive = a._receive

    def served_then_interrupted(parked: Any, deadline: Any) -> str:
        wait_until(lambda: redis_server.llen(parked.mailbox) == 1)  # served
        receive(parked, deadline)  # read (not taken), as the thread would
        raise KeyboardInterrupt

    monkeypatch.setattr(a, "_receive", served_then_interrupted)
    if kind == "list":
        wait: Any = a.list("c").wait_pop_next
        serve: Any = lambda: b.list("c").push_back("served")  # noqa: E731
        key = None
    else:
        wait, key = (lambda: a.map("c").wait_pop_key("k")), "k"
        serve = lambda: b.map("c").set("k", "served")  # noqa: E731
    start(lambda: (wait_until(lambda: waiters(redis_server, prefix, "c", key) == 1),
                   serve()))
    with pytest.raises(KeyboardInterrupt):
        wait()
    monkeypatch.undo()
    handle: Any = b.list("c") if kind == "list" else b.map("c")
    assert ["served"] == [r.value for r in handle.query()]
    assert 0 == handle.statistics().waiters
    assert [] == redis_server.keys(f"{prefix}:*:mb:*")  # its session is closed
    if kind == "list":
        assert "served" == a.list("c").wait_pop_next(timeout=5)


def test_load_every_item_exactly_once(a: RedisCorral, b: RedisCorral) -> None:
    """Two producers (one per facade) of 500 items each and three consumers (on both)
    with short timeouts: every item is consumed exactly once."""
    per_producer, consumers = 500, 3
    got: list[list[Any]] = [[] for _ in range(consumers)]

    def produce(corral: RedisCorral, p: int) -> None:
        lst = corral.list("work")
        for i in range(per_producer):
            lst.push_back([p, i])

    def consume(corral: RedisCorral, c: int) -> None:
        lst = corral.list("work")
        while True:
            try:
                item = lst.wait_pop_next(timeout=(None, 0.01, 0)[len(got[c]) % 3])
            except Empty:
                continue
            if item is None:
                return
            got[c].append(tuple(item))

    takers = [start(consume, (a, b, a)[c], c) for c in range(consumers)]
    makers = [start(produce, corral, p) for p, corral in enumerate((a, b))]
    for thread in makers:
        thread.join(60)
        assert not thread.is_alive()
    for _ in range(consumers):
        b.list("work").push_back(None)  # after every item: each consumer takes one
    for thread in takers:
        thread.join(60)
        assert not thread.is_alive()
    taken = Counter(item for items in got for item in items)
    assert {(p, i): 1 for p in range(2) for i in range(per_producer)} == dict(taken)
    assert 0 == a.list("work").count() and 0 == b.list("work").statistics().waiters
    for items in got:  # each producer's items reach each consumer in their order
        for p in range(2):
            mine = [i for q, i in items if q == p]
            assert sorted(mine) == mine


def test_prefixes_keep_applications_apart(redis_server: Any, url: str) -> None:
    path = redis_server.connection_pool.connection_kwargs["path"]
    with connect(url) as one, connect(f"unix://{path}?prefix=elsewhere{os.getpid()}") as two:
        one.list("l").push_back(1)
        assert 0 == two.list("l").count()
        assert "RedisCorral" in repr(one)


def test_connecting_to_nothing_fails_clearly(redis_server: Any, tmp_path: Any) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionError, match="cannot reach Redis") as caught:
        connect(f"redis://:secret@127.0.0.1:{port}/0", connect_timeout=2)
    assert isinstance(caught.value, OSError) and "secret" not in str(caught.value)
    assert str(port) in str(caught.value)
    with pytest.raises(OSError, match="cannot reach Redis"):
        connect(f"unix://{tmp_path}/nothing.sock")
    path = redis_server.connection_pool.connection_kwargs["path"]
    with pytest.raises(InvalidArgument, match="token"):
        connect(f"unix://{path}", token="t")


def test_ctrl_c_storm_while_parked_loses_nothing(a: RedisCorral, b: RedisCorral,
                                                 redis_server: Any, prefix: str) -> None:
    """SIGINT, as a Ctrl-C, lands while the main thread is parked (blocked on its
    mailbox) as items arrive for it: each interrupted wait is withdrawn or gives its
    item back. (One that lands while the wait's first call is on the wire, before it
    parked, may cut a reply that took an item: at-most-once, as over any connection.)"""
    rng = random.Random(3)
    parked_code = RedisCorral._receive.__code__
    landed = 0

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal landed
        while frame is not None:
            if frame.f_code is parked_code:
                landed += 1
                raise KeyboardInterrupt
            frame = frame.f_back

    lst, source = a.list("c"), b.list("c")
    got: list[Any] = []
    previous = signal.signal(signal.SIGINT, handler)
    try:
        for i in range(100):
            push = threading.Timer(rng.uniform(0, 0.01), source.push_back, (i,))
            ctrl_c = threading.Timer(rng.uniform(0, 0.01), signal.pthread_kill,
                                     (threading.main_thread().ident, signal.SIGINT))
            push.start()
            ctrl_c.start()
            with contextlib.suppress(KeyboardInterrupt):
                got.append(lst.wait_pop_next(timeout=10))
            push.join(10)
            ctrl_c.join(10)
            while source.count():  # what an interrupted wait left, so the next one parks
                got.append(source.pop_front())
    finally:
        signal.signal(signal.SIGINT, previous)
    assert landed > 0
    assert list(range(100)) == sorted(got)
    assert 0 == source.statistics().waiters
    assert [] == redis_server.keys(f"{prefix}:*:mb:*")  # every wait's session is closed


def test_queues_across_processes_block_serve_in_order_and_admit_parked_puts(
        a: RedisCorral, b: RedisCorral, redis_server: Any, prefix: str) -> None:
    """A queue on Redis through the facade: getters parked in one process are served
    first come, first served by the other's puts, highest priority first; a full bounded
    queue parks a put until a get makes room, and a timed-out put raises LimitExceeded."""
    got: dict[int, Any] = {}
    threads = []
    for i in range(3):
        threads.append(start(lambda i=i: got.__setitem__(i, a.queue("q").get(timeout=30))))
        wait_until(lambda i=i: waiters(redis_server, prefix, "q") == i + 1)
    for n in range(3):
        b.queue("q").put(f"item {n}")
    for thread in threads:
        thread.join(10)
    assert {0: "item 0", 1: "item 1", 2: "item 2"} == got
    q = b.queue("q")
    q.put("low", priority=-1)
    q.put("high", priority=5)
    assert ["high", "low"] == [a.queue("q").get(timeout=0), a.queue("q").get(timeout=0)]
    bounded = a.queue("bounded", max_length=1)
    bounded.put("first")
    with pytest.raises(LimitExceeded):
        bounded.put("refused")  # timeout 0: full is full
    admitted: list[Any] = []
    thread = start(lambda: admitted.append(bounded.put("second", timeout=30)))
    wait_until(lambda: b.queue("bounded").statistics().waiters == 1)
    assert "first" == b.queue("bounded").get(timeout=5)
    thread.join(10)
    assert [None] == admitted and "second" == b.queue("bounded").get(timeout=5)
    bounded.put("full again")
    with pytest.raises(LimitExceeded):
        bounded.put("late", timeout=0.2)
    assert 0 == b.queue("bounded").statistics().waiters
    assert 1 == b.queue("bounded").statistics().records


def test_ctrl_c_after_a_queue_get_was_served_puts_the_item_back_in_its_place(
        a: RedisCorral, b: RedisCorral, redis_server: Any, prefix: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Served into a caller that is gone, a queue item goes back where it was (ahead of
    what came later at its priority), by the kernel's exact inverse."""
    q = a.queue("q")
    original = RedisCorral._receive

    def cut(self: RedisCorral, parked: Any, deadline: float | None) -> str:
        original(self, parked, deadline)
        raise KeyboardInterrupt  # the outcome was read; the caller is gone before it
    monkeypatch.setattr(RedisCorral, "_receive", cut)
    raised: list[BaseException] = []

    def consume() -> None:
        try:
            q.get(timeout=30)
        except KeyboardInterrupt as error:
            raised.append(error)
    thread = start(consume)
    wait_until(lambda: waiters(redis_server, prefix, "q") == 1)
    b.queue("q").put("handed over")
    thread.join(10)
    monkeypatch.setattr(RedisCorral, "_receive", original)
    assert raised
    b.queue("q").put("came later")
    assert ["handed over", "came later"] == [b.queue("q").get(timeout=0),
                                             b.queue("q").get(timeout=0)]


# -- job queues -------------------------------------------------------------------------


def test_jobs_are_shared_and_claimers_served_in_order(a: RedisCorral, b: RedisCorral,
                                                      redis_server: Any,
                                                      prefix: str) -> None:
    """Claims parked from two processes are served first come, first served; the
    results reach a reader parked in the other; the states and counts agree."""
    got: list[tuple[int, Job]] = []
    for i in range(4):  # park claimer i only once claimer i - 1 is queued
        corral = (a, b)[i % 2]
        start(lambda c=corral, i=i: got.append((i, c.jobs("j").claim(timeout=10))))
        wait_until(lambda i=i: waiters(redis_server, prefix, "j") == i + 1)
    ids = [b.jobs("j").put(f"job {i}") for i in range(4)]
    wait_until(lambda: len(got) == 4)
    assert sorted((i, job.id) for i, job in got) == list(enumerate(ids))
    readers = [start(lambda id=id: got.append((-1, a.jobs("j").result(id, timeout=10))))
               for id in ids]
    for i, job in sorted(got):
        (a, b)[i % 2].jobs("j").finish(job, job.item.upper())
    for reader in readers:
        reader.join(10)
    assert sorted(r for i, r in got if i == -1) == [f"JOB {i}" for i in range(4)]
    stats = a.jobs("j").statistics()
    assert (stats.finished, stats.claimed, stats.waiters, stats.result_waiters) == (4, 0, 0, 0)
    assert JobState.FINISHED == b.jobs("j").state(ids[0])


def test_closing_releases_claims_and_fences_the_late_finish(url: str, b: RedisCorral
                                                            ) -> None:
    """A facade that closes gives its claims back (the attempt counted), as a closed
    connection does on a server; its late finish raises LeaseLost."""
    with connect(url) as a:
        job = a.jobs("j").claim(timeout=0) if b.jobs("j").put("x") else None
    assert job is not None
    info = b.jobs("j").info(job.id)
    assert (info.state, info.attempt, info.error) == (JobState.READY, 1,
                                                      "the claiming session closed")
    with pytest.raises(LeaseLost):
        b.jobs("j").finish(job)
    again = b.jobs("j").claim(timeout=0)
    assert (again.id, again.attempt) == (job.id, 2)


def test_a_process_that_stops_beating_loses_its_claims_and_waits(
        url: str, b: RedisCorral, redis_server: Any, prefix: str) -> None:
    """A process that dies closes nothing: once its sessions miss three heartbeats
    Redis ends them; its claims come back (the attempt counted, the stale finish
    fenced) and its parked waiters are withdrawn, so what comes next is not handed
    to the dead."""
    dead = RedisCorral(b._redis, prefix=prefix, heartbeat=0.1)
    heard: list[BaseException] = []

    def wait() -> None:
        try:
            dead.list("l").wait_pop_next()
        except Closed as error:
            heard.append(error)

    try:
        b.jobs("j").put("held")
        job = dead.jobs("j").claim(timeout=0)
        parked = start(wait)
        wait_until(lambda: waiters(redis_server, prefix, "l") == 1)
        time.sleep(0.5)  # beats keep them alive past three heartbeats
        assert JobState.CLAIMED == b.jobs("j").state(job.id)
        assert 1 == waiters(redis_server, prefix, "l")
        dead._stop.set()  # the heartbeat thread stops, as it does when its process dies
        wait_until(lambda: b.jobs("j").state(job.id) is JobState.READY, limit=5)
        assert b.jobs("j").info(job.id).error == "the claiming session closed"
        with pytest.raises(LeaseLost):
            dead.jobs("j").finish(job)
        b.list("l").push_back("for the living")
        parked.join(5)
        assert heard and "missed its heartbeat" in str(heard[0])
        assert 0 == waiters(redis_server, prefix, "l")
        assert "for the living" == b.list("l").pop_front()
        assert 2 == b.jobs("j").claim(timeout=0).attempt
    finally:
        dead.close()


def test_ctrl_c_after_a_claim_was_served_gives_the_job_back(
        a: RedisCorral, b: RedisCorral, redis_server: Any, prefix: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C that lands once a parked claim was served: the job is ready again at
    its place, its attempt restored, as if never claimed."""
    receive = a._receive

    def served_then_interrupted(parked: Any, deadline: Any) -> str:
        wait_until(lambda: redis_server.llen(parked.mailbox) == 1)
        receive(parked, deadline)
        raise KeyboardInterrupt

    monkeypatch.setattr(a, "_receive", served_then_interrupted)
    start(lambda: (wait_until(lambda: waiters(redis_server, prefix, "j") == 1),
                   b.jobs("j").put("first"), b.jobs("j").put("second")))
    with pytest.raises(KeyboardInterrupt):
        a.jobs("j").claim(timeout=10)
    monkeypatch.undo()
    wait_until(lambda: b.jobs("j").statistics().ready == 2)
    job = b.jobs("j").claim(timeout=0)
    assert (job.item, job.attempt) == ("first", 1)


def test_put_many_and_claim_many_are_one_call_each(a: RedisCorral, b: RedisCorral,
                                                  redis_server: Any) -> None:
    """put_many: fresh ids in order, all or none; claim_many: up to n ready jobs in
    claim order (priority, then arrival), each under its own lease, held by the
    facade's session (closing it gives them back); each one FCALL."""
    def fcalls() -> int:
        return int(redis_server.info("commandstats").get("cmdstat_fcall", {}).get(
            "calls", 0))

    jobs, other = a.jobs("j"), b.jobs("j")
    assert [] == other.put_many([])
    with pytest.raises(Empty):  # (and the facade's first claim here: its first heartbeat)
        jobs.claim_many(2, timeout=0)
    before = fcalls()
    ids = other.put_many(f"job {n}" for n in range(5))
    assert fcalls() - before == 1
    assert ids == sorted(ids, key=int) and len(set(ids)) == 5
    urgent = other.put_many(["urgent"], priority=1)
    with pytest.raises(InvalidArgument):
        other.put_many(["refused"], delay=-1)
    assert 6 == other.statistics().ready
    before = fcalls()
    got = jobs.claim_many(3, timeout=0, lease=10.0)
    assert fcalls() - before == 1
    assert [job.id for job in got] == [*urgent, *ids[:2]]
    assert [job.item for job in got] == ["urgent", "job 0", "job 1"]
    assert {other.info(job.id).deadline is not None for job in got} == {True}
    assert len(jobs.claim_many(10, timeout=0)) == 3  # the rest
    with pytest.raises(InvalidArgument):
        jobs.claim_many(0, timeout=0)
    got[0].finish("done")
    assert "done" == other.result(urgent[0], timeout=0)
    a.close()  # its claims go back, the attempt counted
    assert 5 == other.statistics().ready
    assert 2 == other.claim(timeout=0).attempt


def test_a_parked_claim_many_is_served_with_one_job_by_a_put(
        a: RedisCorral, b: RedisCorral, redis_server: Any, prefix: str) -> None:
    """With no job ready claim_many parks as a claim does, and the next put serves it
    with that one job; a later claim_many takes the rest. Interrupted, it raises
    Empty and leaves no claimer."""
    got: list[Any] = []
    start(lambda: got.append(a.jobs("j").claim_many(3, timeout=10)))
    wait_until(lambda: waiters(redis_server, prefix, "j") == 1)
    b.jobs("j").put_many(["first", "second"])
    wait_until(lambda: bool(got))
    assert [["first"]] == [[job.item for job in jobs] for jobs in got]
    got[0][0].finish("ok")
    assert "ok" == b.jobs("j").result(got[0][0].id, timeout=0)
    assert ["second"] == [job.item for job in a.jobs("j").claim_many(3, timeout=0)]
    outcome: list[Any] = []

    def interrupted() -> None:
        try:
            outcome.append(a.jobs("j").claim_many(2, timeout=30))
        except Empty as error:
            outcome.append(error)

    thread = start(interrupted)
    wait_until(lambda: waiters(redis_server, prefix, "j") == 1)
    a.interrupt(thread)
    thread.join(10)
    assert 1 == len(outcome) and isinstance(outcome[0], Empty)
    assert 0 == waiters(redis_server, prefix, "j")


def test_finish_and_claim_returns_the_next_job_or_none(a: RedisCorral, b: RedisCorral,
                                                       redis_server: Any,
                                                       prefix: str) -> None:
    """finish_and_claim: the finish and the next claim in one FCALL; with none ready,
    None after the timeout (0 or more), the finish standing; parked, the next put
    serves it; a stale claim raises LeaseLost with nothing done."""
    jobs, other = a.jobs("j"), b.jobs("j")
    first, second = other.put_many(["one", "two"])
    job = jobs.claim(timeout=0)
    before = redis_server.info("commandstats")["cmdstat_fcall"]["calls"]
    following = job.finish_and_claim("ONE", timeout=0)
    assert 1 == redis_server.info("commandstats")["cmdstat_fcall"]["calls"] - before
    assert following is not None and (following.id, following.item) == (second, "two")
    assert "ONE" == other.result(first, timeout=0)
    with pytest.raises(LeaseLost):  # finished already: nothing done
        job.finish_and_claim("again", timeout=0)
    assert None is following.finish_and_claim("TWO", timeout=0)  # none ready: finish alone
    assert "TWO" == other.result(second, timeout=0)
    third = jobs.claim(timeout=0) if other.put("three") else None
    assert third is not None
    assert None is third.finish_and_claim("THREE", timeout=0.2)  # parked, timed out
    assert JobState.FINISHED == other.state(third.id)
    assert 0 == waiters(redis_server, prefix, "j")
    fourth = jobs.claim(timeout=0) if other.put("four") else None
    assert fourth is not None
    got: list[Any] = []
    start(lambda: got.append(jobs.finish_and_claim(fourth, "FOUR", timeout=10, lease=5.0)))
    wait_until(lambda: waiters(redis_server, prefix, "j") == 1)
    assert "FOUR" == other.result(fourth.id, timeout=0)  # finished as it parked
    fifth = other.put("five")
    wait_until(lambda: bool(got))
    assert (got[0].id, got[0].item) == (fifth, "five")
    got[0].finish("FIVE")
    stats = other.statistics()
    assert (stats.finished, stats.claimed, stats.ready, stats.waiters) == (5, 0, 0, 0)


@pytest.mark.parametrize("op", ["claim", "claim_many", "finish_and_claim"])
def test_ctrl_c_after_any_parked_claim_was_served_gives_the_job_back(
        a: RedisCorral, b: RedisCorral, redis_server: Any, prefix: str,
        monkeypatch: pytest.MonkeyPatch, op: str) -> None:
    """A Ctrl-C that lands once a parked claim, claim_many or finish_and_claim was
    served: the job is ready again at its place, its attempt restored (the finish
    stands)."""
    held = a.jobs("j").claim(timeout=0) if b.jobs("j").put("held") else None
    assert held is not None
    receive = a._receive

    def served_then_interrupted(parked: Any, deadline: Any) -> str:
        wait_until(lambda: redis_server.llen(parked.mailbox) == 1)
        receive(parked, deadline)
        raise KeyboardInterrupt

    def put_once_parked() -> None:
        wait_until(lambda: waiters(redis_server, prefix, "j") == 1)
        b.jobs("j").put_many(["first", "second"])

    monkeypatch.setattr(a, "_receive", served_then_interrupted)
    start(put_once_parked)
    with pytest.raises(KeyboardInterrupt):
        if op == "finish_and_claim":
            held.finish_and_claim("done", timeout=10)
        else:
            getattr(a.jobs("j"), op)(*([2] if op == "claim_many" else []), timeout=10)
    monkeypatch.undo()
    wait_until(lambda: b.jobs("j").statistics().ready == 2)
    job = b.jobs("j").claim(timeout=0)
    assert (job.item, job.attempt) == ("first", 1)
    assert b.jobs("j").state(held.id) is (JobState.FINISHED if op == "finish_and_claim"
                                          else JobState.CLAIMED)


def test_workers_and_calls_run_on_redis(url: str, b: RedisCorral) -> None:
    """A Worker, an Executor and the failure policy, unchanged on Redis."""
    b.jobs("w").put(0)  # the queue exists before the options below differ
    b.jobs("bad", max_attempts=2, backoff=0)
    workers = [Worker("w", lambda n: n * n, corral=url),
               Worker("bad", lambda n: 1 / n, corral=url),
               Executor("rpc", lambda n: n + 1, corral=url)]
    threads = [start(worker.run) for worker in workers]
    try:
        ids = [b.jobs("w").put(n) for n in range(1, 11)]
        assert [b.jobs("w").result(id, timeout=10) for id in ids] == [
            n * n for n in range(1, 11)]
        with ExecutorClient("rpc", corral=url) as client:
            assert 42 == client.call(41, timeout=10)
        failing = b.jobs("bad").put(0)
        with pytest.raises(JobFailed, match="ZeroDivisionError"):
            b.jobs("bad").result(failing, timeout=10)
        assert 2 == b.jobs("bad").info(failing).attempt
    finally:
        for worker in workers:
            worker.stop()
        for thread in threads:
            thread.join(10)


# -- subscriptions ----------------------------------------------------------------------


def test_subscriptions_hear_every_change_in_order(a: RedisCorral, b: RedisCorral) -> None:
    """A subscription in one process hears another's changes in order, after the
    snapshot it asked for; closing it ends it; the count of subscribers follows."""
    lst = b.list("l")
    lst.push_back("before")
    with a.list("l").subscribe(start=0) as events:
        assert 1 == lst.statistics().subscribers
        lst.push_back(1)
        lst.set(0, "changed")
        assert "changed" == a.list("l").wait_pop_next(timeout=5)  # a hand-off: pop_front
        b.jobs("j").put("job")
        heard = [(e.name, e.key, e.value) for e in (events.get(timeout=5) for _ in range(4))]
        assert heard == [("push_back", 0, "before"), ("push_back", 1, 1),
                         ("set", 0, "changed"), ("pop_front", 0, "changed")]
    with pytest.raises(Closed):
        events.get(timeout=1)
    assert 0 == lst.statistics().subscribers
    with b.jobs("j").subscribe(start=0) as job_events:
        job = a.jobs("j").claim(timeout=0)
        a.jobs("j").finish(job, "done")
        assert [(e.name, e.value) for e in (job_events.get(timeout=5) for _ in range(3))] == [
            ("put", "job"), ("claimed", "job"), ("finished", "done")]


def test_a_subscriber_that_falls_behind_is_ended_not_silently_skipped(
        redis_server: Any, prefix: str) -> None:
    """Past the stream's bound (10,000 events), what a subscription had not read is
    gone: it ends with reason "lagged" instead of missing events unnoticed."""
    kernel = RedisKernel(redis_server, prefix=prefix)
    session = kernel.open_session()
    kernel.create("busy", Kind.LIST)
    sid = kernel.subscribe(session, "busy")
    pipe = redis_server.pipeline(transaction=False)
    for n in range(12_000):  # each one FCALL push_back, as the kernel sends it
        pipe.fcall("corral", 1, *kernel._keys("busy"), "push_back", "server",
                   f"[{n},null]")
    pipe.execute()
    effects = kernel.take_effects()
    assert [type(e).__name__ for e in effects] == ["Unsubscribed"]
    assert effects[0].reason == "lagged" and effects[0].subscription == sid
    assert 0 == kernel.statistics("busy").subscribers


def test_deleting_a_container_ends_its_waiters_and_subscribers(
        a: RedisCorral, b: RedisCorral, redis_server: Any, prefix: str) -> None:
    """Deleted in one process: a caller parked in another hears NotFound, a
    subscription there ends, the records and every key of the container go."""
    b.jobs("d").put("gone with it")
    b.list("d2").push_back(1)
    events = a.list("d2").subscribe()
    heard: list[BaseException] = []

    def park() -> None:
        try:
            a.list("d2").wait_pop_next(timeout=30)
            a.list("d2").wait_pop_next(timeout=30)
        except NotFound as error:
            heard.append(error)

    parked = start(park)
    wait_until(lambda: waiters(redis_server, prefix, "d2") == 1)
    b.delete_container("d2")
    b.delete_container("d")
    parked.join(10)
    assert heard and "was deleted" in str(heard[0])
    assert [e.name for e in events] == ["pop_front"]  # then the end: the loop stops
    assert events._ended is not None and "was deleted" in events._ended
    with pytest.raises(NotFound):
        b.delete_container("d2")
    leftover = [key for key in redis_server.keys(f"{prefix}:{{d*")
                if not key.endswith(b":ev") and b":mb:" not in key]
    assert leftover == []
    assert [] == b.list("d2").query()  # made again, empty
