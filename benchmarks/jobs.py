"""Job queues: cycle throughput, claim hand-off latency, and lease expiry cost.

1. Job cycles (put, claim, finish) per second through the thread facade: one thread
   doing whole cycles, and one producer with four worker threads.
2. Claim hand-off latency through the thread facade: a worker parked in claim(), a
   producer puts one job at a time; the time from put() to claim() returning.
   p50 and p99 over a fixed number of samples.
3. The kernel's advance() per expired lease with 1k, 100k and 1M jobs leased: the same
   batch of leases expires at each size, so O(log n) timers show as a flat line.

Bounded: fixed counts; the largest case builds 1M jobs (about 40 s and 2 GB here).

``--json PATH`` also writes the figures (for ``report.py``).

    python benchmarks/jobs.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time

from corral.adapters.threads import Corral
from corral.kernel import Job, Kernel, Kind


def cycles_one_thread(n: int) -> float:
    with Corral() as corral:
        jobs = corral.jobs("bench", lease=60)
        start = time.perf_counter()
        for i in range(n):
            jobs.put(i)
            jobs.claim(timeout=0).finish(i)
        return n / (time.perf_counter() - start)


def cycles_workers(n: int, workers: int) -> float:
    with Corral() as corral:
        jobs = corral.jobs("bench", lease=60, result_ttl=0.0)

        def work() -> None:
            while (job := jobs.claim(timeout=None)).item is not None:
                job.finish()
            job.finish()

        threads = [threading.Thread(target=work) for _ in range(workers)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for i in range(n):
            jobs.put(i)
        for _ in threads:
            jobs.put(None, priority=-1)  # after every real job
        for thread in threads:
            thread.join()
        return n / (time.perf_counter() - start)


def claim_latency(samples: int) -> list[float]:
    """Seconds from put() to the parked claimer's claim() returning, per sample."""
    with Corral() as corral:
        jobs = corral.jobs("latency", lease=60, result_ttl=0.0)
        put_at: list[float] = []
        latencies: list[float] = []
        taken = threading.Semaphore(0)

        def work() -> None:
            for _ in range(samples):
                job = jobs.claim(timeout=None)
                latencies.append(time.perf_counter() - put_at[-1])
                job.finish()
                taken.release()

        worker = threading.Thread(target=work)
        worker.start()
        for i in range(samples):
            while jobs.statistics().waiters == 0:  # until the worker is parked again
                time.sleep(0)
            put_at.append(time.perf_counter())
            jobs.put(i)
            taken.acquire()
        worker.join()
        return latencies


def expiry_cost(leased: int, batch: int = 1000, lease: float = 100.0) -> float:
    """Seconds per expired lease when ``batch`` of ``leased`` claimed jobs expire."""
    kernel = Kernel()
    kernel.create("j", Kind.JOBS, lease=lease, backoff=0)  # expired: ready at once
    session = kernel.open_session()
    for i in range(leased):
        kernel.put("j", i)
    for i in range(leased):  # deadlines lease + i µs apart, so a batch expires at once
        job = kernel.claim(session, "j", timeout=0, now=i * 1e-6)
        assert isinstance(job, Job)
    start = time.perf_counter()
    kernel.advance(lease + (batch - 1) * 1e-6)
    elapsed = time.perf_counter() - start
    assert kernel.statistics("j").ready == batch
    return elapsed / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts, 1M skipped")
    parser.add_argument("--json", metavar="PATH", help="also write the figures here")
    args = parser.parse_args()
    n = 20_000 if args.quick else 100_000
    print(f"job cycles (put, claim, finish) through the thread facade, {n:,} jobs")
    one, four = cycles_one_thread(n), cycles_workers(n, 4)
    print(f"  one thread:                  {one:>9,.0f} cycles/s")
    print(f"  producer + 4 worker threads: {four:>9,.0f} jobs/s")
    latencies = sorted(claim_latency(500 if args.quick else 2000))
    p50 = statistics.median(latencies)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(f"claim hand-off latency to a parked worker thread, {len(latencies)} samples")
    print(f"  p50 {p50 * 1e6:,.0f} µs   p99 {p99 * 1e6:,.0f} µs")
    sizes = [1_000, 100_000] if args.quick else [1_000, 100_000, 1_000_000]
    print("kernel advance() per expired lease (batch of 1,000)")
    costs = {}
    for size in sizes:
        costs[size] = expiry_cost(size)
        print(f"  {size:>9,} leased: {costs[size] * 1e6:6.2f} µs per lease")
    print(f"  largest / smallest: {costs[sizes[-1]] / costs[sizes[0]]:.2f}x "
          "(flat is ~1; a linear scan would be ~size ratio)")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"jobs": n, "cycles/s, one thread": one,
                       "jobs/s, producer + 4 worker threads": four,
                       "claim latency samples": len(latencies),
                       "claim latency p50 us": p50 * 1e6, "claim latency p99 us": p99 * 1e6,
                       "advance us per expired lease": {str(size): cost * 1e6
                                                        for size, cost in costs.items()}},
                      out, indent=2)


if __name__ == "__main__":
    main()
