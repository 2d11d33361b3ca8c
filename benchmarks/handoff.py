"""Producer/consumer hand-off: corral's facades against the peers a user would pick.

Threads: one producer thread pushes N items, one consumer thread takes them;
``ListHandle.push_back`` / ``wait_pop_next`` against ``queue.Queue.put`` / ``get``.

trio: one producer task, one consumer task; ``await push_back`` / ``await wait_pop_next``
against an unbounded trio memory channel's ``send`` / ``receive``.

Each pair runs interleaved for several rounds (the machine is shared and noisy); the best
round of each counts. Prints items/s and the ratio corral / peer (> 1 means corral is
faster). Bounded: a fixed item count per round and a fixed number of rounds.

    python benchmarks/handoff.py [--items N] [--rounds R]
"""

from __future__ import annotations

import argparse
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


def compare(title: str, ours: Callable[[int], float], peer: Callable[[int], float],
            peer_name: str, n: int, rounds: int) -> float:
    ours_rate = peer_rate = 0.0
    for _ in range(rounds):  # interleaved, so both see the same machine weather
        peer_rate = max(peer_rate, n / peer(n))
        ours_rate = max(ours_rate, n / ours(n))
    ratio = ours_rate / peer_rate
    print(f"{title:<8} corral {ours_rate:>11,.0f} items/s   {peer_name:<20}"
          f"{peer_rate:>11,.0f} items/s   ratio {ratio:.2f}x")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"hand-off of {args.items:,} items, best of {args.rounds} interleaved rounds")
    compare("threads", threads_corral, threads_queue, "queue.Queue", args.items, args.rounds)
    compare("trio", trio_corral, trio_channel, "trio memory channel", args.items,
            args.rounds)


if __name__ == "__main__":
    main()
