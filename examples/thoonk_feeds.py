"""Thoonk's feeds, queues, sorted feeds and jobs, as its README uses them.

Runs embedded, on a server of its own, or against your server or Redis with ``--url``.
Every step prints what it did and checks what Thoonk promised. (The original: the
README of https://github.com/andyet/thoonk.py, on Redis.)

    python examples/thoonk_feeds.py all                  # on a server in the background
    python examples/thoonk_feeds.py                      # embedded: no server at all
    python examples/thoonk_feeds.py --url corral://127.0.0.1:2605
    python examples/thoonk_feeds.py all --url redis://127.0.0.1:6379   # on Redis
"""

from __future__ import annotations

import argparse
import sys
import threading
from contextlib import ExitStack

from corral.adapters.client import connect
from corral.adapters.threads import Corral, Facade
from corral.kernel import JobState
from corral.transports.background import background_server

HIGH = 10  # Thoonk's queue.HIGH: a higher priority comes out first


def feeds(corral: Facade) -> None:
    feed = corral.feed("test_feed", max_length=3)
    events = feed.subscribe()
    feed.publish("item contents", id="a")
    feed.publish("second", id="b")
    feed.publish("edited", id="a")  # an edit moves the item to the end
    assert ["b", "a"] == feed.ids()
    feed.retract("b")
    for n in range(5):
        feed.publish(f"n{n}", id=f"n{n}")  # max_length 3 trims the oldest
    assert ["n2", "n3", "n4"] == feed.ids()
    assert "n3" == feed.get("n3")
    print("feed:", dict(feed.items()))
    names = [events.get(timeout=5).name for _ in range(4)]
    print("feed events:", names, "...")


def sorted_feeds(corral: Facade) -> None:
    todo = corral.sorted_feed("todo")
    milk = todo.append("milk")
    bread = todo.prepend("bread")
    todo.insert_after(milk, "eggs")
    todo.move_first(milk)
    todo.edit(bread, "rye bread")
    print("sorted feed:", [item for _, item in todo.items()])
    assert ["milk", "rye bread", "eggs"] == [item for _, item in todo.items()]


def queues(corral: Facade) -> None:
    queue = corral.queue("queue_feed")
    queue.put("item")
    queue.put("priority item", priority=HIGH)
    first, second = queue.get(), queue.get(timeout=5)
    print("queue:", first, "then", second)
    assert ("priority item", "item") == (first, second)


def jobs(corral: Facade) -> None:
    job = corral.jobs("job_feed", max_attempts=3)
    id = job.put("job contents")
    urgent = job.put("priority job", priority=HIGH)

    claimed = job.claim(timeout=5)
    assert urgent == claimed.id
    claimed.cancel(delay=0, reason="not now")  # back in the queue at once, as Thoonk does
    claimed = job.claim(timeout=5)
    claimed.stall("waiting for a fix")  # paused, not deleted
    assert JobState.STALLED == job.state(claimed.id)
    job.retry(claimed.id)
    job.retract(claimed.id)  # gone, never to run

    done = threading.Thread(target=lambda: print("result:", job.result(id, timeout=5)))
    done.start()  # the job's owner waits for its result
    worker = job.claim(timeout=5)
    worker.finish(f"{worker.item}, done", result_ttl=5)
    done.join()
    print("jobs:", job.statistics())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("role", nargs="?", choices=["all"],
                        help="all: on a server of its own, unless --url is given")
    parser.add_argument("--url", help="a corral server or Redis (embedded if not given)")
    args = parser.parse_args()
    with ExitStack() as stack:
        url = args.url
        if args.role == "all" and url is None:  # a server of our own, for this run
            url = stack.enter_context(background_server(zmq=False)).tcp
        corral = stack.enter_context(connect(url) if url else Corral())
        for example in (feeds, sorted_feeds, queues, jobs):
            example(corral)
    print("all of Thoonk's examples ran")
    return 0


if __name__ == "__main__":
    sys.exit(main())
