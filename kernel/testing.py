"""Helpers for property-testing your own scheduling against corral's kernel.

The kernel takes time as an argument and never reads a clock, so a test owns time: a
:class:`SteppingClock` moves it only when told and fires the kernel's timers as it goes.
The strategies draw the arguments the kernel takes (durations, priorities, timeouts,
items) with values small enough that ties, expiries and retries happen often.

This module needs hypothesis (``pip install corral[test]``); the rest of
``corral.kernel`` does not.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import hypothesis.strategies as st

from ._kernel import Kernel
from ._model import Cancelled, Delivered, Effect, Notified, Unsubscribed

__all__ = [
    "SteppingClock",
    "durations",
    "effects_by_session",
    "items",
    "priorities",
    "time_steps",
    "timeouts",
]


def durations(max_value: float = 30.0, *, allow_zero: bool = True) -> st.SearchStrategy[float]:
    """Non-negative durations in half seconds, so deadlines often coincide."""
    low = 0 if allow_zero else 1
    return st.integers(low, int(max_value * 2)).map(lambda halves: halves / 2)


def time_steps(max_value: float = 30.0) -> st.SearchStrategy[float]:
    """How far a test moves its clock in one step: usually a little, sometimes a jump."""
    return st.one_of(st.sampled_from([0.0, 0.5, 1.0]), durations(max_value))


def timeouts(max_value: float = 30.0) -> st.SearchStrategy[float | None]:
    """A wait's timeout: None (forever), 0 (don't wait) or a duration."""
    return st.one_of(st.none(), st.just(0.0), durations(max_value, allow_zero=False))


def priorities() -> st.SearchStrategy[int]:
    """Job and queue priorities, few enough that equal ones are common."""
    return st.integers(-1, 2)


def items() -> st.SearchStrategy[Any]:
    """Plain JSON-able work items."""
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), st.text(max_size=8))
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
        max_leaves=6)


class SteppingClock:
    """A clock for one kernel that moves only when stepped.

    Pass ``clock.now`` as the ``now`` of every command; ``step`` moves time forward,
    fires every timer that came due and returns the effects that produced.
    """

    def __init__(self, kernel: Kernel, start: float = 0.0) -> None:
        self.kernel = kernel
        self.now = start

    def __call__(self) -> float:
        return self.now

    def step(self, seconds: float) -> list[Effect]:
        """Move ``seconds`` forward and fire what came due; returns the effects queued,
        including any left over from commands since the last take."""
        if not seconds >= 0:
            raise ValueError(f"time only moves forward, not by {seconds!r}")
        self.now += seconds
        self.kernel.advance(self.now)
        return list(self.kernel.take_effects())

    def run_to_next_deadline(self) -> list[Effect]:
        """Jump to the kernel's next deadline (if any) and fire it."""
        deadline = self.kernel.next_deadline()
        return self.step(max(0.0, deadline - self.now)) if deadline is not None else []


def effects_by_session(effects: Iterable[Effect]) -> dict[int, list[Effect]]:
    """Group effects by the session they are addressed to, keeping their order."""
    grouped: dict[int, list[Effect]] = defaultdict(list)
    for effect in effects:
        assert isinstance(effect, (Delivered, Cancelled, Notified, Unsubscribed))
        grouped[effect.session].append(effect)
    return dict(grouped)
