"""Shared fixtures."""

from __future__ import annotations

import contextlib
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



@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A redis-server of the tests' own, on a unix socket in a temp dir (no TCP port at
    all), without persistence; each test keys its data under a prefix of its own.
    Where redis-server is missing the test fails, never skips (apt-get install
    redis-server; .ci/run does)."""
    import shutil
    import subprocess

    import redis
    binary = shutil.which("redis-server") or shutil.which("valkey-server")
    if binary is None:
        pytest.fail("redis-server is not installed: apt-get install redis-server")
    directory = tmp_path_factory.mktemp("redis")
    socket = directory / "redis.sock"
    process = subprocess.Popen(
        [binary, "--port", "0", "--unixsocket", str(socket), "--unixsocketperm", "700",
         "--save", "", "--appendonly", "no", "--dir", str(directory)],
        stdout=subprocess.DEVNULL)
    client = redis.Redis(unix_socket_path=str(socket))

    def up() -> bool:
        try:
            return socket.exists() and bool(client.ping())
        except redis.ConnectionError:
            return False

    try:
        wait_until(up)
        yield client
    finally:
        with contextlib.suppress(redis.ConnectionError):  # it is gone, as asked
            client.shutdown(nosave=True)
        process.wait(10)
