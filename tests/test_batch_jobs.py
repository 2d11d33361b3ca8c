"""Fewer round trips per job: put_many, claim_many and finish_and_claim, on every
facade (embedded, over TCP and over ZeroMQ; threads and trio), and a Worker's prefetch."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import trio
from conftest import serving, wait_until
from test_connection import Pair

from corral.adapters.client import open_client
from corral.adapters.threads import Corral
from corral.adapters.trio import open_corral
from corral.adapters.workers import Worker
from corral.kernel import Empty, InvalidArgument, JobState, Kind, LeaseLost


def test_put_many_puts_each_in_order_all_or_none(corral: Corral) -> None:
    jobs = corral.jobs("render")
    ids = jobs.put_many(["a", {"b": 2}, ["c"]], priority=3)
    assert 3 == len(set(ids))
    assert ["a", {"b": 2}, ["c"]] == [jobs.info(id).item for id in ids]
    assert {3} == {jobs.info(id).priority for id in ids}
    assert [] == jobs.put_many([])
    assert ids == [jobs.claim(timeout=0).id for _ in ids]
    with pytest.raises(InvalidArgument):
        jobs.put_many(["x"], delay=-1)
    assert 0 == jobs.statistics().ready  # nothing went in


def test_claim_many_takes_what_is_ready_each_under_its_own_lease(corral: Corral) -> None:
    jobs = corral.jobs("render", lease=30)
    ids = jobs.put_many(range(5))
    first = jobs.claim_many(3, timeout=0, lease=10)
    assert ids[:3] == [job.id for job in first]
    assert [1, 1, 1] == [job.attempt for job in first]
    assert all(jobs.state(id) is JobState.CLAIMED for id in ids[:3])
    rest = jobs.claim_many(10, timeout=0)
    assert ids[3:] == [job.id for job in rest]
    for job in first + rest:
        job.finish(job.item * 2)
    assert [0, 2, 4, 6, 8] == [jobs.result(id, timeout=0) for id in ids]
    with pytest.raises(Empty):
        jobs.claim_many(2, timeout=0)
    with pytest.raises(InvalidArgument):
        jobs.claim_many(0, timeout=0)


def test_claim_many_parks_for_one_when_none_is_ready(corral: Corral) -> None:
    jobs = corral.jobs("render")
    got: list[Any] = []
    parked = threading.Thread(target=lambda: got.append(jobs.claim_many(4, timeout=30)))
    parked.start()
    wait_until(lambda: jobs.statistics().waiters == 1)
    jobs.put_many(["x", "y"])
    parked.join(10)
    assert [["x"]] == [[job.item for job in batch] for batch in got]
    assert 1 == jobs.statistics().ready
    assert ["y"] == [job.item for job in jobs.claim_many(2, timeout=30)]  # at once


def test_finish_and_claim_is_a_workers_loop_in_one_call(corral: Corral) -> None:
    jobs = corral.jobs("render")
    ids = jobs.put_many(["a", "b"])
    job = jobs.claim(timeout=0)
    following = job.finish_and_claim("A", timeout=0)
    assert following is not None and ids[1] == following.id
    assert "A" == jobs.result(ids[0], timeout=0)
    with pytest.raises(LeaseLost):
        job.finish_and_claim("again", timeout=0)  # stale: nothing done
    assert following.finish_and_claim("B", timeout=0) is None  # none ready: finished
    assert "B" == jobs.result(ids[1], timeout=0)
    jobs.put("c")
    last = jobs.claim(timeout=0)
    assert last.finish_and_claim("C", timeout=0.05) is None  # timed out: finished too
    assert "C" == jobs.result(last.id, timeout=0)


def test_finish_and_claim_parks_and_is_served(corral: Corral) -> None:
    jobs = corral.jobs("render")
    jobs.put("first")
    job = jobs.claim(timeout=0)
    got: list[Any] = []
    parked = threading.Thread(target=lambda: got.append(job.finish_and_claim("done")))
    parked.start()
    wait_until(lambda: jobs.statistics().waiters == 1)
    assert "done" == jobs.result(job.id, timeout=0)
    jobs.put("second")
    parked.join(10)
    assert ["second"] == [j.item for j in got]


def test_a_workers_prefetch_runs_every_job_once(corral: Corral) -> None:
    """Four workers, each prefetching up to 8 jobs and finishing with the next claim in
    the same command: 300 jobs, each run once."""
    jobs = corral.jobs("work")
    ran: list[int] = []
    lock = threading.Lock()

    def target(n: int) -> int:
        with lock:
            ran.append(n)
        return n * n

    workers = [Worker("work", target, corral=corral, prefetch=8).start() for _ in range(4)]
    try:
        ids = jobs.put_many(range(300))
        assert [n * n for n in range(300)] == [jobs.result(id, timeout=30) for id in ids]
    finally:
        for worker in workers:
            worker.stop(10)
    assert sorted(ran) == list(range(300))
    assert 300 == sum(w.finished for w in workers)
    with pytest.raises(InvalidArgument):
        Worker("work", target, corral=corral, prefetch=0)


def test_a_stopping_worker_runs_the_jobs_in_its_hands() -> None:
    """Jobs prefetched, or claimed by the last finish as stop() came, run before the
    worker stops: none is left claimed until its lease runs out."""
    with Corral() as corral:
        jobs = corral.jobs("work")
        jobs.put_many(range(20))
        started = threading.Event()

        def target(n: int) -> int:
            started.set()
            return n

        worker = Worker("work", target, corral=corral, prefetch=5).start()
        started.wait(10)
        worker.stop(10)
        stats = jobs.statistics()
        assert 0 == stats.claimed
        assert 20 == stats.finished + stats.ready


def test_a_cancelled_claim_many_gives_back_every_job() -> None:
    """A claim_many whose caller is gone by the time its answer comes gives every job
    it was handed back: each is ready again at its place, its attempt restored."""
    pair = Pair()
    pair.run(pair.client.create("jobs", Kind.JOBS))
    pair.run(pair.client.put_many("jobs", ["a", "b", "c"]))
    wait = pair.client.claim_many("jobs", 3, timeout=None)
    pair.client.cancel_wait(wait, gone=True)
    pair.settle()
    kernel = pair.server.kernel
    assert 3 == kernel.statistics("jobs").ready
    assert [0, 0, 0] == [kernel.info("jobs", id).attempt for id in kernel.ids("jobs")]
    assert "a" == kernel.claim(kernel.open_session(), "jobs", timeout=0).item


@pytest.mark.parametrize("remote", [False, True])
def test_the_trio_facade_has_them_too(remote: bool) -> None:
    async def main(corral: Any) -> None:
        jobs = await corral.jobs("render")
        ids = await jobs.put_many(["a", "b", "c"])
        batch = await jobs.claim_many(2, timeout=0)
        assert ids[:2] == [job.id for job in batch]
        following = await batch[1].finish_and_claim("B", timeout=0)
        assert following is not None and ids[2] == following.id
        assert await following.finish_and_claim("C", timeout=0) is None
        assert "C" == await jobs.result(ids[2], timeout=0)
        async with trio.open_nursery() as nursery:
            got: list[Any] = []

            async def claim() -> None:
                got.append(await batch[0].finish_and_claim("A"))

            nursery.start_soon(claim)
            await trio.sleep(0.05)
            await jobs.put("d")
        assert ["d"] == [job.item for job in got]

    async def embedded() -> None:
        async with open_corral() as corral:
            await main(corral)

    async def connected(url: str) -> None:
        async with open_client(url) as client:
            await main(client)

    if remote:
        with serving(zmq=False) as urls:
            trio.run(connected, urls.tcp)
    else:
        trio.run(embedded)
