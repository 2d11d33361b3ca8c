"""The thread facade with real threads."""

from __future__ import annotations

import random
import signal
import threading
from collections import Counter
from typing import Any

import pytest
from conftest import start, wait_until

from corral.adapters.threads import Corral
from corral.kernel import (
    AlreadyExists,
    Closed,
    Empty,
    Event,
    InvalidArgument,
    Kind,
    NotFound,
    Record,
    WrongKind,
)


def test_list_surface(corral: Corral) -> None:
    """Every list operation, with its results and errors."""
    lst = corral.list("l")
    lst.push_back("b", metadata={"m": 1})
    lst.push_front("a")
    lst.insert(2, "d")
    lst.insert(-1, "c")
    assert 4 == len(lst) == lst.count()
    assert ["a", "b", "c", "d"] == [r.value for r in lst.query()]
    assert Record(key=1, value="b", metadata={"m": 1}) == lst.query(1, 2)[0]
    assert "d" == lst.get(-1)
    lst.set(0, "A")
    lst.delete(1)
    assert "A" == lst.pop_front()
    assert "d" == lst.pop_back()
    assert "c" == lst.wait_pop_next(timeout=0)
    with pytest.raises(Empty):
        lst.pop_front()
    with pytest.raises(NotFound):
        lst.get(0)
    lst.clear()
    assert 0 == len(lst)
    lst.set_property("owner", "me")
    assert "me" == lst.get_property("owner")
    assert Kind.LIST == lst.statistics().kind


def test_map_surface(corral: Corral) -> None:
    """Every map operation, with its results and errors."""
    m = corral.map("m")
    m.set("b", 2)
    m.insert("a", 1, metadata="meta")
    with pytest.raises(AlreadyExists):
        m.insert("a", 0)
    with pytest.raises(InvalidArgument):
        m.set(1, "x")  # type: ignore[arg-type]
    assert ["a", "b"] == m.keys()
    assert 1 == m.get("a")
    assert [Record(key="a", value=1, metadata="meta"), Record(key="b", value=2)] == m.query()
    assert 2 == m.wait_pop_key("b", timeout=0)
    m.delete("a")
    with pytest.raises(NotFound):
        m.get("a")
    assert 0 == m.count()
    m.set("x", 1)
    m.clear()
    assert [] == m.keys()


def test_kinds_are_fixed(corral: Corral) -> None:
    """Asking for a list by a map's name raises WrongKind."""
    corral.map("m")
    with pytest.raises(WrongKind):
        corral.list("m")


def test_hand_off_to_a_parked_thread(corral: Corral) -> None:
    """A push from one thread wakes the thread parked in wait_pop_next."""
    lst = corral.list("l")
    got: list[Any] = []
    consumer = start(lambda: got.append(lst.wait_pop_next()))
    wait_until(lambda: lst.statistics().waiters == 1)
    lst.push_back("work")
    consumer.join(10)
    assert ["work"] == got
    assert 0 == len(lst)


def test_parked_threads_are_served_in_order(corral: Corral) -> None:
    """Threads that asked first are served first, for lists and map keys."""
    lst, m = corral.list("l"), corral.map("m")
    got: list[tuple[int, Any]] = []
    threads = []
    for i in range(4):
        threads.append(start(lambda i=i: got.append((i, lst.wait_pop_next()))))
        wait_until(lambda i=i: lst.statistics().waiters == i + 1)
    for i in range(4):
        threads.append(start(lambda i=i: got.append((i, m.wait_pop_key("k")))))
        wait_until(lambda i=i: m.statistics().waiters == i + 1)
    for value in range(4):
        lst.push_back(value)
        wait_until(lambda value=value: len(got) == value + 1)
    for n, value in enumerate("wxyz", start=5):
        m.set("k", value)
        wait_until(lambda n=n: len(got) == n)
    for thread in threads:
        thread.join(10)
    assert [(i, i) for i in range(4)] + list(enumerate("wxyz")) == got


def test_timeout_raises_empty_and_withdraws(corral: Corral) -> None:
    """A wait that times out raises Empty, and the item pushed later stays."""
    lst, m = corral.list("l"), corral.map("m")
    with pytest.raises(Empty):
        lst.wait_pop_next(timeout=0.01)
    with pytest.raises(Empty):
        m.wait_pop_key("k", timeout=0.01)
    lst.push_back(1)
    m.set("k", 2)
    assert (1, 1) == (len(lst), len(m))
    assert (0, 0) == (lst.statistics().waiters, m.statistics().waiters)


def test_later_deadline_then_earlier_one(corral: Corral) -> None:
    """A short timeout armed after a long one still fires first (the alarm re-arms)."""
    lst = corral.list("l")
    outcomes: list[str] = []

    def wait(timeout: float) -> None:
        try:
            lst.wait_pop_next(timeout=timeout)
            outcomes.append("item")
        except Empty:
            outcomes.append(f"empty {timeout}")

    long = start(wait, 30.0)
    wait_until(lambda: lst.statistics().waiters == 1)
    wait(0.01)
    assert ["empty 0.01"] == outcomes
    lst.push_back("x")
    long.join(10)
    assert ["empty 0.01", "item"] == outcomes


def test_close_wakes_parked_threads(corral: Corral) -> None:
    """Closing the corral wakes parked threads with Closed; later calls raise Closed."""
    lst = corral.list("l")
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            lst.wait_pop_next(timeout=60)
        except Closed as error:
            errors.append(error)

    threads = [start(wait) for _ in range(3)]
    wait_until(lambda: lst.statistics().waiters == 3)
    corral.close()
    for thread in threads:
        thread.join(10)
    assert 3 == len(errors)
    with pytest.raises(Closed):
        lst.push_back(1)
    corral.close()  # idempotent


def test_subscription(corral: Corral) -> None:
    """A subscription sees events in order, times out with Empty, ends with Closed."""
    lst = corral.list("l")
    lst.push_back("old")
    sub = lst.subscribe(start=0)
    lst.push_back("new")
    assert Event(container="l", name="push_back", key=0, value="old") == sub.get(timeout=1)
    assert ("push_back", 1) == (lambda e: (e.name, e.key))(sub.get(timeout=1))
    with pytest.raises(Empty):
        sub.get(timeout=0.01)
    lst.pop_front()
    sub.close()
    lst.push_back("unseen")
    assert ["pop_front"] == [event.name for event in sub]
    with pytest.raises(Closed):
        sub.get()


def test_subscription_ends_when_container_is_deleted(corral: Corral) -> None:
    """Deleting a container ends its subscriptions and fails its waiters with NotFound."""
    m = corral.map("m")
    sub = m.subscribe()
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            m.wait_pop_key("k")
        except NotFound as error:
            errors.append(error)

    thread = start(wait)
    wait_until(lambda: m.statistics().waiters == 1)
    corral.delete_container("m")
    thread.join(10)
    assert 1 == len(errors)
    assert [] == list(sub)


def test_interrupted_wait_is_withdrawn(corral: Corral) -> None:
    """Ctrl-C in a parked wait withdraws the waiter; nothing is lost."""
    lst = corral.list("l")
    main = threading.get_ident()
    start(lambda: (wait_until(lambda: lst.statistics().waiters == 1),
                   signal.pthread_kill(main, signal.SIGINT)))
    with pytest.raises(KeyboardInterrupt):
        lst.wait_pop_next()
    assert 0 == lst.statistics().waiters
    lst.push_back("kept")
    assert ["kept"] == [r.value for r in lst.query()]


def test_interrupt_ends_a_parked_wait_with_empty(corral: Corral) -> None:
    """interrupt(thread) withdraws the wait that thread is parked in; the next push
    goes to whoever waits next, not to the interrupted thread."""
    jobs = corral.jobs("j")
    outcome: list[Any] = []

    def claim() -> None:
        try:
            jobs.claim()
        except Empty as error:
            outcome.append(error)

    thread = start(claim)
    wait_until(lambda: jobs.statistics().waiters == 1)
    corral.interrupt(thread)
    thread.join(10)
    assert 1 == len(outcome) and "interrupted" in str(outcome[0])
    assert 0 == jobs.statistics().waiters
    jobs.put("kept")
    assert "kept" == jobs.claim(timeout=5).item


def test_interrupt_before_parking_ends_the_next_wait(corral: Corral) -> None:
    """An interrupt that finds the thread busy ends its next wait that would park;
    a wait that completes at once is not affected."""
    lst = corral.list("l")
    lst.push_back("there")
    corral.interrupt(threading.current_thread())
    assert "there" == lst.wait_pop_next()
    with pytest.raises(Empty, match="interrupted"):
        lst.wait_pop_next()
    with pytest.raises(Empty):  # the interrupt is used up: this one times out
        lst.wait_pop_next(timeout=0.01)
    assert 0 == lst.statistics().waiters


def test_many_threads_every_item_exactly_once(corral: Corral) -> None:
    """4 producers and 4 consumers with random timeouts: each item consumed once."""
    lst = corral.list("work")
    done = corral.list("done")
    per_producer, producers, consumers = 500, 4, 4
    rng = random.Random(7)
    timeouts = [[rng.choice([None, 0, 0.001]) for _ in range(4000)] for _ in range(consumers)]

    def produce(p: int) -> None:
        for i in range(per_producer):
            lst.push_back(f"{p}:{i}")  # JSON-able, so the test runs remote too

    def consume(c: int) -> None:
        for timeout in timeouts[c]:
            try:
                item = lst.wait_pop_next(timeout=timeout)
            except Empty:
                continue
            if item is None:
                return
            done.push_back(item)
        while (item := lst.wait_pop_next()) is not None:
            done.push_back(item)

    workers = [start(consume, c) for c in range(consumers)]
    feeders = [start(produce, p) for p in range(producers)]
    for thread in feeders:
        thread.join(30)
    for _ in workers:
        lst.push_back(None)
    for thread in workers:
        thread.join(30)
    got = Counter(r.value for r in done.query())
    assert {f"{p}:{i}": 1 for p in range(producers) for i in range(per_producer)} == dict(got)
    assert 0 == lst.statistics().waiters
