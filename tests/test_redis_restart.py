"""Corral on Redis across a redis-server restart, and while Redis does not answer.

Each test starts its own redis-server on a unix socket in a temp dir, with
``--appendonly yes --appendfsync always`` so that its state survives a restart: stopped
(SIGTERM, Redis's SHUTDOWN: the AOF fsynced, the socket removed) and started again on the
same directory and socket. One test freezes it instead (SIGSTOP): connected, but silent.

What a coordination library owes its users there, as the TCP client promises across a
corral server restart (``corral.adapters.client``; tests/test_network_promises.py):

- a ``Worker`` given a URL outlives the restart and goes on with the jobs put after it;
  no job is lost, and only a job in hand during the outage may run twice;
- a parked wait (``wait_pop_next``, ``claim``) either resumes or ends with a corral
  error (``Closed``), never with redis-py's exceptions and never by hanging; what is
  put after the restart reaches a live caller, never a waiter nobody reads;
- a subscription goes on (told if it may have missed events) or ends clearly, never
  falls silent;
- a command while Redis is down raises ``Closed`` at once, ``wait_connected`` says
  when Redis is back, and the same facade then works again;
- a timed wait keeps its timeout even when Redis stops answering.

Every wait here is bounded: a test that finds a hang fails, it does not hang.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import RedisServer, running_redis, start, wait_until

from corral.adapters._redis_client import RedisCorral
from corral.adapters.client import connect
from corral.adapters.workers import Worker
from corral.kernel import Closed, CorralError, Empty

_prefixes = itertools.count()

# The two outages: one longer than three heartbeats (every session of the facade under
# test lapses in Redis as soon as Redis runs a call after the restart), and a restart
# quicker than three heartbeats (its sessions are still alive in Redis after it, and
# their waiters still queued there, as the AOF kept them).
OUTAGES = pytest.mark.parametrize(("heartbeat", "down"), [("0.2", 1.5), ("1", 0.0)],
                                  ids=["sessions-lapse", "quick-restart"])


Server = RedisServer


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """With its AOF fsynced on every write, which every URL of it asks for too."""
    with running_redis(tmp_path, "--appendonly", "yes", "--appendfsync", "always",
                       durability="always") as server:
        yield server


@pytest.fixture
def prefix() -> str:
    return f"r{os.getpid()}x{next(_prefixes)}"


@pytest.fixture
def raw(server: Server) -> Iterator[redis.Redis]:
    """A plain redis-py client, to look at the keys (its pool reconnects by itself)."""
    client = server.client()
    with contextlib.closing(client):
        yield client


@pytest.fixture
def thread_errors(monkeypatch: pytest.MonkeyPatch) -> list[BaseException]:
    """What killed any thread during the test (a worker's claiming thread, say)."""
    errors: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook",
                        lambda args: errors.append(args.exc_value))
    return errors


def queued(raw: redis.Redis, prefix: str, name: str) -> int:
    """How many waiters Redis queues on container ``name``'s main wait."""
    return int(raw.llen(f"{prefix}:{{{name}}}:w"))


def mailboxes(raw: redis.Redis, prefix: str) -> list[bytes]:
    """The wait mailboxes left in Redis: what was pushed there and is read by nobody."""
    return sorted(raw.scan_iter(f"{prefix}:*:mb:*"))


class Outcome:
    """What a call run on a thread of its own returned or raised (None: not ended)."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self.ended = threading.Event()
        self.thread = start(self._run, call)

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self.value = call()
        except BaseException as error:
            self.error = error
        finally:
            self.ended.set()

    def __repr__(self) -> str:
        if not self.ended.is_set():
            return "<still running>"
        return f"<raised {self.error!r}>" if self.error else f"<returned {self.value!r}>"


# -- 1. a Worker across a restart -----------------------------------------------------------


@OUTAGES
def test_a_parked_worker_goes_on_after_a_redis_restart(
        server: Server, prefix: str, heartbeat: str, down: float,
        thread_errors: list[BaseException]) -> None:
    """A Worker connected by URL (two claiming threads) runs jobs; redis-server restarts
    while both its threads are parked in a claim: it goes on with the jobs put after
    the restart, with both threads, and every job runs exactly once."""
    ran: Counter[int] = Counter()
    lock = threading.Lock()

    def work(n: int) -> int:
        with lock:
            ran[n] += 1
        return n * n

    worker = Worker("sq", work, corral=server.url(prefix, heartbeat=heartbeat),
                    concurrency=2)
    running = Outcome(worker.run)
    # the producer: another process, which keeps its default heartbeat
    with connect(server.url(prefix)) as producer:
        try:
            jobs = producer.jobs("sq")
            before = [jobs.put(n) for n in range(20)]
            assert [n * n for n in range(20)] == [jobs.result(id, timeout=10) for id in before]
            wait_until(lambda: 2 == jobs.statistics().waiters)  # both threads parked

            server.restart(down)

            after = [jobs.put(n) for n in range(100, 120)]
            give_up = time.monotonic() + 15
            results = []
            for id in after:
                try:
                    results.append(jobs.result(id, timeout=max(0.1, give_up - time.monotonic())))
                except Empty:
                    results.append("not run within 15 s")
                    break
            stats = jobs.statistics()
        finally:
            worker.stop(timeout=5)
            running.ended.wait(10)

    assert [n * n for n in range(100, 120)] == results, (
        f"the worker did not go on after the restart: {thread_errors!r}, run {running!r}")
    assert [] == thread_errors, "a worker thread died"
    assert running.ended.is_set() and running.error is None, running
    assert Counter({n: 1 for n in [*range(20), *range(100, 120)]}) == ran, (
        "a job ran twice, or not at all")
    assert (40, 0, 0, 0) == (stats.finished, stats.ready, stats.delayed, stats.stalled)


@OUTAGES
def test_a_job_in_hand_across_a_restart_is_finished_and_runs_at_most_twice(
        server: Server, prefix: str, heartbeat: str, down: float,
        thread_errors: list[BaseException]) -> None:
    """A Worker holds a slow job while redis-server restarts. Down longer than three of
    its heartbeats, its claim lapses in Redis and comes back to the queue: the job is
    finished all the same, run at least once and at most twice (its first run's late
    finish is fenced). After a quicker restart its claim is still its own: the job runs
    once. The worker goes on either way."""
    ran: Counter[Any] = Counter()
    lock = threading.Lock()
    slow_started = threading.Event()

    def work(n: Any) -> Any:
        with lock:
            ran[n] += 1
        if n == "slow":
            slow_started.set()
            time.sleep(2.5)
            return "done"
        return n * n

    worker = Worker("sq", work, corral=server.url(prefix, heartbeat=heartbeat))
    running = Outcome(worker.run)
    with connect(server.url(prefix)) as producer:
        try:
            jobs = producer.jobs("sq")
            slow = jobs.put("slow")
            assert slow_started.wait(10)
            server.restart(down)
            after = [jobs.put(n) for n in range(5)]
            results = [jobs.result(id, timeout=15) for id in [slow, *after]]
            stats = jobs.statistics()
        finally:
            worker.stop(timeout=5)
            running.ended.wait(10)
    assert ["done", 0, 1, 4, 9, 16] == results
    assert 1 <= ran["slow"] <= 2
    if down == 0.0:
        assert 1 == ran["slow"], "a claim outlived a quick restart, yet its job ran again"
    assert Counter(range(5)) == Counter({n: ran[n] for n in range(5)})
    assert (6, 0, 0) == (stats.finished, stats.ready, stats.stalled)
    assert [] == thread_errors
    assert running.error is None, running


# -- 2. parked waits across a restart -----------------------------------------------------


@OUTAGES
def test_parked_waits_resume_or_fail_clearly_and_nothing_goes_to_nobody(
        server: Server, raw: redis.Redis, prefix: str, heartbeat: str, down: float,
        thread_errors: list[BaseException]) -> None:
    """A thread parked in ``wait_pop_next(timeout=None)`` and one in
    ``claim(timeout=None)`` while redis-server restarts. Each either resumes (and gets
    what is put after the restart) or ends with a corral error, never redis-py's; and
    what is put after the restart goes to a live caller: to the waiter if it still
    waits, or else it stays in the container for the next caller (a record, a ready
    job on its first attempt), not into the mailbox of a waiter nobody reads."""
    with connect(server.url(prefix, heartbeat=heartbeat)) as a, \
            connect(server.url(prefix)) as b:
        b.list("l")
        b.jobs("j")
        popping = Outcome(lambda: a.list("l").wait_pop_next(timeout=None))
        claiming = Outcome(lambda: a.jobs("j").claim(timeout=None))
        wait_until(lambda: 1 == queued(raw, prefix, "l") == queued(raw, prefix, "j"))

        server.restart(down)

        time.sleep(0.5)  # a facade that resumes has had time to be back
        b.list("l").push_back("after")
        id = b.jobs("j").put("after")
        popping.ended.wait(10)
        claiming.ended.wait(10)
        assert popping.ended.is_set(), "wait_pop_next still parked: the record went elsewhere"
        assert claiming.ended.is_set(), "claim still parked: the job went elsewhere"

        if popping.error is None:
            assert "after" == popping.value
        else:  # the record is still there, for the next caller
            try:
                assert "after" == b.list("l").wait_pop_next(timeout=5)
            except Empty:
                pytest.fail(f"the waiter raised {popping.error!r} and the record went to "
                            f"nobody: {raw.lrange(f'{prefix}:{{l}}:w', 0, -1)} queued, "
                            f"mailboxes {mailboxes(raw, prefix)}")
        if claiming.error is None:
            job = claiming.value
            a.jobs("j").finish(job)
        else:
            try:
                job = b.jobs("j").claim(timeout=5)
            except Empty:
                pytest.fail(f"the claimer raised {claiming.error!r} and the job went to "
                            f"nobody: {b.jobs('j').info(id)}")
            b.jobs("j").finish(job)
        assert (id, "after", 1) == (job.id, job.item, job.attempt)
        for outcome in (popping, claiming):
            assert outcome.error is None or isinstance(outcome.error, CorralError), (
                f"a parked wait ended with redis-py's {outcome.error!r}, not a corral error")
        wait_until(lambda: 0 == queued(raw, prefix, "l") == queued(raw, prefix, "j"),
                   limit=5)
    assert [] == mailboxes(raw, prefix), "mailboxes of ended sessions left in Redis"
    assert [] == thread_errors


def test_a_parked_wait_outlives_three_heartbeats_without_any_claim(
        server: Server, raw: redis.Redis, prefix: str) -> None:
    """No restart: a facade that never claimed nor subscribed parks a wait longer than
    three of its heartbeats. The heartbeat keeps it alive: it gets the record pushed
    then, and a timed wait ends in Empty (its timeout), not Closed."""
    with connect(server.url(prefix, heartbeat="0.2")) as a, \
            connect(server.url(prefix)) as b:
        b.list("l")
        popping = Outcome(lambda: a.list("l").wait_pop_next(timeout=None))
        wait_until(lambda: 1 == queued(raw, prefix, "l"))
        time.sleep(1.5)  # seven heartbeats
        b.list("l").push_back("late")
        assert popping.ended.wait(5), popping
        assert (None, "late") == (popping.error, popping.value)
        with pytest.raises(Empty):
            a.list("l").wait_pop_next(timeout=1.5)


# -- 3. a subscription across a restart ---------------------------------------------------


def test_a_subscription_goes_on_across_a_restart_or_ends_clearly(
        server: Server, prefix: str) -> None:
    """A subscription across a restart (its session lapses in Redis meanwhile) goes on:
    it hears what is pushed after the restart, and if it may have missed an event it is
    told so (a "reconnected" event, as over TCP) before what it hears next; or it ends
    with a reason. It does not fall silent."""
    with connect(server.url(prefix, heartbeat="0.2")) as a, \
            connect(server.url(prefix)) as b:
        events = a.list("l").subscribe()
        b.list("l").push_back("before")
        first = events.get(timeout=5)
        assert ("push_back", "before") == (first.name, first.value)

        server.restart(1.5)

        b.list("l").push_back("right after")  # maybe before the subscriber is back
        time.sleep(1.5)  # the subscriber is surely back
        b.list("l").push_back("later")
        heard: list[tuple[str, Any]] = []
        ended = None
        give_up = time.monotonic() + 10
        while ("push_back", "later") not in heard and time.monotonic() < give_up:
            try:
                event = events.get(timeout=max(0.01, give_up - time.monotonic()))
            except Empty:
                break
            except Closed as error:  # it ended, with its reason
                ended = error
                break
            heard.append((event.name, event.value))
    if ended is not None:
        assert "subscription ended" in str(ended)
        return
    assert ("push_back", "later") in heard, (
        f"the subscription fell silent after the restart: heard {heard}")
    names = [name for name, _ in heard]
    if ("push_back", "right after") not in heard:
        assert "reconnected" in names[:names.index("push_back")], (
            f"an event was missed without a word: heard {heard}")


# -- 4. commands while Redis is down ------------------------------------------------------


def test_commands_while_redis_is_down_raise_closed_and_work_again_after(
        server: Server, prefix: str) -> None:
    """While redis-server is down a command raises corral's Closed at once (as over
    TCP), not redis-py's ConnectionError; ``wait_connected`` says False until Redis is
    back, then True; the same facade and handles then work again."""
    with connect(server.url(prefix)) as a:
        lst, jobs = a.list("l"), a.jobs("j")
        lst.push_back(1)
        server.stop()
        for call in (lambda: lst.push_back(2), lst.count,
                     lambda: lst.wait_pop_next(timeout=0),
                     lambda: jobs.claim(timeout=1), lambda: a.list("other")):
            with pytest.raises(Closed) as raised:
                call()
            assert isinstance(raised.value.__cause__, redis.RedisError)
        assert not a.wait_connected(0.5), "wait_connected said True while Redis is down"
        server.start()
        assert a.wait_connected(10)
        lst.push_back(3)
        assert [1, 3] == [record.value for record in lst.query()]


# -- a Redis that does not answer ---------------------------------------------------------


def test_a_timed_wait_keeps_its_timeout_while_redis_is_frozen(
        server: Server, raw: redis.Redis, prefix: str) -> None:
    """redis-server stops answering (SIGSTOP: its connections stay open) while a thread
    is parked in a wait with a 0.5 s timeout, and while another runs a command: each
    ends within seconds, with Empty or Closed, instead of hanging for as long as Redis
    stays silent (here 8 s; a network partition can be forever)."""
    with connect(server.url(prefix)) as a:
        assert isinstance(a, RedisCorral)
        lst = a.list("l")
        popping = Outcome(lambda: lst.wait_pop_next(timeout=0.5))
        wait_until(lambda: 1 == queued(raw, prefix, "l"))
        server.freeze()
        try:
            pushing = Outcome(lambda: lst.push_back("x"))
            assert popping.ended.wait(8), "a 0.5 s wait still blocked 8 s into the freeze"
            assert isinstance(popping.error, (Empty, Closed)), popping
            assert pushing.ended.wait(8), "a push still blocked 8 s into the freeze"
            assert isinstance(pushing.error, Closed), pushing
        finally:
            server.thaw()
        popping.ended.wait(10)
        pushing.ended.wait(10)
        assert a.wait_connected(10)
        lst.push_back("y")
        assert "y" == lst.query()[-1].value



def test_a_parking_call_whose_answer_was_lost_leaves_no_waiter_behind(
        server: Server, raw: redis.Redis, prefix: str) -> None:
    """Redis freezes just as a thread parks a wait: the parking call times out (Closed)
    but Redis, thawed, runs it all the same, parking a waiter for a caller that has
    left. Once Redis answers again that waiter is withdrawn: what is pushed next stays
    in the list for the next caller, it does not go into a mailbox nobody reads."""
    with connect(server.url(prefix)) as a, connect(server.url(prefix)) as b:
        lst, other = a.list("l"), b.list("l")
        lst.push_back("first")
        assert "first" == lst.wait_pop_next(timeout=1)  # (the next wait: one call)
        server.freeze()
        try:
            popping = Outcome(lambda: lst.wait_pop_next(timeout=None))
            assert popping.ended.wait(30), "a wait still blocked 30 s into the freeze"
            assert isinstance(popping.error, Closed), popping
        finally:
            server.thaw()
        assert a.wait_connected(10)
        time.sleep(0.5)
        other.push_back("x")
        try:
            assert "x" == other.wait_pop_next(timeout=5)
        except Empty:
            pytest.fail(f"the record went to a waiter nobody reads: "
                        f"{raw.lrange(f'{prefix}:{{l}}:w', 0, -1)} queued, "
                        f"mailboxes {mailboxes(raw, prefix)}")
        wait_until(lambda: 0 == queued(raw, prefix, "l"), limit=5)


def test_a_worker_stops_while_redis_is_frozen(
        server: Server, raw: redis.Redis, prefix: str,
        thread_errors: list[BaseException]) -> None:
    """A Worker parked in a claim is stopped (as by SIGTERM) while Redis does not
    answer: ``stop()`` returns, and ``run()`` with it, in bounded time and without an
    error, so that the worker process can exit."""
    worker = Worker("sq", lambda n: n, corral=server.url(prefix))
    running = Outcome(worker.run)
    wait_until(lambda: 1 == queued(raw, prefix, "sq"))
    server.freeze()
    try:
        stopping = Outcome(lambda: worker.stop(timeout=5))
        assert stopping.ended.wait(30), "stop() still blocked 30 s into the freeze"
        assert stopping.error is None, stopping
        assert running.ended.wait(5) and running.error is None, running
    finally:
        server.thaw()
    assert [] == thread_errors


def test_a_job_put_just_after_a_quick_restart_runs_at_once(
        server: Server, raw: redis.Redis, prefix: str) -> None:
    """The claim a worker had parked when Redis went is settled as soon as Redis is
    back (before the worker claims again), not at the next heartbeat: a job put just
    after the restart is not handed to the abandoned claim."""
    # a heartbeat far longer than the result's wait: only settling on reconnection can
    # free the job in time
    worker = Worker("sq", lambda n: n, corral=server.url(prefix, heartbeat="120"))
    Outcome(worker.run)
    with connect(server.url(prefix)) as producer:
        try:
            jobs = producer.jobs("sq")
            wait_until(lambda: 1 == queued(raw, prefix, "sq"))
            server.restart(0.0)
            assert 1 == jobs.result(jobs.put(1), timeout=30)
        finally:
            worker.stop(timeout=5)
