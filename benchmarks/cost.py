"""Where a round trip's time goes: CPU per request on each side, against the peers.

For each pair (client library and server), pinned together to CPU 0 as network.py pins
them: wall time per round trip, and the CPU time per round trip that the client process
and the server process spent, in user and system mode (from os.times and /proc, so
Linux only). The first pair is the floor: a bare Python socket echo, whose round trip is
almost all system calls and context switches.

From those it prints each corral measure's ceiling: its ratio to the peer if corral's
server cost no more than the bare echo server does (its system calls), so that only
the floor and corral's client were left. A ceiling under 1.0x means that no change to
the server alone can reach parity.

For push+pop it also runs corral's client against the least server that speaks the
protocol: corral's codec and kernel, one connection, no sessions, limits or routing,
written twice: with blocking socket calls, and on trio, reading as corral's server
reads (a non-blocking receive, and trio's wait_readable when there is nothing to read).
The two differ only in how the server waits for its next request.

    python benchmarks/cost.py [--n N]   (each measure: best of 3 rounds of N round trips)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import attrs
from _common import PIN, beanstalkd_missing, free_port, pin_self, process, redis_missing

from corral.adapters.client import connect

ECHO_SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
while True:
    c, _ = s.accept()
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while data := c.recv(65536):
        c.sendall(b"answer ok \\r\\n")
    c.close()
"""


# The least server: push_back and pop_front on one list, for one connection at a time.
LEAST_SERVER = """
import socket, sys
from corral.kernel import Kernel
from corral.transports.codec import Parser, encode
from corral.transports.handlers import OK
from corral.transports.protocol import data_offset

kernel = Kernel()

def answer(data, parser):
    out = []
    for message in parser.feed(data):
        if message.words[0] == "push_back":
            kernel.push_back("list", message.fields["value"])
            out.append(OK)
        elif message.words[0] == "pop_front":
            value = kernel.pop_front("list").value
            out.append(encode(("answer", "ok", "data"), {"value": value}))
        else:  # create and open: the one list
            kernel.create("list", "volatile_list")
            out.append(b"answer ok handle 1 volatile_list\\r\\n")
    return b"".join(out)

def blocking():
    listener = socket.create_server(("127.0.0.1", int(sys.argv[2])))
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        parser = Parser(data_offset)
        while data := conn.recv(65536):
            conn.sendall(answer(data, parser))
        conn.close()

async def serve(stream):
    import trio
    conn, parser = stream.socket._sock, Parser(data_offset)
    while True:
        try:
            data = conn.recv(65536)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(conn)
            continue
        if not data:
            return
        conn.send(answer(data, parser))

if sys.argv[1] == "trio":
    import trio
    trio.run(trio.serve_tcp, serve, int(sys.argv[2]))
else:
    blocking()
"""


@attrs.frozen
class Cost:
    """Microseconds per round trip."""

    wall: float
    client_user: float
    client_sys: float
    server_user: float
    server_sys: float

    def __str__(self) -> str:
        return (f"wall {self.wall:5.1f}   client {self.client_user:4.1f} user "
                f"{self.client_sys:4.1f} sys   server {self.server_user:4.1f} user "
                f"{self.server_sys:4.1f} sys")


def _cpu(pid: int) -> tuple[float, float]:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


ROUNDS = 3  # each measure's best round counts: the machine is shared and noisy


def measure(server: subprocess.Popen[bytes], trips: int, run: Callable[[], None]) -> Cost:
    """Run ``run`` (``trips`` round trips) ROUNDS times; say what each round trip cost
    in the fastest round."""
    costs = []
    for _ in range(ROUNDS):
        run_s0, mine0, wall0 = _cpu(server.pid), os.times(), time.perf_counter()
        run()
        wall, mine, run_s = time.perf_counter() - wall0, os.times(), _cpu(server.pid)
        per = 1e6 / trips
        costs.append(Cost(wall * per, (mine.user - mine0.user) * per,
                          (mine.system - mine0.system) * per,
                          (run_s[0] - run_s0[0]) * per, (run_s[1] - run_s0[1]) * per))
    return min(costs, key=lambda cost: cost.wall)


def echo(n: int) -> Cost:
    import socket

    port = free_port()
    with (process([sys.executable, "-c", ECHO_SERVER, str(port)], port) as server,
          socket.create_connection(("127.0.0.1", port)) as sock):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def run() -> None:
            for _ in range(n):
                sock.sendall(b"pop_front 1\r\n")
                sock.recv(65536)

        return measure(server, n, run)


def push_pop(n: int, server_args: list[str]) -> Cost:
    """corral's client pushing and popping against the server run with ``server_args``
    and a port."""
    port = free_port()
    with (process([*server_args, str(port)], port) as server,
          connect(f"corral://127.0.0.1:{port}") as client):
        lst = client.list("list")

        def run() -> None:
            for i in range(n // 2):
                lst.push_back(i)
                lst.pop_front()

        return measure(server, n // 2 * 2, run)


def corral(n: int) -> dict[str, Cost]:
    port = free_port()
    with (process([sys.executable, "-m", "corral.adapters.cli", "serve", "--port",
                   str(port)], port) as server,
          connect(f"corral://127.0.0.1:{port}") as client):
        lst, jobs = client.list("cost"), client.jobs("cost-jobs", result_ttl=0.0)

        def push_pop() -> None:
            for i in range(n // 2):
                lst.push_back(i)
                lst.pop_front()

        def cycles() -> None:
            for i in range(n // 3):
                jobs.put(i)
                jobs.claim(timeout=0).finish()

        return {"push+pop": measure(server, n // 2 * 2, push_pop),
                "job cycle": measure(server, n // 3 * 3, cycles)}


def redis(n: int) -> Cost | str:
    missing = redis_missing()
    if missing:
        return missing
    import redis as redis_py

    port = free_port()
    with process(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save",
                  "", "--appendonly", "no"], port) as server:
        client = redis_py.Redis(port=port)

        def run() -> None:
            for i in range(n // 2):
                client.rpush("cost", i)
                client.lpop("cost")

        cost = measure(server, n // 2 * 2, run)
        client.close()
        return cost


def beanstalkd(n: int) -> Cost | str:
    missing = beanstalkd_missing()
    if missing:
        return missing
    import greenstalk

    port = free_port()
    with process(["beanstalkd", "-l", "127.0.0.1", "-p", str(port)], port) as server:
        client = greenstalk.Client(("127.0.0.1", port))

        def run() -> None:
            for i in range(n // 3):
                client.put(str(i))
                client.delete(client.reserve(timeout=1))

        cost = measure(server, n // 3 * 3, run)
        client.close()
        return cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=30000, help="round trips per pair")
    args = parser.parse_args()
    if not os.path.exists(f"/proc/{os.getpid()}/stat"):
        sys.exit("cost.py reads the server's CPU time from /proc: Linux only")
    pin_self()
    print(f"{args.n:,} round trips per pair, best of {ROUNDS}, in microseconds per round trip"
          + ("; servers and client on CPU 0" if PIN else " (taskset missing: not pinned)"))
    floor = echo(args.n)
    ours = corral(args.n)
    least = {mode: push_pop(args.n, [sys.executable, "-c", LEAST_SERVER, mode])
             for mode in ("blocking", "trio")}
    peers: dict[str, Any] = {"push+pop": ("redis + redis-py", redis(args.n)),
                             "job cycle": ("beanstalkd + greenstalk", beanstalkd(args.n))}
    print(f"{'floor: Python socket echo':<34} {floor}")
    for measure_name, cost in ours.items():
        peer_name, peer = peers[measure_name]
        print(f"{'corral ' + measure_name:<34} {cost}")
        if isinstance(peer, str):
            print(f"  (skipped {peer_name}: {peer})")
            continue
        print(f"{peer_name + ' ' + measure_name:<34} {peer}")
        # corral's client on the floor, with a server as cheap as the echo
        ideal = floor.wall + (cost.client_user + cost.client_sys
                              - floor.client_user - floor.client_sys)
        print(f"  corral: ratio {peer.wall / cost.wall:.2f}x; ceiling with a server as "
              f"cheap as the echo: {peer.wall / ideal:.2f}x")
        if measure_name == "push+pop":
            for mode, cost_least in least.items():
                print(f"{'least server, ' + mode:<34} {cost_least}")
                print(f"  corral's client with it: ratio {peer.wall / cost_least.wall:.2f}x")


if __name__ == "__main__":
    main()
