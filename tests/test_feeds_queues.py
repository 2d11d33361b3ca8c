"""Feeds, sorted feeds and queues in the kernel: Thoonk's asserted behaviours, and the
bugs of Thoonk's that corral does not copy."""

from __future__ import annotations

from typing import Any

import pytest

from corral.kernel import (
    Cancelled,
    Delivered,
    Empty,
    InvalidArgument,
    Kernel,
    Kind,
    LimitExceeded,
    NotFound,
    Notified,
    Record,
    Waiting,
    WrongKind,
)


@pytest.fixture
def k() -> Kernel:
    return Kernel()


def events(kernel: Kernel) -> list[tuple[str, Any, Any]]:
    return [(e.event.name, e.event.key, e.event.value) for e in kernel.take_effects()
            if isinstance(e, Notified)]


def test_feed_orders_by_publish_and_edits_move_to_the_end(k: Kernel) -> None:
    """Items come oldest first; republishing an id edits it and moves it last."""
    k.create("f", Kind.FEED)
    s = k.open_session()
    k.subscribe(s, "f")
    assert "1" == k.publish("f", "one")
    k.publish("f", "two", id="b")
    k.publish("f", "ONE", id="1")
    assert ["b", "1"] == k.ids("f")
    assert [("b", "two"), ("1", "ONE")] == k.items("f")
    assert Record("1", "ONE") == k.get("f", "1")
    assert [("publish", "1", "one"), ("publish", "b", "two"), ("edit", "1", "ONE")
            ] == events(k)


def test_feed_generated_ids_never_collide(k: Kernel) -> None:
    """A fresh id skips ids that were given by hand."""
    k.create("f", Kind.FEED)
    k.publish("f", "x", id="2")
    assert ["1", "3"] == [k.publish("f", "a"), k.publish("f", "b")]
    assert 3 == k.count("f")


def test_feed_trims_oldest_first_on_every_publish(k: Kernel) -> None:
    """max_length 5: publishing 6 retracts 1 first; editing 4 then leaves [3, 5, 6, 4]."""
    k.create("f", Kind.FEED, max_length=5)
    s = k.open_session()
    for i in range(1, 6):
        k.publish("f", f"item {i}", id=str(i))
    k.subscribe(s, "f")
    k.publish("f", "item 6", id="6")
    assert [("retract", "1", "item 1"), ("publish", "6", "item 6")] == events(k)
    assert ["2", "3", "4", "5", "6"] == k.ids("f")
    k.publish("f", "item 4 edited", id="4")
    assert ["3", "5", "6", "4"] == k.ids("f")
    assert [("retract", "2", "item 2"), ("edit", "4", "item 4 edited")] == events(k)


def test_feed_edit_of_an_item_in_the_trim_set_keeps_it(k: Kernel) -> None:
    """Editing the oldest item of a full feed keeps it (and moves it last)."""
    k.create("f", Kind.FEED, max_length=3)
    for i in "abc":
        k.publish("f", i, id=i)
    k.publish("f", "A", id="a")
    assert ["b", "c", "a"] == k.ids("f")


def test_feed_errors(k: Kernel) -> None:
    """Retracting or getting a missing id is NotFound (Thoonk ignored it); ids are
    non-empty strings; max_length is at least 1; list operations are WrongKind."""
    k.create("f", Kind.FEED)
    with pytest.raises(NotFound):
        k.retract("f", "nope")
    with pytest.raises(NotFound):
        k.get("f", "nope")
    with pytest.raises(InvalidArgument):
        k.publish("f", "x", id=7)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        k.create("g", Kind.FEED, max_length=0)
    with pytest.raises(WrongKind):
        k.push_back("f", 1)
    with pytest.raises(WrongKind):
        k.set("f", "k", 1)


def test_options_must_agree(k: Kernel) -> None:
    """Re-creating with other options is refused; options a kind lacks are refused."""
    k.create("f", Kind.FEED, max_length=5)
    k.create("f", Kind.FEED)
    k.create("f", Kind.FEED, max_length=5)
    assert {"max_length": 5} == k.options("f")
    with pytest.raises(InvalidArgument, match="exists with"):
        k.create("f", Kind.FEED, max_length=6)
    with pytest.raises(InvalidArgument, match="no option lease"):
        k.create("f", Kind.FEED, lease=3)
    with pytest.raises(InvalidArgument, match="no option max_length"):
        k.create("l", Kind.LIST, max_length=3)


def test_sorted_feed_ids_count_up_and_order_is_manual(k: Kernel) -> None:
    """Ids are 1, 2, 3 ...; inserts and moves place items; events say where."""
    k.create("s", Kind.SORTED_FEED)
    s = k.open_session()
    k.subscribe(s, "s")
    assert [1, 2, 3] == [k.append("s", "a"), k.append("s", "b"), k.prepend("s", "z")]
    assert 4 == k.insert_before("s", 2, "before b")
    assert 5 == k.insert_after("s", 2, "after b")
    assert [3, 1, 4, 2, 5] == k.ids("s")
    k.move_before("s", 3, 5)
    k.move_after("s", 2, 3)
    k.move_first("s", 2)
    k.move_last("s", 4)
    assert [2, 5, 1, 3, 4] == k.ids("s")
    k.edit("s", 1, "A")
    k.retract("s", 5)
    assert [(2, "b"), (1, "A"), (3, "z"), (4, "before b")] == k.items("s")
    got = events(k)
    assert [("publish", 1, "a"), ("position", 1, ":end"), ("publish", 2, "b"),
            ("position", 2, ":end"), ("publish", 3, "z"), ("position", 3, "begin:"),
            ("publish", 4, "before b"), ("position", 4, ":2"), ("publish", 5, "after b"),
            ("position", 5, "2:"), ("position", 5, ":3"), ("position", 3, "2:"),
            ("position", 2, "begin:"), ("position", 4, ":end"), ("edit", 1, "A"),
            ("retract", 5, "after b")] == got


def test_sorted_feed_refuses_what_thoonk_lost_or_ignored(k: Kernel) -> None:
    """Moving relative to itself is refused and loses nothing; a missing id is NotFound,
    and a failed insert spends no id."""
    k.create("s", Kind.SORTED_FEED)
    k.append("s", "a")
    k.append("s", "b")
    with pytest.raises(InvalidArgument, match="itself"):
        k.move_before("s", 2, 2)
    with pytest.raises(NotFound):
        k.insert_after("s", 9, "x")
    for call in (lambda: k.move_after("s", 9, 1), lambda: k.move_first("s", 9),
                 lambda: k.edit("s", 9, "x"), lambda: k.retract("s", 9),
                 lambda: k.move_last("s", True), lambda: k.edit("s", [1], "x")):
        with pytest.raises(NotFound):
            call()
    assert [1, 2] == k.ids("s")
    assert 3 == k.append("s", "c")
    k._check()


def test_queue_is_fifo_within_priority_highest_first(k: Kernel) -> None:
    """Gets return items (not ids): higher priority first, FIFO within one."""
    k.create("q", Kind.QUEUE)
    s = k.open_session()
    for item, priority in (("10", 0), ("20", 0), ("urgent", 5), ("30", 0), ("soon", 5)):
        k.queue_put(s, "q", item, priority=priority)
    got = [k.queue_get(s, "q")[0] for _ in range(5)]  # type: ignore[index]
    assert ["urgent", "soon", "10", "20", "30"] == got
    with pytest.raises(Empty):
        k.queue_get(s, "q", timeout=0)


def test_queue_get_waits_and_times_out(k: Kernel) -> None:
    """A getter parks, FIFO; a put hands over directly; a timeout cancels with Empty."""
    k.create("q", Kind.QUEUE)
    a, b = k.open_session(), k.open_session()
    wa = k.queue_get(a, "q")
    wb = k.queue_get(b, "q", timeout=1.0, now=0.0)
    assert isinstance(wa, Waiting) and isinstance(wb, Waiting)
    k.queue_put(a, "q", "x")
    [delivered] = k.take_effects()
    assert isinstance(delivered, Delivered) and (a, "x") == (delivered.session,
                                                             delivered.event.value)
    k.advance(1.0)
    [cancelled] = k.take_effects()
    assert isinstance(cancelled, Cancelled) and isinstance(cancelled.error, Empty)
    assert 0 == k.count("q")


def test_bounded_queue_refuses_or_parks_putters(k: Kernel) -> None:
    """A full queue raises LimitExceeded, or parks the put until a get makes room; a
    parked put that times out fails with LimitExceeded."""
    k.create("q", Kind.QUEUE, max_length=2)
    s = k.open_session()
    k.queue_put(s, "q", 1)
    k.queue_put(s, "q", 2)
    with pytest.raises(LimitExceeded):
        k.queue_put(s, "q", 3)
    parked = k.queue_put(s, "q", 3, timeout=None)
    timed = k.queue_put(s, "q", 4, timeout=2.0, now=0.0)
    assert isinstance(parked, Waiting) and isinstance(timed, Waiting)
    assert (1, None) == k.queue_get(s, "q")
    [admitted] = k.take_effects()
    assert isinstance(admitted, Delivered) and parked.waiter == admitted.waiter
    k.advance(5.0)
    [refused] = k.take_effects()
    assert isinstance(refused, Cancelled) and isinstance(refused.error, LimitExceeded)
    assert [2, 3] == [k.queue_get(s, "q")[0] for _ in range(2)]  # type: ignore[index]
    k._check()


def test_queue_snapshot_and_events(k: Kernel) -> None:
    """Subscribers see put and get, keyed by priority; start=0 replays queued items."""
    k.create("q", Kind.QUEUE)
    s = k.open_session()
    k.queue_put(s, "q", "a", priority=1)
    k.subscribe(s, "q", start=0)
    k.queue_get(s, "q")
    assert [("put", 1, "a"), ("get", 1, "a")] == events(k)
