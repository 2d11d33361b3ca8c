"""Tio's factorial cluster, embedded: one producer, four consumer threads.

The producer pushes work items onto ``factorial_cluster/source`` and subscribes to
``factorial_cluster/destination``; each consumer loops on ``wait_pop_next``, computes a
factorial and pushes the result. Whoever asked first is served first, so the load
balances itself (the original: Tio's TioAsClusterCoordinator.md,
https://github.com/rodrigostrauss/tio).
"""

from __future__ import annotations

import math
import random
import threading
from collections import Counter
from typing import TextIO

import attrs

from .threads import Corral

__all__ = ["ClusterReport", "run_factorial_cluster"]

_STOP = None  # one per consumer, pushed after the work items


@attrs.frozen(kw_only=True)
class ClusterReport:
    """What the cluster did: every result, and which consumer computed how many."""

    items: list[int]
    results: list[str]
    per_consumer: dict[str, int]


def run_factorial_cluster(items: int = 1000, consumers: int = 4, *, seed: int = 2605,
                          out: TextIO | None = None) -> ClusterReport:
    """Run the cluster on ``items`` random ints from 1 to 500 and return its report."""
    rng = random.Random(seed)
    work = [rng.randint(1, 500) for _ in range(items)]
    done_by: Counter[str] = Counter()
    with Corral() as corral:
        source = corral.list("factorial_cluster/source")
        destination = corral.list("factorial_cluster/destination")
        source.set_property("destination", destination.name)
        results = destination.subscribe()

        def consume(consumer: str) -> None:
            target = corral.list(source.get_property("destination"))
            while (n := source.wait_pop_next()) is not _STOP:
                target.push_back(f"{n}!={math.factorial(n)}", metadata=consumer)

        threads = [threading.Thread(target=consume, args=(f"consumer-{i}",))
                   for i in range(1, consumers + 1)]
        for thread in threads:
            thread.start()
        for n in work:
            source.push_back(n)
        for _ in threads:
            source.push_back(_STOP)
        if out is not None:
            print(f"producer: pushed {items} items to {source.name!r}, waiting for results",
                  file=out)
        lines = []
        for _ in range(items):
            event = results.get()
            lines.append(event.value)
            done_by[event.metadata] += 1
        for thread in threads:
            thread.join()
    if out is not None:
        for line in lines[:3]:
            print(f"  {line[:70]}{'...' if len(line) > 70 else ''}", file=out)
        print(f"  ... {items} results in all", file=out)
        for consumer, n in sorted(done_by.items()):
            print(f"{consumer}: computed {n} factorials", file=out)
    return ClusterReport(items=work, results=lines, per_consumer=dict(done_by))
