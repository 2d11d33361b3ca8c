"""Kernel semantics, one behaviour per test."""

from __future__ import annotations

import copy
import queue
from typing import Any

import pytest

from corral.kernel import (
    AlreadyExists,
    Cancelled,
    CorralError,
    Delivered,
    Empty,
    Event,
    InvalidArgument,
    Kernel,
    Kind,
    NotFound,
    Notified,
    Record,
    Unsubscribed,
    Waiting,
    WrongKind,
)


@pytest.fixture
def k() -> Kernel:
    kernel = Kernel()
    kernel.create("l", Kind.LIST)
    kernel.create("m", "volatile_map")
    return kernel


def events(kernel: Kernel) -> list[tuple[str, Any, Any]]:
    """The subscription events queued, as (name, key, value)."""
    return [(e.event.name, e.event.key, e.event.value) for e in kernel.take_effects()
            if isinstance(e, Notified)]


def fingerprint(kernel: Kernel) -> Any:
    """Everything observable about a kernel, as plain comparable data."""
    core = kernel._core
    return (
        core.now, core._last_id, list(core.effects), kernel.containers(),
        {n: (kernel.query(n), kernel.statistics(n)) for n in kernel.containers()},
        {sid: (sorted(s.waiters), sorted(s.subscriptions)) for sid, s in core.sessions.items()},
        [(key, w.id, w.session, w.container, w.key) for key, w in core.timers.items()],
    )


def test_errors_are_typed() -> None:
    """Every error is a CorralError; Empty is also a queue.Empty."""
    for error in (Empty, NotFound, WrongKind, AlreadyExists, InvalidArgument):
        assert issubclass(error, CorralError)
    assert issubclass(Empty, queue.Empty)


def test_wnp_next_transcript(k: Kernel) -> None:
    """The seed's wnp_next transcript: present items pop at once, a parked waiter gets
    the next push and the list stays empty."""
    s = k.open_session()
    k.push_back("l", "hello tio")
    k.push_back("l", "xpto")
    assert 2 == k.count("l")
    assert ("hello tio", None) == k.wait_pop_next(s, "l")
    assert 1 == k.count("l")
    assert ("xpto", None) == k.wait_pop_next(s, "l")
    waiting = k.wait_pop_next(s, "l")
    assert isinstance(waiting, Waiting)
    assert () == tuple(k.take_effects())
    k.push_back("l", "abc")
    assert [Delivered(session=s, waiter=waiting.waiter,
                      event=Event(container="l", name="wnp_next", key=0, value="abc"))
            ] == k.take_effects()
    assert 0 == k.count("l")


def test_wnp_key_transcript(k: Kernel) -> None:
    """The seed's wnp_key transcript: a present key pops at once; a waiter is served by
    the set of its key only."""
    s = k.open_session()
    k.set("m", "rodrigo", "strauss", "meta")
    assert ("strauss", "meta") == k.wait_pop_key(s, "m", "rodrigo")
    waiting = k.wait_pop_key(s, "m", "rodrigo")
    assert isinstance(waiting, Waiting)
    k.set("m", "linus", "tovards")
    assert () == tuple(k.take_effects())
    k.set("m", "rodrigo", "Surname")
    assert [Delivered(session=s, waiter=waiting.waiter,
                      event=Event(container="m", name="wnp_key", key="rodrigo",
                                  value="Surname"))] == k.take_effects()
    assert ["linus"] == k.keys("m")


def test_waiters_are_served_first_come_first_served(k: Kernel) -> None:
    """Three waiters get three pushes in the order they asked, one each."""
    sessions = [k.open_session() for _ in range(3)]
    waiters = [k.wait_pop_next(s, "l") for s in sessions]
    for value in "xyz":
        k.push_back("l", value)
    served = [(e.session, e.event.value) for e in k.take_effects()]
    assert list(zip(sessions, "xyz", strict=True)) == served
    assert all(isinstance(w, Waiting) for w in waiters)


def test_any_addition_wakes_a_list_waiter(k: Kernel) -> None:
    """push_front and insert serve a waiter too: an item never sits beside a waiter."""
    s = k.open_session()
    for add in (lambda: k.push_front("l", 1), lambda: k.insert("l", 0, 2)):
        k.wait_pop_next(s, "l")
        add()
        assert 1 == len(k.take_effects())
        assert 0 == k.count("l")


def test_insert_serves_a_map_waiter(k: Kernel) -> None:
    """insert of a waited-for key serves it; subscribers see insert then delete."""
    s = k.open_session()
    k.subscribe(s, "m")
    k.wait_pop_key(s, "m", "x")
    k.insert("m", "x", 1, "meta")
    effects = k.take_effects()
    assert [("insert", "x"), ("delete", "x")] == [
        (e.event.name, e.event.key) for e in effects if isinstance(e, Notified)]
    assert isinstance(effects[-1], Delivered) and "meta" == effects[-1].event.metadata


def test_subscribers_see_push_then_pop_on_hand_off(k: Kernel) -> None:
    """A hand-off shows as push_back then pop_front, as Tio showed it."""
    s = k.open_session()
    k.subscribe(s, "l")
    k.wait_pop_next(s, "l")
    k.push_back("l", "v")
    assert [("push_back", 0, "v"), ("pop_front", 0, "v")] == events(k)


def test_list_events_carry_normalised_keys(k: Kernel) -> None:
    """Events name the real index even when the command used a negative one."""
    s = k.open_session()
    k.subscribe(s, "l")
    for v in "abc":
        k.push_back("l", v)
    k.set("l", -1, "C")
    k.insert("l", -1, "B2")
    k.delete("l", -4)
    k.pop_back("l")
    k.push_front("l", "z")
    k.clear("l")
    assert [("push_back", 0, "a"), ("push_back", 1, "b"), ("push_back", 2, "c"),
            ("set", 2, "C"), ("insert", 2, "B2"), ("delete", 0, "a"),
            ("pop_back", 2, "C"), ("push_front", 0, "z"), ("clear", None, None)
            ] == events(k)


def test_negative_indexes_count_from_the_end(k: Kernel) -> None:
    """get, set, insert and delete take negative indexes, as Python lists do."""
    for v in range(5):
        k.push_back("l", v)
    assert Record(key=4, value=4) == k.get("l", -1)
    k.set("l", -2, "x")
    k.insert("l", -5, "first")
    k.delete("l", -1)
    assert ["first", 0, 1, 2, "x"] == [r.value for r in k.query("l")]
    assert [2, "x"] == [r.value for r in k.query("l", -2)]
    assert [1, 2] == [r.value for r in k.query("l", 2, -1)]


def test_out_of_range_is_not_found_and_changes_nothing(k: Kernel) -> None:
    """Bad indexes raise NotFound; bad types raise InvalidArgument; nothing changes."""
    k.push_back("l", "only")
    for call in (lambda: k.get("l", 1), lambda: k.set("l", -2, 0),
                 lambda: k.delete("l", 5), lambda: k.insert("l", 2, 0)):
        with pytest.raises(NotFound, match="out of range"):
            call()
    for call in (lambda: k.get("l", "0"), lambda: k.set("l", 1.0, 0),
                 lambda: k.query("l", None)):
        with pytest.raises(InvalidArgument):
            call()
    assert [Record(key=0, value="only")] == k.query("l")


def test_empty_pops_raise_empty(k: Kernel) -> None:
    """pop_front and pop_back on an empty list raise Empty, naming the list."""
    with pytest.raises(Empty, match="pop_front on 'l'"):
        k.pop_front("l")
    with pytest.raises(Empty):
        k.pop_back("l")


def test_map_rules(k: Kernel) -> None:
    """Map keys are strings kept in order; insert refuses a present key; get by position
    answers with the real key."""
    for key in "cab":
        k.set("m", key, key.upper())
    with pytest.raises(AlreadyExists):
        k.insert("m", "a", 0)
    with pytest.raises(InvalidArgument, match="must be a str"):
        k.set("m", 1, "x")
    assert ["a", "b", "c"] == k.keys("m")
    assert Record(key="c", value="C") == k.get("m", -1)
    assert ["b", "c"] == [r.key for r in k.query("m", 1)]
    with pytest.raises(NotFound):
        k.get("m", "zz")
    with pytest.raises(NotFound):
        k.delete("m", "zz")
    assert "A" == k.get("m", "a").value


def test_kinds_are_fixed(k: Kernel) -> None:
    """A name keeps its kind; list operations on a map raise WrongKind and vice versa."""
    assert Kind.LIST == k.create("l", "volatile_list")
    with pytest.raises(WrongKind, match="it is a volatile_list"):
        k.create("l", Kind.MAP)
    with pytest.raises(WrongKind, match="push_back"):
        k.push_back("m", 1)
    with pytest.raises(WrongKind, match="keys"):
        k.keys("l")
    with pytest.raises(NotFound):
        k.push_back("nope", 1)
    with pytest.raises(InvalidArgument):
        k.create("x", "volatile_vector")
    with pytest.raises(InvalidArgument):
        k.create("", Kind.LIST)
    assert {"l": Kind.LIST, "m": Kind.MAP} == k.containers()


def test_properties(k: Kernel) -> None:
    """Properties are strings; a missing one is NotFound."""
    k.set_property("l", "destination", "results")
    assert "results" == k.get_property("l", "destination")
    with pytest.raises(NotFound):
        k.get_property("l", "other")
    with pytest.raises(InvalidArgument):
        k.set_property("l", "n", 1)  # type: ignore[arg-type]


def test_timeout_cancels_with_empty_and_leaves_no_trace(k: Kernel) -> None:
    """A timed-out waiter is cancelled with Empty at its deadline, and a later push
    stays in the list."""
    s = k.open_session()
    waiting = k.wait_pop_next(s, "l", timeout=2.0, now=10.0)
    assert isinstance(waiting, Waiting)
    assert 12.0 == k.next_deadline()
    k.advance(11.9)
    assert () == tuple(k.take_effects())
    k.advance(12.0)
    (effect,) = k.take_effects()
    assert isinstance(effect, Cancelled) and isinstance(effect.error, Empty)
    assert (s, waiting.waiter) == (effect.session, effect.waiter)
    assert k.next_deadline() is None
    k.push_back("l", "kept")
    assert () == tuple(k.take_effects())
    assert 1 == k.count("l")
    k._check()


def test_timers_fire_in_deadline_then_arming_order(k: Kernel) -> None:
    """Equal deadlines fire in the order they were armed."""
    s = k.open_session()
    ids = [k.wait_pop_next(s, "l", timeout=t, now=0.0) for t in (2.0, 1.0, 2.0)]
    k.advance(5.0)
    fired = [e.waiter for e in k.take_effects()]
    assert [ids[1].waiter, ids[0].waiter, ids[2].waiter] == fired  # type: ignore[union-attr]


def test_time_never_goes_back(k: Kernel) -> None:
    """A command with an earlier now than already seen is timed from the later one."""
    s = k.open_session()
    k.advance(100.0)
    k.wait_pop_next(s, "l", timeout=1.0, now=5.0)
    assert 101.0 == k.next_deadline()


def test_zero_timeout_never_parks(k: Kernel) -> None:
    """timeout=0 raises Empty at once when there is nothing to pop."""
    s = k.open_session()
    with pytest.raises(Empty):
        k.wait_pop_next(s, "l", timeout=0)
    with pytest.raises(Empty):
        k.wait_pop_key(s, "m", "x", timeout=0)
    assert 0 == k.statistics("l").waiters + k.statistics("m").waiters


def test_bad_timeouts_are_rejected(k: Kernel) -> None:
    """Negative, NaN and non-numeric timeouts raise InvalidArgument and park nothing."""
    s = k.open_session()
    for bad in (-1, float("nan"), "1", True):
        with pytest.raises(InvalidArgument, match="timeout"):
            k.wait_pop_next(s, "l", timeout=bad)  # type: ignore[arg-type]
    assert 0 == k.statistics("l").waiters


def test_close_session_cancels_waiters_silently(k: Kernel) -> None:
    """Closing a session withdraws its waiters and subscriptions; the next push goes
    to the next waiter in line, and nobody hears of the closed one."""
    a, b = k.open_session(), k.open_session()
    k.subscribe(a, "l")
    k.wait_pop_next(a, "l", timeout=5.0)
    wb = k.wait_pop_next(b, "l")
    k.wait_pop_key(a, "m", "x")
    k.close_session(a)
    k._check()
    assert k.next_deadline() is None
    k.push_back("l", "v")
    assert [Delivered(session=b, waiter=wb.waiter,  # type: ignore[union-attr]
                      event=Event(container="l", name="wnp_next", key=0, value="v"))
            ] == k.take_effects()
    assert 0 == k.statistics("m").waiters
    with pytest.raises(NotFound):
        k.close_session(a)
    with pytest.raises(NotFound):
        k.wait_pop_next(a, "l")


def test_cancel_wait(k: Kernel) -> None:
    """cancel_wait withdraws a parked waiter once; afterwards it reports False."""
    s = k.open_session()
    waiting = k.wait_pop_next(s, "l", timeout=3.0)
    assert isinstance(waiting, Waiting)
    assert k.cancel_wait(s, waiting.waiter)
    assert not k.cancel_wait(s, waiting.waiter)
    assert k.next_deadline() is None
    k._check()


def test_delete_container_tells_waiters_and_subscribers(k: Kernel) -> None:
    """Deleting a container cancels its waiters with NotFound and ends subscriptions."""
    s = k.open_session()
    sub = k.subscribe(s, "m")
    waiting = k.wait_pop_key(s, "m", "x")
    k.delete_container("m")
    effects = k.take_effects()
    assert isinstance(effects[0], Cancelled) and isinstance(effects[0].error, NotFound)
    assert waiting.waiter == effects[0].waiter  # type: ignore[union-attr]
    assert Unsubscribed(session=s, subscription=sub, reason="container 'm' was deleted"
                        ) == effects[1]
    with pytest.raises(NotFound):
        k.count("m")
    k.create("m", Kind.LIST)  # the name is free for any kind again
    k._check()


def test_subscribe_with_snapshot(k: Kernel) -> None:
    """start= sends the records from that position first, then live events."""
    s = k.open_session()
    for v in "abc":
        k.push_back("l", v)
    k.subscribe(s, "l", start=-2)
    k.push_back("l", "d")
    assert [("push_back", 1, "b"), ("push_back", 2, "c"), ("push_back", 3, "d")
            ] == events(k)
    k.set("m", "y", 2)
    k.set("m", "x", 1)
    k.subscribe(s, "m", start=0)
    assert [("set", "x", 1), ("set", "y", 2)] == events(k)


def test_unsubscribe(k: Kernel) -> None:
    """After unsubscribe no events arrive; unsubscribing twice is NotFound."""
    s = k.open_session()
    sub = k.subscribe(s, "l")
    k.unsubscribe(s, sub)
    k.push_back("l", 1)
    assert () == tuple(k.take_effects())
    with pytest.raises(NotFound):
        k.unsubscribe(s, sub)


def test_rejected_commands_change_nothing(k: Kernel) -> None:
    """Every failing command leaves the kernel exactly as it was."""
    s = k.open_session()
    k.push_back("l", 1)
    k.set("m", "a", 1)
    k.subscribe(s, "l")
    k.wait_pop_key(s, "m", "b", timeout=4.0)
    before = copy.deepcopy(k)
    failing = [
        lambda: k.set("l", 3, 0), lambda: k.insert("m", "a", 2), lambda: k.set("m", 3, 0),
        lambda: k.wait_pop_next(s, "m"), lambda: k.wait_pop_next(99, "l"),
        lambda: k.wait_pop_key(s, "m", "b", timeout=-1), lambda: k.subscribe(99, "l"),
        lambda: k.subscribe(s, "l", start="x"), lambda: k.create("m", Kind.LIST),
        lambda: k.pop_front("m"), lambda: k.unsubscribe(s, 12345),
        lambda: k.wait_pop_key(99, "m", "new"),
    ]
    for call in failing:
        with pytest.raises(CorralError):
            call()
        assert fingerprint(before) == fingerprint(k)
    k._check()
