"""What the network benchmarks share: ports, pinned peer processes, rates."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

PIN = ["taskset", "-c", "0"] if shutil.which("taskset") else []


def pin_self() -> None:
    """Run this process on CPU 0 too, when the peers are pinned there."""
    if PIN:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {0})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, limit: float = 10.0) -> None:
    give_up = time.monotonic() + limit
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > give_up:
                raise
            time.sleep(0.05)


@contextlib.contextmanager
def process(args: list[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A server process (pinned, when PIN is set) listening on ``port``, stopped when
    the block ends."""
    proc = subprocess.Popen(PIN + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


def rate(n: int, run: Callable[[], Any]) -> float:
    start = time.perf_counter()
    run()
    return n / (time.perf_counter() - start)


def threaded(n: int, clients: int, make: Callable[[], Callable[[int], Any]]) -> float:
    """Calls/s with ``clients`` threads, each making its own client's call n/clients
    times, all started at once."""
    calls = [make() for _ in range(clients)]
    go = threading.Barrier(clients + 1)
    per = n // clients

    def work(call: Callable[[int], Any]) -> None:
        go.wait()
        for i in range(per):
            call(i)

    threads = [threading.Thread(target=work, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    go.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    return per * clients / (time.perf_counter() - start)


def beanstalkd_cycles(args: list[str], n: int) -> dict[str, float] | str:
    """put, reserve, delete cycles/s against ``beanstalkd`` run with extra ``args``."""
    missing = beanstalkd_missing()
    if missing:
        return missing
    import greenstalk

    port = free_port()
    with process(["beanstalkd", "-l", "127.0.0.1", "-p", str(port), *args], port):
        client = greenstalk.Client(("127.0.0.1", port))

        def cycles() -> None:
            for i in range(n):
                client.put(str(i))
                client.delete(client.reserve(timeout=1))

        result = rate(n, cycles)
        client.close()
    return {"job cycles/s": result}


def beanstalkd_missing() -> str | None:
    if not shutil.which("beanstalkd"):
        return "beanstalkd not installed (apt-get install beanstalkd)"
    try:
        import greenstalk  # noqa: F401
    except ImportError:
        return "greenstalk not installed (pip install greenstalk)"
    return None


def redis_missing() -> str | None:
    if not shutil.which("redis-server"):
        return "redis-server not installed (apt-get install redis-server)"
    try:
        import redis  # noqa: F401
    except ImportError:
        return "redis-py not installed (pip install redis hiredis)"
    return None


def print_ratios(ours: dict[str, float], peers: dict[str, Any], indent: str = "") -> None:
    """One line per measure: corral's figure, the peer's and the ratio (job measures
    against beanstalkd, the rest against Redis); peers that could not run are noted."""
    for name, result in peers.items():
        if isinstance(result, str):
            print(f"{indent}(skipped {name}: {result})")
    for measure, value in ours.items():
        peer_name = "beanstalkd" if measure.startswith("job") else "redis"
        peer = peers.get(peer_name)
        line = f"{indent}{measure:<26} corral {value:>10,.0f}"
        if isinstance(peer, dict) and measure in peer:
            line += (f"   {peer_name} {peer[measure]:>10,.0f}   "
                     f"ratio {value / peer[measure]:.2f}x")
        print(line)
