"""The kernel's ordered indexes against a plain model: the priority FIFO that queues and
job queues take from, and the timer heap."""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
from hypothesis import given

from corral.kernel._sorted import PriorityFifo
from corral.kernel._timers import Timers

keys = st.tuples(st.integers(-3, 3), st.integers(0, 60))


@given(st.lists(st.tuples(st.sampled_from(["set", "pop_first", "pop", "items"]), keys,
                          st.integers(0, 5), st.one_of(st.none(), st.integers(0, 8)))))
def test_the_priority_fifo_is_a_sorted_map(ops: list[tuple[str, Any, int, Any]]) -> None:
    """Whatever the order keys go in (give-backs put one behind later ones of its
    priority), it takes them smallest first, finds, removes and slices as a sorted
    map does."""
    fifo: PriorityFifo[int] = PriorityFifo()
    model: dict[tuple[int, int], int] = {}
    for n, (op, key, start, end) in enumerate(ops):
        if op == "set" and key not in model:
            fifo[key] = n
            model[key] = n
        elif op == "pop_first" and model:
            first = min(model)
            assert (first, model.pop(first)) == fifo.pop_first()
        elif op == "pop" and key in model:
            assert model.pop(key) == fifo.pop(key)
        assert sorted(model.items())[start:end] == fifo.items(start, end)
        assert (len(model), bool(model)) == (len(fifo), bool(fifo))
        assert (key in model) == (key in fifo)
        assert sorted(model) == list(fifo)


@given(st.lists(st.tuples(st.sampled_from(["add", "cancel", "pop_due"]),
                          st.integers(0, 20), st.integers(0, 50))))
def test_timers_fire_in_deadline_then_arming_order(ops: list[tuple[str, int, int]]
                                                   ) -> None:
    """Armed, cancelled (dead keys stay in the heap, then are swept) and fired in
    (deadline, arming) order, with ``first`` always the earliest armed deadline."""
    timers: Timers[int] = Timers()
    armed: dict[tuple[float, int], int] = {}
    for n, (op, deadline, pick) in enumerate(ops):
        if op == "add":
            armed[timers.add(float(deadline), n)] = n
        elif op == "cancel" and armed:
            key = sorted(armed)[pick % len(armed)]
            del armed[key]
            timers.cancel(key)
        elif op == "pop_due":
            due = sorted(k for k in armed if k[0] <= deadline)
            fired = timers.pop_due(float(deadline))
            assert (armed.pop(due[0]) if due else None) == fired
        assert (min(armed)[0] if armed else None) == timers.first
        assert sorted(armed.items()) == timers.items()
        assert len(armed) == len(timers)


def test_cancelled_timers_are_swept_from_the_heap() -> None:
    """Leases armed and cancelled on every claim leave dead keys behind; once they
    outnumber the armed ones the heap is rebuilt, so it stays within a bound."""
    timers: Timers[int] = Timers()
    keep = timers.add(0.5, -1)
    keys = [timers.add(float(n + 1), n) for n in range(1000)]
    for key in keys[:-10]:
        timers.cancel(key)
    assert len(timers._heap) <= 2 * len(timers) + 64
    assert [keep, *keys[-10:]] == [key for key, _ in timers.items()]
    assert [-1, *range(990, 1000)] == [timers.pop_due(2000.0) for _ in range(11)]
    assert (None, None) == (timers.pop_due(2000.0), timers.first)
