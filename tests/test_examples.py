"""Each example runs as a user would run it, and checks itself: ``all`` on its
own, on a corral server and, unchanged but for ``--url``, on Redis; and role by role as
its docstring tells, against ``corral serve``, in every start order the docstring
allows (each role started only once the one before says it is waiting)."""

from __future__ import annotations

import contextlib
import itertools
import os
import pathlib
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pytest
from conftest import wait_until

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
CORRAL = pathlib.Path(sys.executable).with_name("corral")  # the installed command

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


def example(name: str, *args: str) -> list[str]:
    """The command line of an example's role."""
    return [sys.executable, str(EXAMPLES / name), *args]


class Process:
    """A process started as in a terminal of its own; its output (stdout and stderr)
    goes to a file, read while it runs."""

    def __init__(self, argv: list[str], log: pathlib.Path) -> None:
        self.log = log
        with log.open("w") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def output(self) -> str:
        return self.log.read_text()

    def says(self, pattern: str) -> re.Match[str]:
        """Wait, a minute at most, until its output matches ``pattern``; fails at once
        if it exits without."""
        def seen() -> bool:
            ended = self.proc.poll() is not None  # before reading: no output after it
            return bool(re.search(pattern, self.output(), re.M)) or ended

        wait_until(seen, 60, said=lambda: (pattern, self.output()))
        match = re.search(pattern, self.output(), re.M)
        assert match, (pattern, self.output())
        return match

    def ends(self) -> str:
        """Wait, two minutes at most, for it to exit 0; its output."""
        assert 0 == self.proc.wait(120), self.output()
        return self.output()

    def interrupt(self) -> None:
        """Ctrl-C, for a role that runs until stopped (``ends()`` then says it exited
        0)."""
        self.proc.send_signal(signal.SIGINT)

    def kill(self) -> None:
        """It and whatever it started are gone."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


Launch = Callable[[list[str]], Process]


@contextlib.contextmanager
def processes(directory: pathlib.Path) -> Iterator[Launch]:
    """``launch(argv)`` starts a ``Process``; every one is killed on exit."""
    started: list[Process] = []

    def launch(argv: list[str]) -> Process:
        started.append(Process(argv, directory / f"process-{len(started)}.log"))
        return started[-1]

    try:
        yield launch
    finally:
        for process in started:
            process.kill()


@pytest.fixture
def launch(tmp_path: pathlib.Path) -> Iterator[Launch]:
    with processes(tmp_path) as launch:
        yield launch


class Served(NamedTuple):
    tcp: str  # corral://127.0.0.1:port
    zmq: str  # zmq+tcp://127.0.0.1:port


def corral_serve(launch: Launch) -> Served:
    """``corral serve --zmq ...``, as the docs start it but on free ports, once it
    listens."""
    serve = launch([str(CORRAL), "serve", "--port", "0", "--zmq", "tcp://127.0.0.1:0"])
    zmq = serve.says(r"listening on (tcp://127\.0\.0\.1:\d+) \(ZeroMQ\)").group(1)
    tcp = serve.says(r"listening on (127\.0\.0\.1:\d+)$").group(1)
    return Served(f"corral://{tcp}", f"zmq+{zmq}")


@pytest.fixture
def server(launch: Launch) -> Served:
    return corral_serve(launch)


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
def url(request: pytest.FixtureRequest) -> str:
    """Where ``--url`` points: ``corral serve``, or the tests' Redis."""
    if request.param == "redis":
        return redis_url(request.getfixturevalue("redis_server"))
    return str(request.getfixturevalue("server").tcp)


def by_hand(launch: Launch, order: str,
            waiting: list[tuple[list[str], str]], asking: tuple[list[str], str]
            ) -> tuple[str, list[str]]:
    """Start roles that run until stopped (``waiting``) and one that ends (``asking``),
    each a command line and what it prints once it waits, in the ``documented`` order
    or ``reversed``; each starts once the one before it waits. The ending role's
    output, then the others' after Ctrl-C."""
    if order == "documented":
        background = [launch(argv) for argv, _ in waiting]
        for process, (_, says) in zip(background, waiting, strict=True):
            process.says(says)
        foreground = launch(asking[0])
    else:
        foreground = launch(asking[0])
        foreground.says(asking[1])
        background = [launch(argv) for argv, _ in waiting]
    out = foreground.ends()
    for process, (_, says) in zip(background, waiting, strict=True):
        process.says(says)  # up, not still starting, when Ctrl-C comes
        process.interrupt()
    return out, [process.ends() for process in background]


ORDERS = pytest.mark.parametrize("order", ["documented", "reversed"])


def test_tio_factorial_cluster(where: list[str]) -> None:
    """A producer and four processor processes, every item processed exactly once."""
    out = run("tio_factorial.py", "all", "--items", "1000", "--processors", "4", *where)
    assert "every item processed exactly once" in out
    assert 4 == out.count(" factorials")  # four processor processes, each did some


@ORDERS
def test_tio_factorial_by_hand(launch: Launch, server: Served,
                               order: str) -> None:
    """Processors, then the producer; or the producer, then processors, which read the
    destination property once the first item comes."""
    processor = example("tio_factorial.py", "processor", "--url", server.tcp)
    out, processors = by_hand(
        launch, order, [(processor, "waiting for work")] * 2,
        (example("tio_factorial.py", "producer", "--items", "200", "--url", server.tcp),
         "now waiting for results"))
    assert "every item processed exactly once" in out
    did = re.findall(r"^(processor-\d+): \d+ factorials$", out, re.M)
    assert (2 if order == "documented" else 1) <= len(did)  # reversed: one may do all
    ours = re.findall(r"^(processor-\d+): waiting", "".join(processors), re.M)
    assert set(did) <= set(ours)


@pytest.mark.parametrize("where", ["tcp", "zmq", "redis"], indirect=True)
def test_alma_fibonacci_four_executors_eight_clients(where: list[str]) -> None:
    """Eight clients' calls, each answered by one of four executors."""
    out = run("alma_fibonacci.py", "all", "--base", "16", *where)
    assert "all clients answered" in out
    assert 8 == out.count(" [*] calling fib on")
    assert [f"fib({n}) = " for n in range(16, 24)] == sorted(
        set(re.findall(r"fib\(\d+\) = ", out)), key=lambda s: int(s[4:-4]))


@ORDERS
def test_alma_fibonacci_by_hand(launch: Launch, server: Served,
                                order: str) -> None:
    """Executors, then a client; or a client, whose request waits for an executor."""
    out, executors = by_hand(
        launch, order,
        [(example("alma_fibonacci.py", "executor", "--url", server.tcp), "claiming from")] * 2,
        (example("alma_fibonacci.py", "client", "20", "--url", server.tcp),
         r"requesting fib\(20\)"))
    assert "fib(20) = 6765" in out
    assert 1 == sum(" [*] calling fib on 20 " in executor for executor in executors)


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


@ORDERS
def test_powerhose_pool_and_master_by_hand(launch: Launch,
                                           server: Served, order: str) -> None:
    """A pool, then the master; or the master, which waits for a worker to ask. Over
    ZeroMQ, as the docstring runs it."""
    out, _ = by_hand(
        launch, order,
        [(example("powerhose_square.py", "workers", "--workers", "2", "--url", server.zmq),
          "claiming from")],
        (example("powerhose_square.py", "master", "--jobs", "5", "--url", server.zmq),
         "Waiting for some workers"))
    assert 5 == squares(out)


def test_thoonk_examples_embedded() -> None:
    """Every Thoonk example, on an embedded corral."""
    assert "all of Thoonk's examples ran" in run("thoonk_feeds.py")


def test_thoonk_examples_all() -> None:
    """Every Thoonk example, with ``all``: on a server of its own."""
    assert "all of Thoonk's examples ran" in run("thoonk_feeds.py", "all")


def test_thoonk_examples_remote(url: str) -> None:
    """Every Thoonk example, through ``--url``."""
    assert "all of Thoonk's examples ran" in run("thoonk_feeds.py", "--url", url)


def test_ppyqueue_master_worker_and_push_task(where: list[str]) -> None:
    """Two workers run three pushed tasks."""
    out = run("ppyqueue_tasks.py", "all", *where)
    assert "add -> 5" in out and "every task ran" in out


@ORDERS
def test_ppyqueue_by_hand(launch: Launch, order: str) -> None:
    """The master, then a worker and a push with --wait, in either order."""
    master = launch(example("ppyqueue_tasks.py", "master", "--url", "corral://127.0.0.1:0"))
    url = "corral://" + master.says(r"listening on (127\.0\.0\.1:\d+)$").group(1)
    out, _ = by_hand(
        launch, order,
        [(example("ppyqueue_tasks.py", "worker", "--url", url), "claiming from")],
        (example("ppyqueue_tasks.py", "push", "add", "1.5", "2", "--wait", "--url", url),
         r"pushed add\(1\.5, 2\) as job"))
    assert "add -> 3.5" in out
    master.interrupt()
    master.ends()
