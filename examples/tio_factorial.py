"""Tio's factorial cluster over TCP: a producer and processor processes.

The producer tells the processors where results go through a property of
``factorial_cluster/source``, subscribes to the destination, then pushes random ints
from 1 to 500 onto the source; each processor loops on ``wait_pop_next`` and pushes
``n!=...`` to the destination. Whoever asked first is served first, so the load
balances itself. (The original: TioAsClusterCoordinator.md in
https://github.com/rodrigostrauss/tio, with Tio's ``tioclient``.)

    python examples/tio_factorial.py all                      # everything, on its own
    corral serve &                                            # or by hand:
    python examples/tio_factorial.py processor &              # as many as you like
    python examples/tio_factorial.py producer --items 10000
    python examples/tio_factorial.py all --url redis://127.0.0.1:6379   # on Redis

By hand, start the producer and the processors in either order: a processor parks on
``wait_pop_next`` until the first item comes, and reads the property then (the producer
sets it before it pushes anything); the producer waits up to ``--timeout`` seconds for
each result. Processors run until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import subprocess
import sys
import time
from collections import Counter
from contextlib import ExitStack

from corral.adapters.client import connect
from corral.kernel import Closed
from corral.transports.background import background_server

SOURCE = "factorial_cluster/source"
DESTINATION = "factorial_cluster/destination"
STOP = "stop"  # all: one per processor it started, after the work


def producer(url: str, items: int, seed: int, timeout: float) -> bool:
    """Push the work, wait for every result; True if each item was done exactly once."""
    rng = random.Random(seed)
    work = [rng.randint(1, 500) for _ in range(items)]
    with connect(url) as tio:
        source, destination = tio.list(SOURCE), tio.list(DESTINATION)
        source.set_property("destination", DESTINATION)
        results = destination.subscribe()
        for n in work:
            source.push_back(n)
        print(f"generated {items} items, now waiting for results", flush=True)
        done: list[str] = []
        by: Counter[str] = Counter()
        for _ in range(items):
            event = results.get(timeout=timeout)
            done.append(event.value)
            by[event.metadata] += 1
    for line in done[:3]:
        print(f"  {line[:60]}{'...' if len(line) > 60 else ''}")
    for who, count in sorted(by.items()):
        print(f"{who}: {count} factorials")
    ok = Counter(done) == Counter(f"{n}!={math.factorial(n)}" for n in work)
    print("every item processed exactly once" if ok else "MISMATCH", flush=True)
    return ok


def processor(url: str) -> None:
    """Take items first come, first served, until told to stop. The destination is read
    from the source's property once the first item came, so a processor may start
    before the producer. A server restart is waited out (the client reconnects and
    logs it); an item handed over just as the connection broke is lost with it, as a
    list's items are (jobs are the at-least-once tool)."""
    me = f"processor-{os.getpid()}"
    with connect(url) as tio:
        source = tio.list(SOURCE)
        destination = None
        print(f"{me}: waiting for work on {SOURCE}", flush=True)
        while True:
            try:
                n = source.wait_pop_next()
                if n == STOP:
                    return
                if destination is None:
                    destination = tio.list(source.get_property("destination"))
                destination.push_back(f"{n}!={math.factorial(n)}", metadata=me)
            except Closed:
                if not tio.wait_connected():
                    raise


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("role", choices=["all", "producer", "processor"])
    parser.add_argument("--url", help="corral://host:port (127.0.0.1:2605 by default) or "
                        "redis://host:port; all: a server of its own if not given")
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--processors", type=int, default=4, help="all: how many")
    parser.add_argument("--seed", type=int, default=2605)
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="producer: seconds to wait for each result (default 300)")
    args = parser.parse_args()
    url = args.url or "corral://127.0.0.1:2605"
    if args.role == "processor":
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends a processor
            processor(url)
        return 0
    if args.role == "producer":
        return 0 if producer(url, args.items, args.seed, args.timeout) else 1
    with ExitStack() as stack:
        if args.url is None:  # a server of our own, for this run
            url = stack.enter_context(background_server(zmq=False)).tcp
        procs = [subprocess.Popen([sys.executable, __file__, "processor", "--url", url])
                 for _ in range(args.processors)]
        try:
            with connect(url) as tio:  # let every processor ask before the work comes
                source, give_up = tio.list(SOURCE), time.monotonic() + 60
                while source.statistics().waiters < args.processors:
                    assert time.monotonic() < give_up, "the processors did not start"
                    time.sleep(0.05)
            ok = producer(url, args.items, args.seed, args.timeout)
            with connect(url) as tio:
                for _ in procs:
                    tio.list(SOURCE).push_back(STOP)
            for proc in procs:
                proc.wait(60)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
    return 0 if ok and all(p.returncode == 0 for p in procs) else 1


if __name__ == "__main__":
    sys.exit(main())
