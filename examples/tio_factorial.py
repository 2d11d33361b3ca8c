"""Tio's factorial cluster over TCP: a producer and processor processes.

The producer pushes random ints from 1 to 500 onto ``factorial_cluster/source``, tells
the processors where results go through a property, and subscribes to the destination;
each processor loops on ``wait_pop_next`` and pushes ``n!=...`` to the destination.
Whoever asked first is served first, so the load balances itself. (The original:
shared/seeds/000, with Tio's ``tioclient``.)

    python examples/tio_factorial.py all                      # everything, on its own
    corral serve &                                            # or by hand:
    python examples/tio_factorial.py processor &              # as many as you like
    python examples/tio_factorial.py producer --items 10000
    python examples/tio_factorial.py all --url redis://127.0.0.1:6379   # on Redis
"""

from __future__ import annotations

import argparse
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
STOP = "stop"  # one per processor, after the work


def producer(url: str, items: int, processors: int, seed: int) -> bool:
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
            event = results.get(timeout=60)
            done.append(event.value)
            by[event.metadata] += 1
        for _ in range(processors):
            source.push_back(STOP)
    for line in done[:3]:
        print(f"  {line[:60]}{'...' if len(line) > 60 else ''}")
    for who, count in sorted(by.items()):
        print(f"{who}: {count} factorials")
    ok = Counter(done) == Counter(f"{n}!={math.factorial(n)}" for n in work)
    print("every item processed exactly once" if ok else "MISMATCH", flush=True)
    return ok


def processor(url: str) -> None:
    """Take items first come, first served, until told to stop. A server restart is
    waited out (the client reconnects and logs it); an item handed over just as the
    connection broke is lost with it, as a list's items are (jobs are the at-least-once
    tool)."""
    me = f"processor-{os.getpid()}"
    with connect(url) as tio:
        source = tio.list(SOURCE)
        destination = tio.list(source.get_property("destination"))
        while True:
            try:
                n = source.wait_pop_next()
                if n == STOP:
                    return
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
    parser.add_argument("--processors", type=int, default=4)
    parser.add_argument("--seed", type=int, default=2605)
    args = parser.parse_args()
    url = args.url or "corral://127.0.0.1:2605"
    if args.role == "processor":
        processor(url)
        return 0
    if args.role == "producer":
        return 0 if producer(url, args.items, args.processors, args.seed) else 1
    with ExitStack() as stack:
        if args.url is None:  # a server of our own, for this run
            url = stack.enter_context(background_server(zmq=False)).tcp
        # The list exists before the processors ask for its property.
        with connect(url) as tio:
            tio.list(SOURCE).set_property("destination", DESTINATION)
        procs = [subprocess.Popen([sys.executable, __file__, "processor", "--url", url])
                 for _ in range(args.processors)]
        try:
            with connect(url) as tio:  # let every processor ask before the work comes
                source, give_up = tio.list(SOURCE), time.monotonic() + 60
                while source.statistics().waiters < args.processors:
                    assert time.monotonic() < give_up, "the processors did not start"
                    time.sleep(0.05)
            ok = producer(url, args.items, args.processors, args.seed)
            for proc in procs:
                proc.wait(60)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
    return 0 if ok and all(p.returncode == 0 for p in procs) else 1


if __name__ == "__main__":
    sys.exit(main())
