"""corral.kernel.testing, and the user's pipeline test in docs/testing.md."""

from __future__ import annotations

import pathlib
import re
from typing import Any

import pytest
from hypothesis import given

from corral.kernel import Cancelled, Delivered, Empty, Kernel, Kind, Waiting
from corral.kernel.testing import (
    SteppingClock,
    durations,
    effects_by_session,
    items,
    priorities,
    time_steps,
    timeouts,
)

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "testing.md"


def test_stepping_clock_fires_due_timers() -> None:
    """step() moves time, fires what came due and returns the effects, in order."""
    kernel = Kernel()
    kernel.create("l", Kind.LIST)
    clock = SteppingClock(kernel)
    a, b = kernel.open_session(), kernel.open_session()
    wa = kernel.wait_pop_next(a, "l", timeout=2.0, now=clock())
    wb = kernel.wait_pop_next(b, "l", timeout=5.0, now=clock())
    assert [] == clock.step(1.0)
    [first] = clock.step(1.0)
    assert isinstance(first, Cancelled) and isinstance(first.error, Empty)
    assert isinstance(wa, Waiting) and wa.waiter == first.waiter
    [second] = clock.run_to_next_deadline()
    assert isinstance(wb, Waiting) and wb.waiter == second.waiter
    assert 5.0 == clock.now
    assert [] == clock.run_to_next_deadline()
    with pytest.raises(ValueError):
        clock.step(-1)


def test_effects_by_session() -> None:
    """Effects are grouped by addressee, in order."""
    kernel = Kernel()
    kernel.create("l", Kind.LIST)
    a, b = kernel.open_session(), kernel.open_session()
    kernel.wait_pop_next(a, "l")
    kernel.wait_pop_next(b, "l")
    kernel.push_back("l", 1)
    kernel.push_back("l", 2)
    grouped = effects_by_session(kernel.take_effects())
    assert [a, b] == list(grouped)
    assert all(isinstance(e, Delivered) for e in grouped[a] + grouped[b])


@given(durations(), time_steps(), timeouts(), priorities(), items())
def test_strategies_draw_what_the_kernel_takes(span: float, step: float,
                                                timeout: float | None, priority: int,
                                                item: Any) -> None:
    """Every drawn value is accepted by the kernel command it is meant for."""
    kernel = Kernel()
    kernel.create("j", Kind.JOBS)
    session = kernel.open_session()
    assert span >= 0 and step >= 0 and (timeout is None or timeout >= 0)
    jid = kernel.put("j", item, priority=priority, delay=span)
    kernel.claim(session, "j", timeout=timeout or None, lease=span or None)
    kernel.advance(step)
    assert kernel.get("j", jid).value == item
    kernel._check()


def test_pipeline_example_in_the_docs_holds() -> None:
    """docs/testing.md's stateful pipeline test runs and passes."""
    (code,) = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    namespace: dict[str, Any] = {"__name__": "docs_testing"}
    exec(compile(code, str(DOC), "exec"), namespace)
    namespace["TestPhotoPipeline"]("runTest").runTest()
