"""The same command log in gives the same effect log out."""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
from hypothesis import given, settings

from corral.kernel import CorralError, Kernel

Command = tuple[str, tuple[Any, ...], dict[str, Any]]

SESSIONS = st.integers(1, 3)  # ids 1-3 are the sessions each replay opens first
NAMES = st.sampled_from(["l", "m"])
VALUES = st.integers(0, 9)
TIME = st.floats(0, 20, allow_nan=False)

COMMANDS: st.SearchStrategy[Command] = st.one_of(
    st.tuples(st.just("push_back"), st.tuples(NAMES, VALUES), st.just({})),
    st.tuples(st.just("push_front"), st.tuples(NAMES, VALUES), st.just({})),
    st.tuples(st.just("pop_front"), st.tuples(NAMES), st.just({})),
    st.tuples(st.just("set"), st.tuples(NAMES, st.sampled_from(["a", "b", 0]), VALUES),
              st.just({})),
    st.tuples(st.just("delete"), st.tuples(NAMES, st.sampled_from(["a", 0])), st.just({})),
    st.tuples(st.just("wait_pop_next"), st.tuples(SESSIONS, NAMES),
              st.fixed_dictionaries({"timeout": st.none() | st.floats(0, 5),
                                     "now": TIME})),
    st.tuples(st.just("wait_pop_key"), st.tuples(SESSIONS, NAMES, st.sampled_from("ab")),
              st.fixed_dictionaries({"timeout": st.none() | st.floats(0, 5),
                                     "now": TIME})),
    st.tuples(st.just("subscribe"), st.tuples(SESSIONS, NAMES),
              st.fixed_dictionaries({"start": st.none() | st.integers(-2, 2)})),
    st.tuples(st.just("cancel_wait"), st.tuples(SESSIONS, st.integers(1, 30)), st.just({})),
    st.tuples(st.just("close_session"), st.tuples(SESSIONS), st.just({})),
    st.tuples(st.just("advance"), st.tuples(TIME), st.just({})),
    st.tuples(st.just("clear"), st.tuples(NAMES), st.just({})),
)


def replay(log: list[Command]) -> list[Any]:
    """Run a command log on a fresh kernel; return each command's outcome and effects."""
    kernel = Kernel()
    for _ in range(3):
        kernel.open_session()
    kernel.create("l", "volatile_list")
    kernel.create("m", "volatile_map")
    trace: list[Any] = []
    for op, args, kwargs in log:
        try:
            outcome: Any = getattr(kernel, op)(*args, **kwargs)
        except CorralError as error:
            outcome = (type(error).__name__, str(error))
        trace.append((op, outcome, list(kernel.take_effects())))
    kernel._check()
    return trace


@settings(max_examples=200, deadline=None)
@given(st.lists(COMMANDS, max_size=60))
def test_replay_is_deterministic(log: list[Command]) -> None:
    """Two replays of one command log give equal outcome and effect logs."""
    first = replay(log)
    assert first == replay(log)
    assert len(log) == len(first)
