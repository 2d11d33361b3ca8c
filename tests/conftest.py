"""Shared fixtures."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
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


def wait_until(predicate: Callable[[], bool], limit: float = 10.0,
               said: Callable[[], object] = lambda: "condition not reached") -> None:
    """Block until ``predicate()`` holds, for tests that must order real threads or
    processes.

    Bounded: fails the test after ``limit`` seconds instead of hanging, with ``said()``
    as the failure's message (what was seen meanwhile).
    """
    give_up = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > give_up:
            raise AssertionError(said())
        time.sleep(0.001)


def start(target: Any, *args: Any) -> threading.Thread:
    """Start a daemon thread running ``target(*args)``."""
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread



def redis_answers(path: Path) -> bool:
    """Whether a redis-server on unix socket ``path`` answers PING (not while it loads
    its AOF). Raw bytes, so that no client's retry policy adds its backoff."""
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(1.0)
            sock.connect(str(path))
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A redis-server of the tests' own on ``directory/r.sock`` (``--port 0``: no TCP
    port at all), without snapshots, with ``options``; ``query`` goes into every URL
    of it. It can be killed, frozen, stopped and started again on the same directory.
    Where redis-server is missing the test fails, never skips (apt-get install
    redis-server; .ci/run does)."""

    def __init__(self, directory: Path, *options: str, **query: str) -> None:
        binary = shutil.which("redis-server") or shutil.which("valkey-server")
        if binary is None:
            pytest.fail("redis-server is not installed: apt-get install redis-server")
        self.socket = directory / "r.sock"
        self.argv = [binary, "--port", "0", "--unixsocket", str(self.socket),
                     "--unixsocketperm", "700", "--save", "", "--dir", str(directory),
                     "--logfile", str(directory / "redis.log"), *options]
        self.query = query
        self.process: subprocess.Popen[bytes] | None = None
        self.frozen = False

    def start(self) -> RedisServer:
        process = self.process = subprocess.Popen(
            self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: process.poll() is not None or redis_answers(self.socket),
                   limit=20)
        assert process.poll() is None, f"redis-server exited: {self.argv}"
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last AOF write, as a crash."""
        assert self.process is not None
        self.thaw()
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM, which is SHUTDOWN: clients disconnected, the AOF fsynced (and no
        redis-py retrying the connection SHUTDOWN closes, seconds of backoff)."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        self.thaw()
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def restart(self, down: float) -> None:
        """Stop, stay down ``down`` seconds, start again on the same directory."""
        self.stop()
        time.sleep(down)
        self.start()

    def freeze(self) -> None:
        """SIGSTOP: connections stay open, nothing is answered."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        if self.frozen and self.process is not None:
            self.process.send_signal(signal.SIGCONT)
            self.frozen = False

    def url(self, prefix: str, **query: str) -> str:
        fields = "".join(f"&{key}={value}" for key, value in (self.query | query).items())
        return f"unix://{self.socket}?prefix={prefix}{fields}"

    def client(self) -> Any:
        import redis

        return redis.Redis(unix_socket_path=str(self.socket))


@contextmanager
def running_redis(directory: Path, *options: str, **query: str) -> Iterator[RedisServer]:
    server = RedisServer(directory, *options, **query)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A client of a redis-server of the tests' own, on a unix socket in a temp dir (no
    TCP port at all), without persistence; each test keys its data under a prefix of
    its own."""
    with running_redis(tmp_path_factory.mktemp("redis"), "--appendonly", "no") as server:
        client = server.client()
        yield client
        client.close()


_prefixes = itertools.count()


@pytest.fixture
def prefix() -> str:
    """A key prefix of the test's own, so that tests can share one redis-server."""
    return f"p{os.getpid()}x{next(_prefixes)}"


@pytest.fixture
def url(redis_server: Any, prefix: str) -> str:
    """The tests' redis-server as a ``unix://`` URL, keys under the test's prefix."""
    return f"unix://{redis_server.connection_pool.connection_kwargs['path']}?prefix={prefix}"
