"""Job queues in the kernel: claims are leases, and a job finishes exactly once."""

from __future__ import annotations

from typing import Any

import pytest

from corral.kernel import (
    AlreadyExists,
    Cancelled,
    Delivered,
    Empty,
    InvalidArgument,
    Job,
    JobState,
    JobStatistics,
    Kernel,
    Kind,
    LeaseLost,
    NotFound,
    Notified,
    Waiting,
)


@pytest.fixture
def k() -> Kernel:
    kernel = Kernel()
    kernel.create("jobs", Kind.JOBS, lease=10.0, backoff=0)  # retries at once
    return kernel


def claim(k: Kernel, session: int, **kw: Any) -> Job:
    job = k.claim(session, "jobs", timeout=0, **kw)
    assert isinstance(job, Job)
    return job


def names(k: Kernel) -> list[str]:
    return [e.event.name for e in k.take_effects() if isinstance(e, Notified)]


def test_claim_returns_id_item_attempt_highest_priority_first(k: Kernel) -> None:
    """A claim gets the highest priority, then the oldest job, as Job(id, item, 1)."""
    s = k.open_session()
    k.put("jobs", "low")
    k.put("jobs", "high", priority=1)
    assert Job("2", "high", 1) == claim(k, s)
    assert Job("1", "low", 1) == claim(k, s)
    with pytest.raises(Empty):
        claim(k, s)


def test_cancel_goes_to_the_back_and_counts_the_attempt(k: Kernel) -> None:
    """A cancelled job goes behind the waiting ones; its next claim is attempt 2."""
    s = k.open_session()
    first = k.put("jobs", "a")
    k.put("jobs", "b")
    job = claim(k, s)
    k.cancel("jobs", job)
    assert "b" == claim(k, s).item
    again = claim(k, s)
    assert (first, 2) == (again.id, again.attempt)
    k.cancel("jobs", again)
    assert 3 == claim(k, s).attempt


def test_stall_and_retry_reset_the_attempts(k: Kernel) -> None:
    """A stalled job waits for retry, which makes it ready with attempts reset."""
    s = k.open_session()
    k.put("jobs", "a")
    job = claim(k, s)
    k.stall("jobs", job, reason="disk full")
    assert JobState.STALLED == k.state("jobs", job.id)
    with pytest.raises(Empty):
        claim(k, s)
    k.retry("jobs", job.id)
    assert 1 == claim(k, s).attempt


def test_retry_only_from_stalled(k: Kernel) -> None:
    """retry of a job that is not stalled is refused (Thoonk queued it twice)."""
    jid = k.put("jobs", "a")
    with pytest.raises(InvalidArgument, match="is ready, not stalled"):
        k.retry("jobs", jid)
    assert ["1"] == k.ids("jobs")


def test_retract_from_every_live_state(k: Kernel) -> None:
    """retract works on ready, delayed, claimed and stalled jobs; a claim on a retracted
    job is lost; a terminal job stays as it ended."""
    s = k.open_session()
    ready = k.put("jobs", "r")
    delayed = k.put("jobs", "d", delay=5)
    claimed_job = claim(k, s)
    stalled = k.put("jobs", "s")
    stalled_job = claim(k, s)
    k.stall("jobs", stalled_job)
    finished = k.put("jobs", "f")
    k.finish("jobs", claim(k, s), "done")
    waiting = k.put("jobs", "w")
    assert ready == claimed_job.id
    for jid in (delayed, claimed_job.id, stalled, waiting):
        k.retract("jobs", jid)
        assert JobState.RETRACTED == k.state("jobs", jid)
    with pytest.raises(LeaseLost, match="retracted, not claimed"):
        k.finish("jobs", claimed_job)
    for jid, state in ((stalled, "retracted"), (finished, "finished")):
        with pytest.raises(InvalidArgument, match=f"is {state}"):
            k.retract("jobs", jid)
    with pytest.raises(NotFound):
        k.retract("jobs", "nope")
    assert JobState.FINISHED == k.state("jobs", finished)
    assert [] == k.ids("jobs")
    k._check()


def test_finish_once_then_lease_lost(k: Kernel) -> None:
    """A second finish with the same claim raises LeaseLost and changes nothing."""
    s = k.open_session()
    k.put("jobs", "a")
    job = claim(k, s)
    k.finish("jobs", job, 42)
    with pytest.raises(LeaseLost, match="finished, not claimed"):
        k.finish("jobs", job, 43)
    assert (42, None) == k.result(s, "jobs", job.id)


def test_expired_lease_goes_back_and_fences_the_old_claim(k: Kernel) -> None:
    """At the lease deadline the job is ready again; the late finish is LeaseLost."""
    s = k.open_session()
    k.subscribe(s, "jobs")
    k.put("jobs", "a")
    job = claim(k, s, now=100.0)
    assert 110.0 == k.next_deadline()
    k.advance(109.9)
    assert JobState.CLAIMED == k.state("jobs", job.id)
    k.advance(110.0)
    assert JobState.READY == k.state("jobs", job.id)
    second = claim(k, s, now=110.0)
    with pytest.raises(LeaseLost, match="attempt 2, this claim was attempt 1"):
        k.finish("jobs", job)
    k.finish("jobs", second, "ok")
    assert ["put", "claimed", "expired", "claimed", "finished"] == names(k)


def test_touch_extends_the_lease(k: Kernel) -> None:
    """touch moves the deadline to now + lease."""
    s = k.open_session()
    k.put("jobs", "a")
    job = claim(k, s, now=0.0)
    k.touch("jobs", job, now=8.0)
    k.advance(12.0)
    assert JobState.CLAIMED == k.state("jobs", job.id)
    k.touch("jobs", job, lease=1.0, now=12.0)
    k.advance(13.0)
    assert JobState.READY == k.state("jobs", job.id)
    with pytest.raises(LeaseLost):
        k.touch("jobs", job, now=13.0)


def test_max_attempts_stalls_with_the_last_reason() -> None:
    """Once max_attempts claims have failed the job stalls, keeping the last reason."""
    k = Kernel()
    k.create("j", Kind.JOBS, lease=5.0, max_attempts=2, backoff=0)
    s = k.open_session()
    k.subscribe(s, "j")
    jid = k.put("j", "a")
    first = k.claim(s, "j", timeout=0, now=0.0)
    assert isinstance(first, Job)
    k.cancel("j", first, reason="boom")
    second = k.claim(s, "j", timeout=0, now=1.0)
    assert isinstance(second, Job) and 2 == second.attempt
    k.advance(6.0)
    assert JobState.STALLED == k.state("j", jid)
    reasons = [(e.event.name, e.event.value) for e in k.take_effects()
               if isinstance(e, Notified) and e.event.name in ("cancelled", "expired",
                                                               "stalled")]
    assert [("cancelled", "boom"), ("expired", "lease expired on attempt 2"),
            ("stalled", "lease expired on attempt 2")] == reasons


def test_claimers_are_served_in_order_with_their_lease(k: Kernel) -> None:
    """Parked claimers get jobs first come, first served, each with its own lease."""
    a, b = k.open_session(), k.open_session()
    wa = k.claim(a, "jobs", lease=3.0, now=0.0)
    wb = k.claim(b, "jobs", now=0.0)
    assert isinstance(wa, Waiting) and isinstance(wb, Waiting)
    k.put("jobs", "x", now=1.0)
    k.put("jobs", "y", now=1.0)
    served = [e for e in k.take_effects() if isinstance(e, Delivered)]
    assert [(a, Job("1", "x", 1)), (b, Job("2", "y", 1))] == [
        (e.session, e.event.value) for e in served]
    assert 4.0 == k.next_deadline()  # a's lease: 1 + 3


def test_delayed_job_becomes_ready_at_its_deadline(k: Kernel) -> None:
    """put(delay=) and cancel(delay=) hold the job back until the deadline."""
    s = k.open_session()
    jid = k.put("jobs", "later", delay=5.0, now=0.0)
    assert JobState.DELAYED == k.state("jobs", jid)
    waiting = k.claim(s, "jobs", now=0.0)
    assert isinstance(waiting, Waiting)
    k.advance(5.0)
    (served,) = [e for e in k.take_effects() if isinstance(e, Delivered)]
    job = served.event.value
    k.cancel("jobs", job, delay=2.0, now=6.0)
    assert JobState.DELAYED == k.state("jobs", jid)
    k.advance(8.0)
    assert JobState.READY == k.state("jobs", jid)


def test_result_waits_and_is_forgotten_after_its_ttl(k: Kernel) -> None:
    """result() blocks until finish; the result is kept for its TTL, then forgotten."""
    worker, client = k.open_session(), k.open_session()
    jid = k.put("jobs", "a")
    waiting = k.result(client, "jobs", jid, timeout=None)
    assert isinstance(waiting, Waiting)
    with pytest.raises(Empty):
        k.result(client, "jobs", jid, timeout=0)
    k.finish("jobs", claim(k, worker), "answer", result_ttl=60.0, now=10.0)
    delivered = [e for e in k.take_effects() if isinstance(e, Delivered)]
    assert [(client, "answer")] == [(e.session, e.event.value) for e in delivered]
    k.advance(69.0)
    assert ("answer", None) == k.result(client, "jobs", jid)
    k.advance(70.0)
    with pytest.raises(NotFound):
        k.state("jobs", jid)


def test_retract_fails_result_waiters(k: Kernel) -> None:
    """A job retracted while someone waits for its result fails them with NotFound."""
    s = k.open_session()
    jid = k.put("jobs", "a")
    k.result(s, "jobs", jid)
    k.retract("jobs", jid)
    (effect,) = [e for e in k.take_effects() if isinstance(e, Cancelled)]
    assert isinstance(effect.error, NotFound)


def test_session_close_releases_leases(k: Kernel) -> None:
    """With release_on_close (the default) a closing worker's jobs are ready again at
    once, and go to the next claimer."""
    worker, other = k.open_session(), k.open_session()
    k.put("jobs", "a")
    job = claim(k, worker)
    waiting = k.claim(other, "jobs")
    k.close_session(worker)
    (served,) = [e for e in k.take_effects() if isinstance(e, Delivered)]
    assert (waiting.waiter, job.id, 2) == (  # type: ignore[union-attr]
        served.waiter, served.event.value.id, served.event.value.attempt)
    k._check()


def test_session_close_can_keep_leases_until_their_deadline() -> None:
    """With release_on_close=False the lease runs to its deadline."""
    k = Kernel()
    k.create("j", Kind.JOBS, lease=5.0, release_on_close=False, backoff=0)
    s = k.open_session()
    jid = k.put("j", "a")
    k.claim(s, "j", now=0.0)
    k.close_session(s, now=1.0)
    assert JobState.CLAIMED == k.state("j", jid)
    k.advance(5.0)
    assert JobState.READY == k.state("j", jid)
    k._check()


def test_put_rules(k: Kernel) -> None:
    """Given ids must be new non-empty strings; priorities ints; delays >= 0."""
    k.put("jobs", "a", id="x")
    with pytest.raises(AlreadyExists):
        k.put("jobs", "b", id="x")
    for bad in (lambda: k.put("jobs", "b", id=""), lambda: k.put("jobs", "b", priority=1.5),
                lambda: k.put("jobs", "b", delay=-1), lambda: k.put("jobs", "b", id=3)):
        with pytest.raises(InvalidArgument):
            bad()  # type: ignore[no-untyped-call]
    assert ["x"] == k.ids("jobs")


def test_statistics_and_events(k: Kernel) -> None:
    """statistics() counts jobs per state; subscribers see every transition by name."""
    s = k.open_session()
    k.subscribe(s, "jobs")
    k.put("jobs", "a")
    k.put("jobs", "b", delay=3.0)
    job = claim(k, s)
    k.stall("jobs", job)
    k.retry("jobs", job.id)
    k.cancel("jobs", claim(k, s))
    k.finish("jobs", claim(k, s))
    k.claim(s, "jobs")
    assert JobStatistics(kind=Kind.JOBS, records=1, waiters=1, subscribers=1, ready=0,
                         delayed=1, claimed=0, stalled=0, finished=1, retracted=0,
                         result_waiters=0) == k.statistics("jobs")
    assert ["put", "put", "claimed", "stalled", "retried", "claimed", "cancelled",
            "claimed", "finished"] == names(k)


def test_delete_container_disarms_its_timers(k: Kernel) -> None:
    """Deleting a job queue drops its leases and deadlines with it."""
    s = k.open_session()
    k.put("jobs", "a")
    k.put("jobs", "b", delay=4.0)
    claim(k, s)
    k.delete_container("jobs")
    assert k.next_deadline() is None
    k._check()
    k.close_session(s)


def test_zero_result_ttl_keeps_nothing(k: Kernel) -> None:
    """result_ttl=0 forgets the job at finish, after serving waiting result readers."""
    s = k.open_session()
    jid = k.put("jobs", "a")
    k.result(s, "jobs", jid)
    k.finish("jobs", claim(k, s), "r", result_ttl=0)
    (served,) = [e for e in k.take_effects() if isinstance(e, Delivered)]
    assert "r" == served.event.value
    with pytest.raises(NotFound):
        k.state("jobs", jid)
    assert k.next_deadline() is None
    k._check()
