"""Each seed's example runs as a user would run it, and checks itself."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest
from conftest import serving

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def run(*argv: str) -> str:
    proc = subprocess.run([sys.executable, str(EXAMPLES / argv[0]), *argv[1:]],
                          capture_output=True, text=True, timeout=120)
    assert 0 == proc.returncode, proc.stdout + proc.stderr
    return proc.stdout


def test_tio_factorial_cluster_over_tcp() -> None:
    out = run("tio_factorial.py", "all", "--items", "1000", "--processors", "4")
    assert "every item processed exactly once" in out
    assert 4 == out.count(" factorials")  # four processor processes, each did some


@pytest.mark.parametrize("transport", [[], ["--zmq"]], ids=["tcp", "zmq"])
def test_alma_fibonacci_four_executors_eight_clients(transport: list[str]) -> None:
    out = run("alma_fibonacci.py", "all", "--base", "16", *transport)
    assert "all clients answered" in out
    assert 8 == out.count(" [*] calling fib on")
    assert [f"fib({n}) = " for n in range(16, 24)] == sorted(
        set(re.findall(r"fib\(\d+\) = ", out)), key=lambda s: int(s[4:-4]))


def test_powerhose_master_and_a_pool_of_five() -> None:
    out = run("powerhose_square.py", "all", "--jobs", "20")
    squares = [line for line in out.splitlines() if "^2 = " in line]
    assert 20 == len(squares)
    for line in squares:
        number, result = line.split("^2 = ")
        assert int(number) ** 2 == int(result)
    assert "5 workers running" in out


def test_thoonk_examples_embedded_and_remote() -> None:
    assert "all of Thoonk's examples ran" in run("thoonk_feeds.py")
    with serving() as urls:
        assert "all of Thoonk's examples ran" in run("thoonk_feeds.py", "--url", urls.tcp)


def test_ppyqueue_master_worker_and_push_task() -> None:
    out = run("ppyqueue_tasks.py", "all")
    assert "add -> 5" in out and "every task ran" in out


def test_ppyqueue_push_by_hand() -> None:
    """The documented manual steps: a worker, then push with --wait."""
    with serving() as urls:
        worker = subprocess.Popen([sys.executable, str(EXAMPLES / "ppyqueue_tasks.py"),
                                   "worker", "--url", urls.tcp])
        try:
            out = run("ppyqueue_tasks.py", "push", "add", "1.5", "2", "--wait", "--url",
                      urls.tcp)
        finally:
            worker.terminate()
            assert 0 == worker.wait(30)
    assert "add -> 3.5" in out
