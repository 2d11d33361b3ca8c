"""Powerhose's square workers: a master sends jobs, a pool of five workers squares them.

The worker's target gets the job as a string and returns the square as a string, as
Powerhose's did; ``WorkerPool`` runs five of them (``{wid}`` is each one's id, as
Powerhose's ``$WID``) and restarts any that dies; the master waits for a worker, then
sends jobs and prints each result. (The original: docs/source/index.rst in
https://github.com/mozilla-services/powerhose, over ZeroMQ with Circus.)

    python examples/powerhose_square.py all --jobs 20     # master, pool and server
    corral serve --zmq tcp://127.0.0.1:2606 &             # or by hand:
    python examples/powerhose_square.py workers --url zmq+tcp://127.0.0.1:2606 &
    python examples/powerhose_square.py master --url zmq+tcp://127.0.0.1:2606
    python examples/powerhose_square.py all --url redis://127.0.0.1:6379   # on Redis

By hand, the master and the workers start in either order: the master waits up to a
minute for a worker to ask for a job.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
from contextlib import ExitStack

from corral.adapters.client import connect
from corral.adapters.workers import Worker, WorkerPool
from corral.transports.background import background_server

JOBS = "square"


def square(job: str) -> str:
    return str(int(job) * int(job))


def master(url: str, jobs: int) -> bool:
    """Wait for a worker, run ``jobs`` jobs one by one (0: until Ctrl-C)."""
    with connect(url) as corral:
        queue = corral.jobs(JOBS)
        print("Waiting for some workers to register -- run the workers", flush=True)
        give_up = time.monotonic() + 60
        while queue.statistics().waiters < 1:  # workers park on claim
            if time.monotonic() > give_up:
                print("no worker came")
                return False
            time.sleep(0.1)
        n = 0
        ok = True
        try:
            while not jobs or n < jobs:
                number = random.randrange(1000)
                result = queue.result(queue.put(str(number)), timeout=30)
                ok &= result == str(number * number)
                print(f"{number}^2 = {result}", flush=True)
                n += 1
        except KeyboardInterrupt:
            pass
    print("bye")
    return ok


def worker_command(url: str) -> list[str]:
    """A worker's command line, for the pool: it fills in ``{wid}``."""
    return [sys.executable, __file__, "worker", "--url", url, "--wid", "{wid}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("role", choices=["all", "master", "workers", "worker"])
    parser.add_argument("--url", help="zmq+tcp://host:port (127.0.0.1:2606 by default), "
                        "corral://host:port or redis://host:port; all: a server of its "
                        "own if not given")
    parser.add_argument("--wid", default="1", help="worker: its id")
    parser.add_argument("--workers", type=int, default=5, help="how many workers")
    parser.add_argument("--jobs", type=int, default=0, help="master: 0 runs until Ctrl-C")
    args = parser.parse_args()
    url = args.url or "zmq+tcp://127.0.0.1:2606"
    if args.role == "worker":
        logging.basicConfig(level=logging.INFO, format="%(message)s")  # says when it waits
        Worker(JOBS, square, corral=url, name=f"square-{args.wid}").run()
        return 0
    if args.role == "workers":
        WorkerPool(worker_command(url), args.workers).run()
        return 0
    if args.role == "master":
        return 0 if master(url, args.jobs) else 1
    with ExitStack() as stack:
        if args.url is None:  # a server of our own, for this run
            url = stack.enter_context(background_server()).zmq
        with WorkerPool(worker_command(url), args.workers) as pool:
            ok = master(url, args.jobs or 20)
            print(f"{len(pool.alive())} workers running; stopping them", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
