"""corral serve against redis-server and beanstalkd, in one run, on 127.0.0.1.

1. push + pop round trips per second on one connection: the blocking client's
   push_back + pop_front against redis-py RPUSH + LPOP (hiredis parser).
2. pipelined pushes per second: a batch of push_back commands written at once and the
   answers read after, against a redis-py pipeline of RPUSH.
3. cross-process hand-off: a consumer process in wait_pop_next against one in BLPOP,
   items per second from the first push to the last item taken.
4. job cycles per second: put, claim, finish against beanstalkd's put, reserve, delete
   (greenstalk).
5. pushes per second from 4 threads sharing one client: corral's pipelines them on its
   one connection; redis-py's takes a connection per thread from its pool.
6. sequential calls per second (push_back, one after the other) from the native trio
   client against the thread client, on the same server: the trio one should keep up.
   Beside them, the bound each can reach: bare ``ping`` round trips on a raw socket,
   one blocking in ``recv`` (as the thread client's reader does) and one waiting
   through trio (``wait_readable``, as the trio client must), with no client code.

Servers and this process are pinned to CPU 0 (taskset), so round-trip figures repeat.
Peers are started here when installed (apt-get install redis-server beanstalkd; pip
install redis hiredis greenstalk); a missing one is reported and skipped. Bounded: fixed
counts, and every server is stopped at the end.

    python benchmarks/network.py [--n N]
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import trio
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

from corral.adapters.client import connect, open_client
from corral.transports.codec import encode


def corral_server() -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    port = free_port()
    corral_server.port = port  # type: ignore[attr-defined]
    return process([sys.executable, "-m", "corral.adapters.cli", "serve", "--port",
                    str(port)], port)


def consumer_process(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(PIN + [sys.executable, "-c", code], stdout=subprocess.PIPE)


def handoff(n: int, start_consumer: Callable[[], subprocess.Popen[bytes]],
            push: Callable[[int], None]) -> float:
    """Items/s from the first push to the consumer process having taken all ``n``."""
    consumer = start_consumer()
    assert consumer.stdout is not None
    assert b"ready" in consumer.stdout.readline()
    start = time.perf_counter()
    for i in range(n):
        push(i)
    push(-1)
    assert b"done" in consumer.stdout.readline()
    elapsed = time.perf_counter() - start
    consumer.wait(30)
    consumer.stdout.close()
    return n / elapsed


CORRAL_CONSUMER = """
from corral.adapters.client import connect
c = connect("corral://127.0.0.1:{port}")
lst = c.list("handoff")
print("ready", flush=True)
while lst.wait_pop_next() != -1:
    pass
print("done", flush=True)
c.close()
"""

REDIS_CONSUMER = """
import redis
r = redis.Redis(port={port})
print("ready", flush=True)
while int(r.blpop("handoff")[1]) != -1:
    pass
print("done", flush=True)
"""


def bench_corral(n: int) -> dict[str, float]:
    results: dict[str, float] = {}
    with corral_server():
        port = corral_server.port  # type: ignore[attr-defined]
        with connect(f"corral://127.0.0.1:{port}") as corral:
            lst = corral.list("bench")

            def round_trips() -> None:
                for i in range(n):
                    lst.push_back(i)
                    lst.pop_front()

            results["push+pop round trips/s"] = rate(n, round_trips)
            results["sequential calls/s, thread client"] = rate(
                n, lambda: [lst.push_back(i) for i in range(n)] and None)
            results["sequential calls/s, trio client"] = trio_calls(
                f"corral://127.0.0.1:{port}", n)
            results["bare pings/s, blocking recv"] = bare_pings(port, n, trio_wait=False)
            results["bare pings/s, trio wait_readable"] = bare_pings(port, n, trio_wait=True)
            jobs = corral.jobs("bench-jobs", result_ttl=0.0)

            def cycles() -> None:
                for i in range(n):
                    jobs.put(i)
                    jobs.claim(timeout=0).finish()

            results["job cycles/s"] = rate(n, cycles)
            shared = corral.list("shared")
            results["pushes/s, 4 threads"] = threaded(n, 4, lambda: shared.push_back)
            corral.list("handoff")
            results["hand-off items/s"] = handoff(
                n, lambda: consumer_process(CORRAL_CONSUMER.format(port=port)),
                corral.list("handoff").push_back)
        with socket.create_connection(("127.0.0.1", port)) as raw:
            raw.sendall(b"create pipe volatile_list\r\n")
            raw.recv(100)
            batch = b"".join(encode(("push_back", "1"), {"value": i}) for i in range(n))

            def pipelined() -> None:
                raw.sendall(batch)
                expected, got = len(b"answer ok \r\n") * n, 0
                while got < expected:
                    got += len(raw.recv(1 << 20))

            results["pipelined pushes/s"] = rate(n, pipelined)
    return results


def trio_calls(url: str, n: int) -> float:
    """Sequential push_back calls/s from the native trio client (best of three)."""
    async def main() -> float:
        async with open_client(url) as corral:
            lst = await corral.list("bench-trio")
            best = 0.0
            for _ in range(3):
                start = time.perf_counter()
                for i in range(n):
                    await lst.push_back(i)
                best = max(best, n / (time.perf_counter() - start))
            return best

    return trio.run(main)


def bare_pings(port: int, n: int, *, trio_wait: bool) -> float:
    """``ping`` round trips/s on a raw socket, no client code: blocking in ``recv``, or
    waiting for each answer as a trio task must (best of three)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not trio_wait:
            def blocking() -> None:
                for _ in range(n):
                    sock.sendall(b"ping\r\n")
                    sock.recv(100)
            return max(rate(n, blocking) for _ in range(3))
        sock.setblocking(False)

        async def main() -> float:
            best = 0.0
            for _ in range(3):
                start = time.perf_counter()
                for _ in range(n):
                    sock.send(b"ping\r\n")
                    await trio.lowlevel.wait_readable(sock)
                    sock.recv(100)
                best = max(best, n / (time.perf_counter() - start))
            return best

        return trio.run(main)


def bench_redis(n: int) -> dict[str, float] | str:
    missing = redis_missing()
    if missing:
        return missing
    import redis

    port = free_port()
    results: dict[str, float] = {}
    with process(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                  "--appendonly", "no"], port):
        r = redis.Redis(port=port)

        def round_trips() -> None:
            for i in range(n):
                r.rpush("bench", i)
                r.lpop("bench")

        results["push+pop round trips/s"] = rate(n, round_trips)

        def pipelined() -> None:
            pipe = r.pipeline(transaction=False)
            for i in range(n):
                pipe.rpush("pipe", i)
            pipe.execute()

        results["pipelined pushes/s"] = rate(n, pipelined)
        results["pushes/s, 4 threads"] = threaded(n, 4, lambda: partial(r.rpush, "shared"))
        results["hand-off items/s"] = handoff(
            n, lambda: consumer_process(REDIS_CONSUMER.format(port=port)),
            lambda i: r.rpush("handoff", i))
    return results


def bench_beanstalkd(n: int) -> dict[str, float] | str:
    return beanstalkd_cycles([], n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="operations per measure")
    args = parser.parse_args()
    pin_self()
    print(f"{args.n:,} operations per measure; servers and client on CPU 0"
          if PIN else f"{args.n:,} operations per measure (taskset missing: not pinned)")
    ours = bench_corral(args.n)
    peers: dict[str, Any] = {"redis": bench_redis(args.n), "beanstalkd": bench_beanstalkd(args.n)}
    print_ratios(ours, peers)
    trio_calls_ = ours["sequential calls/s, trio client"]
    thread_calls = ours["sequential calls/s, thread client"]
    print(f"trio client / thread client, sequential calls: {trio_calls_ / thread_calls:.2f}x")
    bound = ours["bare pings/s, trio wait_readable"] / ours["bare pings/s, blocking recv"]
    print(f"  the same bound with no client code (trio wait / blocking recv): {bound:.2f}x")


if __name__ == "__main__":
    main()
