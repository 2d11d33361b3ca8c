"""Jobs that fail: the failure policy (backoff with jitter, an attempt limit, the
dead-letter state), inspection, and callers hearing of it; in the kernel, durable in
the journal, and end to end through a real server with real workers."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import serving, wait_until

from corral.adapters.client import connect
from corral.adapters.threads import Corral
from corral.adapters.workers import (
    CallFailed,
    Executor,
    Tasks,
    Worker,
    call,
    push_task,
    task_result,
)
from corral.kernel import (
    Cancelled,
    InvalidArgument,
    Job,
    JobFailed,
    JobInfo,
    JobState,
    Kernel,
    Kind,
    Waiting,
)
from corral.transports.journal import Journal, JournaledKernel

TRACEBACK = ('Traceback (most recent call last):\n  File "worker.py", line 3, in run\n'
             "    1 / 0\nZeroDivisionError: division by zero\n")


def claim(kernel: Kernel, session: int, now: float) -> Job:
    job = kernel.claim(session, "j", timeout=0, now=now)
    assert isinstance(job, Job)
    return job


def fail_until_stalled(kernel: Kernel, session: int) -> list[tuple[float, float]]:
    """Claim the one job as soon as it is ready and fail it, until it stalls: each
    failure's time and the time the job came back."""
    now, spacing = 0.0, []
    while kernel.state("j", "1") is not JobState.STALLED:
        job = claim(kernel, session, now)
        kernel.cancel("j", job, reason=TRACEBACK, now=now)
        info = kernel.info("j", "1")
        if info.state is JobState.DELAYED:
            assert info.deadline is not None
            spacing.append((now, info.deadline))
            now = info.deadline
            kernel.advance(now)
    return spacing


def test_the_default_policy_backs_off_and_stalls_after_five_attempts() -> None:
    """Under the defaults a poison job is retried after 1, 2, 4 and 8 seconds, each less
    up to half (jitter), then stalls: no hot loop, and its error is kept."""
    kernel = Kernel()
    kernel.create("j", Kind.JOBS)
    session = kernel.open_session()
    kernel.put("j", "poison", now=0.0)
    spacing = fail_until_stalled(kernel, session)
    assert 4 == len(spacing)  # five attempts: four waits, then the dead letter
    for failures, (failed, back) in enumerate(spacing, 1):
        full = 2.0 ** (failures - 1)
        assert full / 2 < back - failed <= full
    info = kernel.info("j", "1")
    assert (JobState.STALLED, 5, TRACEBACK) == (info.state, info.attempt, info.error)
    assert 0 == kernel.statistics("j").ready


def test_the_backoff_replays_bit_for_bit_and_caps() -> None:
    """The jitter comes from the kernel's own seeded generator: the same commands give
    the same schedule in any kernel; the delay never passes backoff_max."""
    schedules = []
    for _ in range(2):
        kernel = Kernel()
        kernel.create("j", Kind.JOBS, max_attempts=12, backoff=0.5, backoff_factor=3.0,
                      backoff_max=20.0)
        session = kernel.open_session()
        kernel.put("j", "poison", now=0.0)
        schedules.append(fail_until_stalled(kernel, session))
    assert schedules[0] == schedules[1]
    waits = [back - failed for failed, back in schedules[0]]
    assert len(waits) == 11 and all(10.0 < wait <= 20.0 for wait in waits[4:])
    assert len(set(waits)) == len(waits)  # jittered: no two alike


def test_explicit_delays_and_no_limit_keep_their_meaning() -> None:
    """cancel(delay=0) is ready at once, cancel(delay=S) after S; max_attempts=0 never
    stalls; backoff=0 retries at once."""
    kernel = Kernel()
    kernel.create("j", Kind.JOBS, max_attempts=0, backoff=0)
    session = kernel.open_session()
    kernel.put("j", "x", now=0.0)
    for _ in range(50):
        kernel.cancel("j", claim(kernel, session, 0.0), now=0.0)
    assert JobState.READY == kernel.state("j", "1")
    kernel.create("k", Kind.JOBS)
    kernel.put("k", "y", now=0.0)
    token = kernel.claim(session, "k", timeout=0, now=0.0)
    assert isinstance(token, Job)
    kernel.cancel("k", token, delay=0, now=0.0)
    assert JobState.READY == kernel.state("k", "1")
    token = kernel.claim(session, "k", timeout=0, now=0.0)
    assert isinstance(token, Job)
    kernel.cancel("k", token, delay=7.5, now=0.0)
    assert 7.5 == kernel.info("k", "1").deadline
    with pytest.raises(InvalidArgument):
        kernel.create("bad", Kind.JOBS, backoff_factor=0.5)


def test_result_readers_hear_of_the_dead_letter_at_once() -> None:
    """A parked result reader is cancelled with JobFailed when the job stalls, with the
    job's error; a later reader gets it at once; a retry lets it run again."""
    kernel = Kernel()
    kernel.create("j", Kind.JOBS, max_attempts=1)
    me, reader = kernel.open_session(), kernel.open_session()
    kernel.put("j", "x", now=0.0)
    waiting = kernel.result(reader, "j", "1", now=0.0)
    assert isinstance(waiting, Waiting)
    kernel.cancel("j", claim(kernel, me, 1.0), reason=TRACEBACK, now=1.0)
    (effect,) = [e for e in kernel.take_effects() if isinstance(e, Cancelled)]
    assert isinstance(effect.error, JobFailed) and effect.waiter == waiting.waiter
    assert ("ZeroDivisionError", "division by zero", TRACEBACK) == (
        effect.error.remote_type, effect.error.remote_message, effect.error.error)
    with pytest.raises(JobFailed, match="division by zero"):
        kernel.result(reader, "j", "1", now=2.0)
    assert ["1"] == kernel.ids("j", state=JobState.STALLED)
    assert 1 == kernel.retry_all("j", now=3.0)
    assert JobState.READY == kernel.state("j", "1")
    assert 0 == kernel.retry_all("j", now=3.0)


def test_info_ids_and_a_bounded_error() -> None:
    """info has the job's whole story; ids pages by state; a huge error keeps its head
    and its tail (where the exception line is)."""
    kernel = Kernel()
    kernel.create("j", Kind.JOBS, lease=10.0)
    session = kernel.open_session()
    for n in range(5):
        kernel.put("j", {"n": n}, priority=n % 2, now=1.0)
    job = claim(kernel, session, 2.0)
    assert JobInfo(id=job.id, item=job.item, state=JobState.CLAIMED, attempt=1, priority=1,
                   created=1.0, claimed=2.0, deadline=12.0) == kernel.info("j", job.id)
    kernel.finish("j", job, "done", now=3.0)
    finished = kernel.info("j", job.id)
    assert (JobState.FINISHED, 3.0, "done", None) == (
        finished.state, finished.ended, finished.result, finished.deadline)
    assert ["1", "3", "4", "5"] == kernel.ids("j")
    assert ["3", "4"] == kernel.ids("j", state=JobState.READY, start=1, end=3)
    assert [job.id] == kernel.ids("j", state="finished")
    with pytest.raises(InvalidArgument):
        kernel.ids("j", state="lost")
    huge = "x" * 100_000 + "\nValueError: the end\n"
    failing = claim(kernel, session, 4.0)
    kernel.cancel("j", failing, reason=huge, now=4.0)
    error = kernel.info("j", failing.id).error
    assert error is not None and len(error) <= 8192 and error.endswith("the end\n")
    assert "characters cut" in error


def test_a_stalled_job_and_the_backoff_survive_a_restart(tmp_path: Path) -> None:
    """The policy's state is journaled: a replayed kernel has the same deadlines, the
    same generator, and the stalled job's record with its error."""
    kernel = JournaledKernel(Journal(tmp_path))
    kernel.create("j", Kind.JOBS, max_attempts=3, backoff=2.0)
    session = kernel.open_session()
    kernel.put("j", "poison", now=0.0)
    kernel.cancel("j", claim(kernel, session, 1.0), reason=TRACEBACK, now=1.0)
    first = kernel.info("j", "1")
    kernel.journal.close()
    replayed = JournaledKernel(Journal(tmp_path))
    assert first == replayed.info("j", "1")
    replayed.advance(first.deadline or math.inf)
    for now in (10.0, 20.0):
        job = claim(replayed, session, now)
        replayed.cancel("j", job, reason=TRACEBACK, now=now)
        replayed.advance(replayed.info("j", job.id).deadline or now)
    stalled = [replayed.info("j", id) for id in replayed.ids("j", state="stalled")]
    replayed.journal.close()
    again = JournaledKernel(Journal(tmp_path))
    assert stalled == [again.info("j", id) for id in again.ids("j", state="stalled")]
    assert len(stalled) == 1 and stalled[0].error == TRACEBACK
    again.journal.close()


# -- end to end: workers, callers, a real server -------------------------------------------


def test_a_poison_job_over_a_server_backs_off_stalls_and_tells_the_caller() -> None:
    """A named task that always raises, over TCP: its attempts are spaced by the
    policy (at least half of each backoff apart), it ends stalled with the worker's
    traceback, the caller hears JobFailed as soon as it stalls, and the server does a
    handful of commands meanwhile, not a hot loop's thousands."""
    tasks, runs = Tasks(), []

    @tasks.task
    def poison() -> None:
        runs.append(threading.get_ident())
        raise ZeroDivisionError("division by zero")

    with serving() as urls, connect(urls.tcp) as client:
        jobs = client.jobs("tasks", max_attempts=4, backoff=0.2)
        before = client.stats()["commands"]
        with tasks.worker("tasks", corral=urls.tcp):
            id = push_task("poison", corral=urls.tcp)
            with pytest.raises(JobFailed) as failed:
                task_result(id, timeout=60, corral=urls.tcp)
        commands = client.stats()["commands"] - before
        info = jobs.info(id)
    assert 4 == len(runs) == info.attempt
    assert JobState.STALLED == info.state
    assert ("ZeroDivisionError", "division by zero") == (failed.value.remote_type,
                                                         failed.value.remote_message)
    assert failed.value.error == info.error
    assert info.error is not None and "Traceback (most recent call last)" in info.error
    assert 'raise ZeroDivisionError("division by zero")' in info.error
    assert commands < 80, commands  # put, claims, cancels, touches: no hot loop


def test_worker_attempts_are_spaced_by_the_backoff() -> None:
    """Embedded, the times a worker's target runs are at least the policy's minimum
    apart (half of each backoff: the jitter takes up to half)."""
    times: list[float] = []
    with Corral() as corral:
        jobs = corral.jobs("spaced", max_attempts=3, backoff=0.1, backoff_factor=2.0)

        def fail(item: Any) -> None:
            times.append(corral._clock())
            raise RuntimeError(f"cannot do {item}")

        id = jobs.put("x")
        with Worker("spaced", fail, corral=corral):
            wait_until(lambda: jobs.state(id) is JobState.STALLED)
        assert "RuntimeError: cannot do x" in (jobs.info(id).error or "")
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert 3 == len(times) and gaps[0] >= 0.05 and gaps[1] >= 0.1


@pytest.mark.parametrize("remote", [False, True])
def test_call_failed_carries_the_traceback(remote: bool) -> None:
    def divide(pair: list[int]) -> float:
        return pair[0] / pair[1]

    with serving() as urls, Corral() as embedded:
        where: Corral | str = urls.tcp if remote else embedded
        with Executor("divide", divide, corral=where), pytest.raises(CallFailed) as failed:
            call("divide", [1, 0], timeout=30, corral=where)
    assert isinstance(failed.value, JobFailed)
    assert "ZeroDivisionError" == failed.value.remote_type
    assert "return pair[0] / pair[1]" in failed.value.error
