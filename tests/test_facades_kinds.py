"""Feeds, sorted feeds, queues and jobs through the thread and trio facades."""

from __future__ import annotations

import random
import threading
from collections import Counter
from typing import Any

import pytest
import trio
import trio.testing
from conftest import start, wait_until

from corral.adapters import trio as corral_trio
from corral.adapters.threads import Corral
from corral.kernel import (
    Empty,
    InvalidArgument,
    JobState,
    LeaseLost,
    LimitExceeded,
    NotFound,
)


def test_feed_and_sorted_feed_surface(corral: Corral) -> None:
    """Feeds and sorted feeds through the thread facade, with their events."""
    feed = corral.feed("news", max_length=2)
    sub = feed.subscribe()
    first = feed.publish("a")
    feed.publish("b", id="b")
    feed.publish("c")
    assert ["b", "2"] == feed.ids()
    assert [("b", "b"), ("2", "c")] == feed.items()
    assert "c" == feed.get("2")
    feed.retract("b")
    with pytest.raises(NotFound):
        feed.retract(first)
    assert ["publish", "publish", "retract", "publish", "retract"] == [
        sub.get(timeout=1).name for _ in range(5)]
    with pytest.raises(InvalidArgument):
        corral.feed("news", max_length=3)
    board = corral.sorted_feed("board")
    one, two = board.append("one"), board.prepend("two")
    board.insert_after(two, "mid")
    board.move_last(two)
    board.edit(one, "ONE")
    assert [("mid", 3), ("ONE", 1), ("two", 2)] == [(item, id) for id, item in
                                                    board.items()]


def test_queue_hand_off_and_bound(corral: Corral) -> None:
    """A getter thread is served by a put; a full queue refuses or makes the putter
    wait for room."""
    q = corral.queue("q", max_length=1)
    got: list[Any] = []
    getter = start(lambda: got.append(q.get(timeout=10)))
    wait_until(lambda: q.statistics().waiters == 1)
    q.put("first")
    getter.join(10)
    assert ["first"] == got
    q.put("fills it")
    with pytest.raises(LimitExceeded):
        q.put("too many")
    with pytest.raises(LimitExceeded):
        q.put("still too many", timeout=0.01)
    putter = start(lambda: q.put("patient", timeout=None))
    wait_until(lambda: q.statistics().waiters == 1)
    assert "fills it" == q.get_nowait()
    putter.join(10)
    assert "patient" == q.get_nowait()
    with pytest.raises(Empty):
        q.get_nowait()


def test_result_waits_for_another_thread(corral: Corral) -> None:
    """result() blocks until a worker thread finishes the job."""
    jobs = corral.jobs("render")
    jid = jobs.put({"frame": 1})
    results: list[Any] = []
    reader = start(lambda: results.append(jobs.result(jid, timeout=10)))
    job = jobs.claim(timeout=1)
    assert ({"frame": 1}, 1) == (job.item, job.attempt)
    job.finish("frame-1.png")
    reader.join(10)
    assert ["frame-1.png"] == results
    assert JobState.FINISHED == jobs.state(jid)


def test_lease_expiry_is_fired_by_the_alarm(corral: Corral) -> None:
    """An unfinished claim expires with nobody waiting; the job goes to the next
    claimer as attempt 2, and the late finish is fenced."""
    jobs = corral.jobs("j", lease=0.05)
    jobs.put("work")
    stale = jobs.claim(timeout=0)
    wait_until(lambda: jobs.state("1") is JobState.READY)
    again = jobs.claim(timeout=5)
    assert 2 == again.attempt
    with pytest.raises(LeaseLost):
        stale.finish("late")
    again.touch(lease=30)
    again.finish("on time")
    assert "on time" == jobs.result("1", timeout=0)


def test_max_attempts_and_retry(corral: Corral) -> None:
    """Cancels count; the job stalls at max_attempts and runs again after retry."""
    jobs = corral.jobs("j", max_attempts=2, backoff=0)  # a cancel retries at once
    jid = jobs.put("flaky")
    jobs.claim(timeout=0).cancel(reason="try again")
    jobs.claim(timeout=0).cancel(reason="gave up")
    assert JobState.STALLED == jobs.state(jid)
    with pytest.raises(Empty):
        jobs.claim(timeout=0)
    jobs.retry(jid)
    job = jobs.claim(timeout=0)
    assert 1 == job.attempt
    job.stall("needs a human")
    jobs.retract(jid)
    assert JobState.RETRACTED == jobs.state(jid)
    assert [] == jobs.ids()


def test_eight_threads_random_cancels_every_job_finished_once(corral: Corral) -> None:
    """8 worker threads claim jobs and randomly cancel (with or without a delay) or
    finish them; every job is finished exactly once and nothing is left."""
    jobs = corral.jobs("work", lease=30, max_attempts=0, backoff=0)  # no limit, at once
    n_jobs, n_workers = 400, 8
    ids = [jobs.put(i, priority=i % 3) for i in range(n_jobs)]
    finished: list[str] = []
    lock = threading.Lock()

    def work(seed: int) -> None:
        rng = random.Random(seed)
        while True:
            try:
                job = jobs.claim(timeout=0.5)
            except Empty:
                return
            roll = rng.random()
            if roll < 0.3:
                job.cancel()
            elif roll < 0.4:
                job.cancel(delay=0.001)
            else:
                job.finish(job.item * 2)
                with lock:
                    finished.append(job.id)

    workers = [start(work, seed) for seed in range(n_workers)]
    for worker in workers:
        worker.join(60)
    assert {jid: 1 for jid in ids} == dict(Counter(finished))
    stats = jobs.statistics()
    assert (n_jobs, 0, 0, 0) == (stats.finished, stats.ready, stats.claimed, stats.delayed)
    assert [i * 2 for i in range(n_jobs)] == [jobs.result(jid, timeout=0) for jid in ids]


def run_trio(test: Any) -> None:
    async def main() -> None:
        async with corral_trio.open_corral() as corral:
            await test(corral)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_trio_jobs_lease_expiry_and_results() -> None:
    """In trio, a lease expires at its deadline on the MockClock, and a result reader
    is woken by the finish."""

    async def test(corral: corral_trio.Corral) -> None:
        jobs = await corral.jobs("j", lease=10, backoff=0)  # expired: ready at once
        jid = await jobs.put("x")
        first = await jobs.claim()
        start = trio.current_time()
        second = await jobs.claim()  # parks until the first lease expires
        assert (start + 10, 2) == (trio.current_time(), second.attempt)
        with pytest.raises(LeaseLost):
            await first.finish()
        async with trio.open_nursery() as nursery:
            got: list[Any] = []

            async def read() -> None:
                got.append(await jobs.result(jid))

            nursery.start_soon(read)
            await trio.testing.wait_all_tasks_blocked()
            await second.finish("done")
        assert ["done"] == got

    run_trio(test)


def test_trio_cancelled_claim_is_withdrawn() -> None:
    """Cancelling a waiting claim leaves no claimer: the next job stays ready."""

    async def test(corral: corral_trio.Corral) -> None:
        jobs = await corral.jobs("j")
        with trio.move_on_after(1):
            await jobs.claim()
        jid = await jobs.put("x")
        assert JobState.READY == await jobs.state(jid)
        assert 0 == (await jobs.statistics()).waiters

    run_trio(test)


def test_trio_queue_feed_and_delayed_jobs() -> None:
    """Queues, feeds and delayed jobs in trio, with time from the MockClock."""

    async def test(corral: corral_trio.Corral) -> None:
        q = await corral.queue("q")
        await q.put("low")
        await q.put("high", priority=9)
        assert ["high", "low"] == [await q.get(), await q.get()]
        with pytest.raises(Empty):
            await q.get(timeout=3)
        feed = await corral.feed("f")
        await feed.publish("x", id="a")
        assert [("a", "x")] == await feed.items()
        board = await corral.sorted_feed("s")
        await board.append("p")
        assert [1] == await board.ids()
        jobs = await corral.jobs("later")
        start = trio.current_time()
        await jobs.put("soon", delay=5)
        job = await jobs.claim()
        assert (start + 5, "soon") == (trio.current_time(), job.item)

    run_trio(test)
