"""ppyqueue's master, worker and push_task, with named tasks instead of pickle.

The master is a corral server; a worker runs the task functions registered below, by
name; ``push`` queues a call with JSON arguments and, with ``--wait``, prints its
result. Nothing is unpickled and nothing is imported by path: a worker runs only the
functions it registered. (The original: docs/usage.md in
https://github.com/papaya-eng/ppyqueue, with Pyro and Redis.)

    python examples/ppyqueue_tasks.py all                 # master, 2 workers, 3 tasks
    python examples/ppyqueue_tasks.py master &            # or by hand: corral serve
    python examples/ppyqueue_tasks.py worker &
    python examples/ppyqueue_tasks.py push time --wait
    python examples/ppyqueue_tasks.py push add 2 3 --wait
    python examples/ppyqueue_tasks.py all --url redis://127.0.0.1:6379   # on Redis: no master

By hand, once the master runs, workers and pushes come in either order: a pushed task
waits in the queue for a worker, and ``push --wait`` waits up to 30 s for its result.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from urllib.parse import urlsplit

from corral.adapters.cli import main as corral_main
from corral.adapters.workers import Tasks, push_task, task_result
from corral.transports.background import background_server

tasks = Tasks()


@tasks.task(name="time")
def now() -> float:
    """ppyqueue's example task: ``time.time`` on the worker."""
    return time.time()


@tasks.task
def add(a: float, b: float) -> float:
    return a + b


@tasks.task
def whoami() -> int:
    return os.getpid()


def push(url: str, name: str, args: list[str], wait: bool) -> object:
    parsed = [json.loads(arg) for arg in args]  # "2" -> 2, '"text"' -> "text"
    id = push_task(name, *parsed, queue="tasks", corral=url)
    print(f"pushed {name}{tuple(parsed)} as job {id}", flush=True)
    if wait:
        result = task_result(id, queue="tasks", timeout=30, corral=url)
        print(f"{name} -> {result}", flush=True)
        return result
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("role", choices=["all", "master", "worker", "push"])
    parser.add_argument("task", nargs="?", help="push: the task's name")
    parser.add_argument("args", nargs="*", help="push: JSON arguments")
    parser.add_argument("--url", help="corral://host:port (127.0.0.1:2605 by default) or "
                        "redis://host:port; all: a server of its own if not given; "
                        "master: where to listen (port 0: any free one, logged)")
    parser.add_argument("--wait", action="store_true", help="push: print the result")
    args = parser.parse_args()
    url = args.url or "corral://127.0.0.1:2605"
    if args.role == "master":
        where = urlsplit(url)
        if where.scheme != "corral" or where.port is None:
            parser.error(f"master: --url must be corral://host:port, not {url!r}")
        return corral_main(["serve", "--host", str(where.hostname),
                            "--port", str(where.port)])
    if args.role == "worker":
        logging.basicConfig(level=logging.INFO, format="%(message)s")  # says when it waits
        tasks.worker("tasks", corral=url).run()
        return 0
    if args.role == "push":
        if not args.task:
            parser.error("push needs a task name")
        push(url, args.task, args.args, args.wait)
        return 0
    with ExitStack() as stack:
        if args.url is None:  # a server of our own, for this run
            url = stack.enter_context(background_server(zmq=False)).tcp
        workers = [subprocess.Popen([sys.executable, __file__, "worker", "--url", url])
                   for _ in range(2)]
        try:
            ok = push(url, "add", ["2", "3"], True) == 5
            ok &= isinstance(push(url, "time", [], True), float)
            ok &= push(url, "whoami", [], True) in {w.pid for w in workers}
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(30)
    print("every task ran" if ok else "A TASK WENT WRONG")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
