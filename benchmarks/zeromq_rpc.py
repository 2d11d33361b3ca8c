"""corral over ZeroMQ against raw pyzmq, and RPC calls through corral, in one run.

1. round trips per second on one connection: corral's client pinging a `corral serve
   --zmq` process, against a pyzmq REQ socket and a REP echo process (the least a
   ZeroMQ round trip costs from Python). Target: >= 0.8x. For the bound on it, a
   DEALER pinging a trio task that echoes frames on a ROUTER socket, waiting on it as
   corral's server does, with no protocol at all.
2. the same round trip over corral's TCP transport, for scale.
3. RPC calls per second through `ExecutorClient.call` to `Executor` processes, over TCP
   and over ZeroMQ: one caller calling in turn (latency-bound), then 8 caller threads.

The server, the peer and this process are pinned to CPU 0 (taskset), as in network.py,
so that round trips repeat; ``--no-pin`` lets them (and ZeroMQ's I/O threads) spread
over the CPUs. Bounded: fixed counts, every process stopped at the end.

    python benchmarks/zeromq_rpc.py [--n N] [--rounds R]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

import zmq
from _common import PIN, free_port, pin_self, process, rate, threaded

from corral.adapters.client import Client, connect
from corral.adapters.workers import ExecutorClient

REP_ECHO = """
import sys, zmq
sock = zmq.Context().socket(zmq.REP)
sock.bind(sys.argv[1])
while True:
    sock.send(sock.recv())
"""

# The least a ZeroMQ server on trio can do: wait on the ROUTER's descriptor as corral's
# server does (looking again after each send: the descriptor is edge-triggered) and
# echo each frame, with no protocol at all. Its round trips bound any such server's.
TRIO_ROUTER_ECHO = """
import sys, trio, zmq
async def main():
    sock = zmq.Context().socket(zmq.ROUTER)
    sock.bind(sys.argv[1])
    fd = sock.getsockopt(zmq.FD)
    while True:
        while sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            sock.send_multipart(sock.recv_multipart(zmq.NOBLOCK))
        await trio.lowlevel.wait_readable(fd)
trio.run(main)
"""

EXECUTOR = """
import sys
from corral.adapters.workers import Executor
Executor("rpc", lambda payload: payload, corral=sys.argv[1]).run()
"""


def raw_round_trips(n: int, server: str, client_type: int) -> float:
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    with process([sys.executable, "-c", server, endpoint], port), \
            zmq.Context() as ctx, ctx.socket(client_type) as req:
        req.connect(endpoint)
        req.send(b"ping\r\n")  # the connection is up
        req.recv()

        def run() -> None:
            for _ in range(n):
                req.send(b"ping\r\n")
                req.recv()

        return rate(n, run)


def pings(client: Client, n: int) -> None:
    for _ in range(n):
        client.ping()


def corral_measures(n: int, calls: int) -> dict[str, float]:
    tcp, zport = free_port(), free_port()
    urls = {"tcp": f"corral://127.0.0.1:{tcp}", "zmq": f"zmq+tcp://127.0.0.1:{zport}"}
    results: dict[str, float] = {}
    serve = [sys.executable, "-m", "corral.adapters.cli", "serve", "--port", str(tcp),
             "--zmq", f"tcp://127.0.0.1:{zport}"]
    with process(serve, tcp):
        for transport, url in urls.items():
            with connect(url) as client:
                client.ping()
                results[f"round trips/s ({transport})"] = rate(n, partial(pings, client, n))
        for transport, url in urls.items():
            executors = [subprocess.Popen(PIN + [sys.executable, "-c", EXECUTOR, url])
                         for _ in range(2)]
            try:
                with ExecutorClient("rpc", corral=url) as client:
                    client.call("warm up", timeout=30)
                    results[f"RPC calls/s, 1 caller ({transport})"] = rate(
                        calls, lambda: [client.call(i, timeout=30) for i in range(calls)]
                        and None)
                results[f"RPC calls/s, 8 callers ({transport})"] = parallel_calls(url, calls)
            finally:
                for executor in executors:
                    executor.terminate()
                for executor in executors:
                    executor.wait(30)
    return results


def parallel_calls(url: str, calls: int) -> float:
    clients: list[ExecutorClient] = []

    def make() -> Callable[[int], Any]:
        clients.append(ExecutorClient("rpc", corral=url))
        return partial(clients[-1].call, timeout=30)

    result = threaded(calls, 8, make)
    for client in clients:
        client.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="round trips per measure")
    parser.add_argument("--calls", type=int, default=2000, help="RPC calls per measure")
    parser.add_argument("--rounds", type=int, default=3, help="best of this many rounds")
    parser.add_argument("--no-pin", action="store_true",
                        help="let the processes run on any CPU (ZeroMQ's I/O threads too)")
    args = parser.parse_args()
    if args.no_pin:
        PIN.clear()
    pin_self()
    print(f"{args.n:,} round trips and {args.calls:,} calls per measure, best of "
          f"{args.rounds}; " + ("all on CPU 0" if PIN else "not pinned"))
    best: dict[str, float] = {}
    for _ in range(args.rounds):  # interleaved, so that noise hits both sides alike
        for name, value in [
                ("raw pyzmq REQ/REP round trips/s", raw_round_trips(args.n, REP_ECHO,
                                                                    zmq.REQ)),
                ("round trips/s (trio echo, no protocol)",
                 raw_round_trips(args.n, TRIO_ROUTER_ECHO, zmq.DEALER)),
                *corral_measures(args.n, args.calls).items()]:
            best[name] = max(best.get(name, 0.0), value)
    raw = best.pop("raw pyzmq REQ/REP round trips/s")
    print(f"{'raw pyzmq REQ/REP round trips/s':<40} {raw:>10,.0f}")
    for name, value in best.items():
        line = f"{name:<40} {value:>10,.0f}"
        if name.startswith("round trips"):
            line += f"   ratio to raw pyzmq {value / raw:.2f}x"
        print(line)


if __name__ == "__main__":
    main()
