"""Powerhose's square workers: a master sends jobs, a pool of five workers squares them.

The worker's target gets the job as a string and returns the square as a string, as
Powerhose's did; ``WorkerPool`` runs five of them (``{wid}`` is each one's id, as
Powerhose's ``$WID``) and restarts any that dies; the master waits for a worker, then
sends jobs and prints each result. (The original: shared/seeds/002, over ZeroMQ with
Circus.)

    python examples/powerhose_square.py all --jobs 20     # master, pool and server
    corral serve --zmq tcp://127.0.0.1:2606 &             # or by hand:
    python examples/powerhose_square.py workers --url zmq+tcp://127.0.0.1:2606 &
    python examples/powerhose_square.py master --url zmq+tcp://127.0.0.1:2606
"""

from __future__ import annotations

import argparse
import random
import sys
import time

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("role", choices=["all", "master", "workers", "worker"])
    parser.add_argument("--url", default="zmq+tcp://127.0.0.1:2606")
    parser.add_argument("--wid", default="1", help="worker: its id")
    parser.add_argument("--workers", type=int, default=5, help="how many workers")
    parser.add_argument("--jobs", type=int, default=0, help="master: 0 runs until Ctrl-C")
    args = parser.parse_args()
    worker_command = [sys.executable, __file__, "worker", "--url", args.url, "--wid", "{wid}"]
    if args.role == "worker":
        Worker(JOBS, square, corral=args.url, name=f"square-{args.wid}").run()
        return 0
    if args.role == "workers":
        WorkerPool(worker_command, args.workers).run()
        return 0
    if args.role == "master":
        return 0 if master(args.url, args.jobs) else 1
    with background_server() as urls:
        worker_command[4] = urls.zmq
        with WorkerPool(worker_command, args.workers) as pool:
            ok = master(urls.zmq, args.jobs or 20)
            print(f"{len(pool.alive())} workers running; stopping them", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
