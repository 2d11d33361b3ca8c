"""Shared fixtures."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from corral.adapters.client import Client, connect
from corral.adapters.threads import Corral
from corral.transports.background import background_server

# No test may depend on how fast the machine is: hypothesis's deadline and its check
# that inputs are generated quickly are timing assertions, and CI machines are shared.
settings.register_profile("corral", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("corral")

# A corral server on 127.0.0.1, TCP and ZeroMQ on ephemeral ports, on a thread.
serving = background_server


@contextmanager
def server_thread(**server: Any) -> Iterator[int]:
    """``serving()``, yielding just the TCP port."""
    with serving(**server) as urls:
        yield urls.port


@pytest.fixture(params=["embedded", "remote", "zmq"])
def corral(request: pytest.FixtureRequest) -> Iterator[Corral]:
    """The thread facade, embedded or connected to a server over TCP or ZeroMQ: one
    surface, every way."""
    if request.param == "embedded":
        with Corral() as c:
            yield c
        return
    with serving() as urls, connect(getattr(urls, "tcp" if request.param == "remote"
                                            else "zmq")) as c:
        yield c


def is_remote(corral: Any) -> bool:
    return isinstance(corral, Client)


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

