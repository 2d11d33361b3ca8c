"""Shared fixtures."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import attrs
import pytest
import trio

from corral.adapters.client import connect
from corral.adapters.threads import Corral
from corral.transports.remote import RemoteKernel
from corral.transports.tcp import Server, serve_tcp
from corral.transports.zeromq import serve_zmq


@attrs.frozen
class Urls:
    tcp: str  # corral://127.0.0.1:PORT
    zmq: str  # zmq+tcp://127.0.0.1:PORT
    port: int  # the TCP port


@contextmanager
def serving(zmq_options: dict[str, Any] | None = None, **server: Any) -> Iterator[Urls]:
    """A corral server on 127.0.0.1 and ephemeral ports, TCP and ZeroMQ, on a thread
    with its own trio loop; yields its URLs and stops the server afterwards.
    ``zmq_options`` go to ``serve_zmq``, the rest to ``Server``."""
    started = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        async def main() -> None:
            async with trio.open_nursery() as nursery:
                shared = Server(**server)
                listeners = await nursery.start(serve_tcp, shared, "127.0.0.1", 0)
                port = listeners[0].socket.getsockname()[1]
                endpoint = await nursery.start(partial(serve_zmq, shared, "tcp://127.0.0.1:0",
                                                       **(zmq_options or {})))
                box["urls"] = Urls(f"corral://127.0.0.1:{port}", f"zmq+{endpoint}", port)
                box["stop"] = nursery.cancel_scope.cancel
                box["token"] = trio.lowlevel.current_trio_token()
                started.set()

        trio.run(main)

    thread = threading.Thread(target=run, name="test-server", daemon=True)
    thread.start()
    assert started.wait(10), "the test server did not start"
    try:
        yield box["urls"]
    finally:
        trio.from_thread.run_sync(box["stop"], trio_token=box["token"])
        thread.join(10)


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
