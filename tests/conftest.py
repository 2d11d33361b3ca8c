"""Shared fixtures."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from corral.adapters.threads import Corral


@pytest.fixture
def corral() -> Iterator[Corral]:
    """An embedded thread facade, closed after the test."""
    with Corral() as c:
        yield c


def wait_until(predicate: Callable[[], bool], limit: float = 10.0) -> None:
    """Block until ``predicate()`` holds, for tests that must order real threads.

    Bounded: fails the test after ``limit`` seconds instead of hanging.
    """
    give_up = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > give_up:
            raise AssertionError("condition not reached")
        time.sleep(0.001)


def start(target: Any, *args: Any) -> threading.Thread:
    """Start a daemon thread running ``target(*args)``."""
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread
