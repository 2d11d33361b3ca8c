"""Producer/consumer hand-off: corral's facades against the peers a user would pick.

Threads: one producer thread hands N items to one consumer thread, against
``queue.Queue``: a list (``push_back`` / ``wait_pop_next``) and a queue (``put`` /
``get``) against its ``put`` / ``get``; a job queue (``put``, then ``claim`` and
``finish`` by the worker thread; "jobs 1": ``finish_and_claim``, one call per job)
against its ``put`` / ``get`` / ``task_done``.

trio: one producer task, one consumer task, the same three kinds against an unbounded
trio memory channel's ``send`` / ``receive``.

Each pair runs interleaved for several rounds (the machine is shared and noisy); the best
round of each counts. Prints items/s and the ratio corral / peer (> 1 means corral is
faster). Bounded: a fixed item count per round and a fixed number of rounds.

``--json PATH`` also writes each pair's rates and ratio (for ``report.py``).

    python benchmarks/handoff.py [--items N] [--rounds R] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from corral.adapters import threads as corral_threads
from corral.adapters import trio as corral_trio

_DONE = None


def thread_handoff(push: Callable[[Any], None], take: Callable[[], Any], n: int) -> float:
    """Seconds for one producer (this thread) to hand ``n`` items to one consumer thread."""

    def consume() -> None:
        while take() is not _DONE:
            pass

    consumer = threading.Thread(target=consume)
    start = time.perf_counter()
    consumer.start()
    for i in range(n):
        push(i)
    push(_DONE)
    consumer.join()
    return time.perf_counter() - start


async def task_handoff(push: Callable[[Any], Awaitable[None]],
                       take: Callable[[], Awaitable[Any]], n: int) -> float:
    """Seconds for one producer (this task) to hand ``n`` items to one consumer task."""

    async def consume() -> None:
        while await take() is not _DONE:
            pass

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        for i in range(n):
            await push(i)
        await push(_DONE)
    return time.perf_counter() - start


def threads_queue(n: int) -> float:
    q: queue.Queue[Any] = queue.Queue()
    return thread_handoff(q.put, q.get, n)


def threads_corral(n: int) -> float:
    with corral_threads.Corral() as corral:
        lst = corral.list("handoff")
        return thread_handoff(lst.push_back, lst.wait_pop_next, n)


def threads_queue_tasks(n: int) -> float:
    q: queue.Queue[Any] = queue.Queue()

    def get() -> Any:
        item = q.get()
        q.task_done()
        return item

    return thread_handoff(q.put, get, n)


def threads_corral_queue(n: int) -> float:
    with corral_threads.Corral() as corral:
        q = corral.queue("handoff")
        return thread_handoff(q.put, q.get, n)


def threads_corral_jobs(n: int) -> float:
    with corral_threads.Corral() as corral:
        jobs = corral.jobs("handoff", result_ttl=0)

        def take() -> Any:
            job = jobs.claim()
            job.finish()
            return job.item

        return thread_handoff(jobs.put, take, n)


def threads_corral_worker_loop(n: int) -> float:
    """The worker finishes each job and claims the next in one call."""
    with corral_threads.Corral() as corral:
        jobs = corral.jobs("handoff", result_ttl=0)
        job: Any = None

        def take() -> Any:
            nonlocal job
            job = jobs.claim() if job is None else job.finish_and_claim()
            return job.item

        return thread_handoff(jobs.put, take, n)


def trio_channel(n: int) -> float:
    async def main() -> float:
        send, receive = trio.open_memory_channel[Any](math.inf)
        return await task_handoff(send.send, receive.receive, n)

    return trio.run(main)


def trio_corral(n: int) -> float:
    async def main() -> float:
        async with corral_trio.open_corral() as corral:
            lst = await corral.list("handoff")
            return await task_handoff(lst.push_back, lst.wait_pop_next, n)

    return trio.run(main)


def trio_corral_queue(n: int) -> float:
    async def main() -> float:
        async with corral_trio.open_corral() as corral:
            q = await corral.queue("handoff")
            return await task_handoff(q.put, q.get, n)

    return trio.run(main)


def trio_corral_jobs(n: int) -> float:
    async def main() -> float:
        async with corral_trio.open_corral() as corral:
            jobs = await corral.jobs("handoff", result_ttl=0)

            async def take() -> Any:
                job = await jobs.claim()
                await job.finish()
                return job.item

            return await task_handoff(jobs.put, take, n)

    return trio.run(main)


def trio_corral_worker_loop(n: int) -> float:
    async def main() -> float:
        async with corral_trio.open_corral() as corral:
            jobs = await corral.jobs("handoff", result_ttl=0)
            job: Any = None

            async def take() -> Any:
                nonlocal job
                job = await jobs.claim() if job is None else await job.finish_and_claim()
                return job.item

            return await task_handoff(jobs.put, take, n)

    return trio.run(main)


def compare(title: str, ours: Callable[[int], float], peer: Callable[[int], float],
            peer_name: str, n: int, rounds: int,
            results: dict[str, dict[str, Any]] | None = None) -> float:
    ours_rate = peer_rate = 0.0
    for _ in range(rounds):  # interleaved, so both see the same machine weather
        peer_rate = max(peer_rate, n / peer(n))
        ours_rate = max(ours_rate, n / ours(n))
    ratio = ours_rate / peer_rate
    print(f"{title:<14} corral {ours_rate:>10,.0f} items/s   {peer_name:<22}"
          f"{peer_rate:>11,.0f} items/s   ratio {ratio:.2f}x")
    if results is not None:
        results[title] = {"corral items/s": ours_rate, "peer": peer_name,
                          "peer items/s": peer_rate, "ratio": ratio}
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", metavar="PATH", help="also write the results here")
    args = parser.parse_args()
    print(f"hand-off of {args.items:,} items, best of {args.rounds} interleaved rounds")
    n, rounds = args.items, args.rounds
    results: dict[str, dict[str, Any]] = {}
    compare("threads list", threads_corral, threads_queue, "queue.Queue", n, rounds, results)
    compare("threads queue", threads_corral_queue, threads_queue, "queue.Queue", n, rounds,
            results)
    compare("threads jobs", threads_corral_jobs, threads_queue_tasks,
            "queue.Queue+task_done", n, rounds, results)
    compare("threads jobs 1", threads_corral_worker_loop, threads_queue_tasks,
            "queue.Queue+task_done", n, rounds, results)
    compare("trio list", trio_corral, trio_channel, "trio memory channel", n, rounds, results)
    compare("trio queue", trio_corral_queue, trio_channel, "trio memory channel", n, rounds,
            results)
    compare("trio jobs", trio_corral_jobs, trio_channel, "trio memory channel", n, rounds,
            results)
    compare("trio jobs 1", trio_corral_worker_loop, trio_channel, "trio memory channel", n,
            rounds, results)
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"items": n, "rounds": rounds, "pairs": results}, out, indent=2)


if __name__ == "__main__":
    main()
