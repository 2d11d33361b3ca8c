"""Shared fixtures."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import trio

from corral.adapters.client import connect
from corral.adapters.threads import Corral
from corral.transports.remote import RemoteKernel
from corral.transports.tcp import Server, serve_tcp


@contextmanager
def server_thread(**server: Any) -> Iterator[int]:
    """A corral server on 127.0.0.1 and an ephemeral port, on a thread with its own trio
    loop; yields the port and stops the server afterwards."""
    started = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        async def main() -> None:
            async with trio.open_nursery() as nursery:
                listeners = await nursery.start(serve_tcp, Server(**server), "127.0.0.1", 0)
                box["port"] = listeners[0].socket.getsockname()[1]
                box["stop"] = nursery.cancel_scope.cancel
                box["token"] = trio.lowlevel.current_trio_token()
                started.set()

        trio.run(main)

    thread = threading.Thread(target=run, name="test-server", daemon=True)
    thread.start()
    assert started.wait(10), "the test server did not start"
    try:
        yield box["port"]
    finally:
        trio.from_thread.run_sync(box["stop"], trio_token=box["token"])
        thread.join(10)


@pytest.fixture(params=["embedded", "remote"])
def corral(request: pytest.FixtureRequest) -> Iterator[Corral]:
    """The thread facade, embedded or connected to a server: one surface, both ways."""
    if request.param == "embedded":
        with Corral() as c:
            yield c
        return
    with server_thread() as port, connect(f"corral://127.0.0.1:{port}") as c:
        yield c


def is_remote(corral: Corral) -> bool:
    return isinstance(corral._kernel, RemoteKernel)


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
