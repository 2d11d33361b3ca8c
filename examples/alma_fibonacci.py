"""The ALMA sandbox's RPC over a shared queue: Fibonacci executors and clients.

Each client puts its request on the ``fibonacci`` queue and waits for the answer to that
request; any free executor picks it up, and the answer goes back to the caller that
asked. Many clients and executors share the one queue. (The original: rpc/README.md in
https://github.com/amchavan/alma-datapro-workflow-sandbox, with ``Executor`` and
``ExecutorClient`` over RabbitMQ.)

    python examples/alma_fibonacci.py all          # 4 executors, 8 parallel clients
    corral serve --zmq tcp://127.0.0.1:2606 &      # or by hand, over TCP or ZeroMQ:
    python examples/alma_fibonacci.py executor &   # four times
    python examples/alma_fibonacci.py client 34
    python examples/alma_fibonacci.py all --url redis://127.0.0.1:6379   # on Redis

By hand, executors and clients start in either order: a request waits in the queue
until an executor takes it, and its client waits for the answer up to ``--timeout``
seconds.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from contextlib import ExitStack

from corral.adapters.workers import Executor, ExecutorClient
from corral.transports.background import background_server

QUEUE = "fibonacci"


def fib(n: int) -> int:
    """Deliberately slow, as in the original: do not ask for much more than 30."""
    say(f" [*] calling fib on {n} (pid={os.getpid()})")
    return _fib(n)


def say(line: str) -> None:
    """One write per line: many processes share the terminal (print writes the end of
    the line separately, and lines from two processes could mix)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _fib(n: int) -> int:
    return n if n < 2 else _fib(n - 1) + _fib(n - 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("role", choices=["all", "executor", "client"])
    parser.add_argument("n", type=int, nargs="?", default=30, help="client: which number")
    parser.add_argument("--url", help="corral://host:port (127.0.0.1:2605 by default), "
                        "zmq+tcp://host:port or redis://host:port; all: a server of its "
                        "own if not given")
    parser.add_argument("--base", type=int, default=28,
                        help="all: the clients ask for base..base+7 (the original's 28-35)")
    parser.add_argument("--zmq", action="store_true", help="all: talk over ZeroMQ")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    url = args.url or "corral://127.0.0.1:2605"
    if args.role == "executor":
        logging.basicConfig(level=logging.INFO, format="%(message)s")  # says when it waits
        Executor(QUEUE, fib, corral=url).run()  # until Ctrl-C or SIGTERM
        return 0
    if args.role == "client":
        with ExecutorClient(QUEUE, corral=url) as client:
            say(f" [x] requesting fib({args.n})")
            result = client.call(args.n, timeout=args.timeout)
        say(f"fib({args.n}) = {result}")
        return 0 if result == _fib(args.n) else 1
    with ExitStack() as stack:
        if args.url is None:  # a server of our own, for this run
            urls = stack.enter_context(background_server(zmq=args.zmq))
            url = urls.zmq if args.zmq else urls.tcp
        me = [sys.executable, __file__]
        executors = [subprocess.Popen([*me, "executor", "--url", url]) for _ in range(4)]
        try:
            clients = [subprocess.Popen([*me, "client", str(n), "--url", url,
                                         "--timeout", str(args.timeout)])
                       for n in range(args.base, args.base + 8)]
            codes = [client.wait(args.timeout + 30) for client in clients]
        finally:
            for executor in executors:
                executor.terminate()  # a graceful stop: each finishes what it runs
            for executor in executors:
                executor.wait(30)
    print("all clients answered" if not any(codes) else "SOME CLIENTS FAILED")
    return 1 if any(codes) else 0


if __name__ == "__main__":
    sys.exit(main())
