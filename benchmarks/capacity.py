"""Capacity: memory per record held, and disk per journaled command, for sizing a server.

Each figure is measured in a fresh process, with tracemalloc, as the growth of the
Python heap from an empty kernel to one holding N records with small items (an int),
divided by N:

- a list item, a queue item, a ready job, a claimed job (its lease and timer), and a
  finished job with its result kept (a result TTL);
- the peers: a ``queue.Queue`` of the same ints (the floor for a Python process), and
  RQ's enqueued job in a real redis-server (``used_memory`` growth, divided by N), when
  redis-server and rq are installed (``pip install -e '.[bench]'``).

Disk: the journal's bytes per ``put`` of a small job, and a snapshot's bytes per job.

Bounded: N records per case (100,000 by default, 10,000 with ``--quick``), a few
seconds each.

    python benchmarks/capacity.py [--quick] [-n N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

CASES = ["list item", "queue item", "ready job", "claimed job", "finished job + result",
         "queue.Queue item"]


def measure(case: str, n: int) -> float:
    """Bytes per record for ``case``, in this process (call it in a fresh one)."""
    import gc
    import queue
    import tracemalloc

    from corral.kernel import Kernel, Kind

    kernel = Kernel()
    session = kernel.open_session()
    kind = {"list item": Kind.LIST, "queue item": Kind.QUEUE}.get(case, Kind.JOBS)
    if case != "queue.Queue item":
        kernel.create("c", kind)
    peer: queue.Queue[int] = queue.Queue()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        item = 1_000_000 + i  # an int object of its own, as a decoded item would be
        if case == "list item":
            kernel.push_back("c", item)
        elif case == "queue item":
            kernel.queue_put(session, "c", item)
        elif case == "queue.Queue item":
            peer.put(item)
        else:
            kernel.put("c", item)
    if case in ("claimed job", "finished job + result"):
        for _ in range(n):
            job = kernel.claim(session, "c", timeout=0, lease=60.0)
            if case == "finished job + result":
                kernel.finish("c", job, job.item, result_ttl=3600.0)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / n


def in_fresh_process(case: str, n: int) -> float:
    out = subprocess.run([sys.executable, __file__, "--one", case, "-n", str(n)],
                         check=True, capture_output=True, text=True, timeout=600)
    return float(out.stdout)


def rq_per_job(n: int) -> float | None:
    """redis-server's used_memory growth per RQ job enqueued, or None without rq or
    redis-server."""
    try:
        import redis
        import rq
    except ImportError:
        return None
    if shutil.which("redis-server") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "redis.sock")
        server = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", sock,
                                   "--save", "", "--appendonly", "no"],
                                  stdout=subprocess.DEVNULL)
        try:
            client = redis.Redis(unix_socket_path=sock)
            give_up = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > give_up:
                        raise
                    time.sleep(0.05)
            q = rq.Queue("bench", connection=client)
            before = int(client.info("memory")["used_memory"])
            for i in range(n):
                q.enqueue("builtins.abs", 1_000_000 + i)
            return (int(client.info("memory")["used_memory"]) - before) / n
        finally:
            server.terminate()
            server.wait(10)


def disk_per_job(n: int) -> tuple[float, float]:
    """The journal's bytes per put, and a snapshot's bytes per job held."""
    from corral.kernel import Kind
    from corral.transports.journal import Journal, JournaledKernel

    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal(tmp, fsync="no")
        try:
            kernel = JournaledKernel(journal)
            kernel.create("c", Kind.JOBS)
            journal.commit()
            start = journal.end
            for i in range(n):
                kernel.put("c", 1_000_000 + i)
            journal.commit()
            per_put = (journal.end - start) / n
            per_job = len(kernel.snapshot()) / n
        finally:
            journal.close()
    return per_put, per_job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=None, help="records per case")
    parser.add_argument("--quick", action="store_true", help="10,000 records per case")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    n = args.n or (10_000 if args.quick else 100_000)
    if args.one:
        print(measure(args.one, n))
        return
    figures: dict[str, float | None] = {case: in_fresh_process(case, n) for case in CASES}
    figures["RQ job in redis-server"] = rq_per_job(n)
    figures["journal bytes per put"], figures["snapshot bytes per job"] = disk_per_job(n)
    floor = figures["queue.Queue item"]
    print(f"{n:,} records per case; bytes per record (ratio to a queue.Queue item)")
    for name, value in figures.items():
        if value is None:
            print(f"  {name:28} (not measured: needs rq and redis-server)")
        elif name.startswith(("journal", "snapshot")):
            print(f"  {name:28} {value:8.0f} B")
        else:
            print(f"  {name:28} {value:8.0f} B   {value / floor:5.1f}x")  # type: ignore[operator]
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"n": n, "bytes": figures}, f, indent=2)


if __name__ == "__main__":
    main()
