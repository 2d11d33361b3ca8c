"""Durable throughput: corral serve --journal against Redis with appendonly and
beanstalkd with a binlog, in one run, on 127.0.0.1.

1. durable pushes per second: push_back against RPUSH, one client calling in turn and
   eight client threads at once (where group commit shows), for each fsync policy:
   corral always / everysec / no against Redis appendfsync always / everysec / no.
2. durable job cycles per second: put, claim, finish against beanstalkd's put,
   reserve, delete with a binlog (-b DIR), fsync after every write (-f 0) for
   ``always`` and every second (-f 1000) for ``everysec``.

Journals and binlogs go to a temporary directory on the same disk. Target: corral
fsync=always >= 1.0x Redis appendfsync always. Bounded: fixed counts, every server
stopped and every directory removed at the end.

    python benchmarks/durable.py [--n N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from _common import (
    PIN,
    beanstalkd_cycles,
    free_port,
    pin_self,
    print_ratios,
    process,
    rate,
    redis_missing,
    threaded,
)

from corral.adapters.client import connect

POLICIES = ("always", "everysec", "no")


def bench_corral(n: int, policy: str, directory: str) -> dict[str, float]:
    port = free_port()
    results: dict[str, float] = {}
    with process([sys.executable, "-m", "corral.adapters.cli", "serve", "--port", str(port),
                  "--journal", directory, "--fsync", policy], port):
        url = f"corral://127.0.0.1:{port}"
        with connect(url) as corral:
            lst = corral.list("bench")
            results["pushes/s, 1 client"] = rate(n, lambda: [lst.push_back(i)
                                                             for i in range(n)] and None)
            jobs = corral.jobs("bench-jobs", result_ttl=0.0)

            def cycles() -> None:
                for i in range(n):
                    jobs.put(i)
                    jobs.claim(timeout=0).finish()

            results["job cycles/s, 1 client"] = rate(n, cycles)
            clients = []

            def make() -> Callable[[int], None]:
                client = connect(url)
                clients.append(client)
                return client.list("bench").push_back

            results["pushes/s, 8 clients"] = threaded(n, 8, make)
            for client in clients:
                client.close()
    return results


def bench_redis(n: int, policy: str, directory: str) -> dict[str, float] | str:
    missing = redis_missing()
    if missing:
        return missing
    import redis

    port = free_port()
    results: dict[str, float] = {}
    with process(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                  "--dir", directory, "--appendonly", "yes", "--appendfsync", policy], port):
        r = redis.Redis(port=port)
        results["pushes/s, 1 client"] = rate(n, lambda: [r.rpush("bench", i)
                                                         for i in range(n)] and None)
        def make() -> Callable[[int], None]:
            client = redis.Redis(port=port)
            return lambda i: client.rpush("bench", i)  # type: ignore[no-any-return]

        results["pushes/s, 8 clients"] = threaded(n, 8, make)
    return results


def bench_beanstalkd(n: int, policy: str, directory: str) -> dict[str, float] | str:
    if policy == "no":
        return "no beanstalkd counterpart"
    result = beanstalkd_cycles(["-b", directory, "-f", "0" if policy == "always" else "1000"],
                               n)
    return result if isinstance(result, str) else {
        "job cycles/s, 1 client": result["job cycles/s"]}


def best(into: dict[str, float], result: dict[str, float]) -> None:
    for measure, value in result.items():
        into[measure] = max(into.get(measure, 0.0), value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="operations per measure")
    parser.add_argument("--rounds", type=int, default=3,
                        help="best of this many rounds, corral and peers interleaved")
    parser.add_argument("--no-pin", action="store_true",
                        help="let servers and clients run on any CPU")
    args = parser.parse_args()
    if args.no_pin:
        PIN.clear()
    pin_self()
    print(f"{args.n:,} operations per measure, best of {args.rounds}"
          + ("; servers and client on CPU 0" if PIN else ""))
    for policy in POLICIES:
        ours: dict[str, float] = {}
        peers: dict[str, Any] = {}
        for _ in range(args.rounds):  # fsync times drift: interleave, keep the best
            with tempfile.TemporaryDirectory(prefix="corral-bench-") as base:
                dirs = {name: os.path.join(base, name) for name in ("c", "r", "b")}
                for path in dirs.values():
                    os.mkdir(path)
                best(ours, bench_corral(args.n, policy, dirs["c"]))
                for name, result in (("redis", bench_redis(args.n, policy, dirs["r"])),
                                     ("beanstalkd", bench_beanstalkd(args.n, policy,
                                                                     dirs["b"]))):
                    if isinstance(result, str):
                        peers[name] = result
                    else:
                        best(peers.setdefault(name, {}), result)
        print(f"fsync {policy}:")
        print_ratios(ours, peers, indent="  ")


if __name__ == "__main__":
    main()
