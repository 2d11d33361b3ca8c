"""Each seed's example runs as a user would run it, and checks itself: on a corral server
and, unchanged but for ``--url``, on Redis."""

from __future__ import annotations

import contextlib
import itertools
import os
import pathlib
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import serving

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"

_prefixes = itertools.count()


def run(*argv: str) -> str:
    """Run an example to its end, in two minutes at most; its output. Whatever processes
    it started are gone afterwards, even when it timed out."""
    with subprocess.Popen([sys.executable, str(EXAMPLES / argv[0]), *argv[1:]],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=120)
        finally:
            with contextlib.suppress(ProcessLookupError):  # none left: all went well
                os.killpg(proc.pid, signal.SIGKILL)
    assert 0 == proc.returncode, out + err
    return out


def redis_url(redis_server: Any) -> str:
    """The tests' Redis, on its unix socket, under a key prefix of this test's own."""
    socket = redis_server.connection_pool.connection_kwargs["path"]
    return f"unix://{socket}?prefix=example{os.getpid()}x{next(_prefixes)}"


@pytest.fixture(params=["tcp", "redis"])
def where(request: pytest.FixtureRequest) -> list[str]:
    """An all-in-one run's options: none (it starts a server of its own and talks TCP),
    ``--zmq`` (the same over ZeroMQ), or ``--url`` of the tests' Redis."""
    if request.param == "redis":
        return ["--url", redis_url(request.getfixturevalue("redis_server"))]
    return ["--zmq"] if request.param == "zmq" else []


@pytest.fixture(params=["server", "redis"])
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The corral that an example's roles, run by hand, share: a server, or the tests'
    Redis."""
    if request.param == "redis":
        yield redis_url(request.getfixturevalue("redis_server"))
        return
    with serving() as urls:
        yield urls.tcp


def test_tio_factorial_cluster(where: list[str]) -> None:
    """A producer and four processor processes, every item processed exactly once."""
    out = run("tio_factorial.py", "all", "--items", "1000", "--processors", "4", *where)
    assert "every item processed exactly once" in out
    assert 4 == out.count(" factorials")  # four processor processes, each did some


@pytest.mark.parametrize("where", ["tcp", "zmq", "redis"], indirect=True)
def test_alma_fibonacci_four_executors_eight_clients(where: list[str]) -> None:
    """Eight clients' calls, each answered by one of four executors."""
    out = run("alma_fibonacci.py", "all", "--base", "16", *where)
    assert "all clients answered" in out
    assert 8 == out.count(" [*] calling fib on")
    assert [f"fib({n}) = " for n in range(16, 24)] == sorted(
        set(re.findall(r"fib\(\d+\) = ", out)), key=lambda s: int(s[4:-4]))


def squares(out: str) -> int:
    """How many ``n^2 = result`` lines the master printed, each checked."""
    lines = [line for line in out.splitlines() if "^2 = " in line]
    for line in lines:
        number, result = line.split("^2 = ")
        assert int(number) ** 2 == int(result)
    return len(lines)


def test_powerhose_master_and_a_pool_of_five(where: list[str]) -> None:
    """The master's twenty jobs, squared by a pool of five worker processes."""
    out = run("powerhose_square.py", "all", "--jobs", "20", *where)
    assert 20 == squares(out)
    assert "5 workers running" in out


def test_powerhose_pool_and_master_by_hand(url: str) -> None:
    """The documented manual steps: the pool's workers get its URL (and prefix)."""
    pool = subprocess.Popen([sys.executable, str(EXAMPLES / "powerhose_square.py"),
                             "workers", "--workers", "2", "--url", url])
    try:
        out = run("powerhose_square.py", "master", "--jobs", "5", "--url", url)
    finally:
        pool.terminate()
        assert 0 == pool.wait(60)
    assert 5 == squares(out)


def test_thoonk_examples_embedded() -> None:
    """Every Thoonk example, on an embedded corral."""
    assert "all of Thoonk's examples ran" in run("thoonk_feeds.py")


def test_thoonk_examples_remote(url: str) -> None:
    """Every Thoonk example, through ``--url``."""
    assert "all of Thoonk's examples ran" in run("thoonk_feeds.py", "--url", url)


def test_ppyqueue_master_worker_and_push_task(where: list[str]) -> None:
    """Two workers run three pushed tasks."""
    out = run("ppyqueue_tasks.py", "all", *where)
    assert "add -> 5" in out and "every task ran" in out


def test_ppyqueue_push_by_hand(url: str) -> None:
    """The documented manual steps: a worker, then push with --wait."""
    worker = subprocess.Popen([sys.executable, str(EXAMPLES / "ppyqueue_tasks.py"),
                               "worker", "--url", url])
    try:
        out = run("ppyqueue_tasks.py", "push", "add", "1.5", "2", "--wait", "--url", url)
    finally:
        worker.terminate()
        assert 0 == worker.wait(30)
    assert "add -> 3.5" in out
