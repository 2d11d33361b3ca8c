"""The kernel's read-only inspection: metrics (counters, job outcomes, wait and run
distributions, the oldest ready job), peek, waiters and session_info."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from corral.kernel import (
    ContainerMetrics,
    CorralError,
    Delivered,
    Distribution,
    Empty,
    Event,
    InvalidArgument,
    Job,
    JobState,
    Kernel,
    Kind,
    LimitExceeded,
    NotFound,
    Record,
    SessionInfo,
    WaiterInfo,
    Waiting,
)
from corral.kernel._model import BUCKETS
from corral.transports.journal import Journal, JournaledKernel


@pytest.fixture
def k() -> Kernel:
    kernel = Kernel()
    kernel.create("l", Kind.LIST)
    kernel.create("m", Kind.MAP)
    kernel.create("f", Kind.FEED)
    kernel.create("s", Kind.SORTED_FEED)
    kernel.create("q", Kind.QUEUE)
    kernel.create("j", Kind.JOBS, lease=10.0, backoff=0)  # a failed claim is ready at once
    return kernel


def counts(kernel: Kernel, name: str) -> tuple[int, int]:
    """A container's (added, taken)."""
    metrics = kernel.metrics(name)
    return metrics.added, metrics.taken


def ends(kernel: Kernel, name: str) -> tuple[int, int, int, int]:
    """A job queue's (finished, failed, expired, stalled)."""
    m = kernel.metrics(name)
    return m.finished, m.failed, m.expired, m.stalled


def waited(kernel: Kernel, name: str = "j") -> Distribution:
    distribution = kernel.metrics(name).waited
    assert distribution is not None
    return distribution


def ran(kernel: Kernel, name: str = "j") -> Distribution:
    distribution = kernel.metrics(name).ran
    assert distribution is not None
    return distribution


def claim(kernel: Kernel, session: int, name: str = "j", **kw: Any) -> Job:
    job = kernel.claim(session, name, timeout=0, **kw)
    assert isinstance(job, Job)
    return job


def parked(result: Any) -> int:
    assert isinstance(result, Waiting)
    return result.waiter


def delivered(kernel: Kernel) -> list[Event]:
    """The events handed to parked waiters since the effects were last taken."""
    return [e.event for e in kernel.take_effects() if isinstance(e, Delivered)]


def bucket(seconds: float) -> int:
    """The index of the one bucket ``seconds`` falls in, worked out by hand."""
    for i, bound in enumerate(BUCKETS):
        if seconds <= bound:
            return i
    return len(BUCKETS)


def hist(*seconds: float) -> tuple[int, ...]:
    """The counts a distribution of ``seconds`` has."""
    counted = [0] * (len(BUCKETS) + 1)
    for s in seconds:
        counted[bucket(s)] += 1
    return tuple(counted)


# -- metrics: what every kind reports -------------------------------------------------


def test_fresh_containers_report_zeros_and_only_jobs_have_distributions(k: Kernel) -> None:
    """A new container has seen nothing; waited, ran and oldest_ready are a job queue's
    only (None elsewhere), and a job queue's distributions start empty."""
    for name, kind in k.containers().items():
        metrics = k.metrics(name)
        assert kind == metrics.kind
        assert (0, 0, 0, 0, 0, 0) == (metrics.added, metrics.taken, metrics.finished,
                                      metrics.failed, metrics.expired, metrics.stalled)
        assert None is metrics.oldest_ready
        if kind is Kind.JOBS:
            empty = Distribution(bounds=BUCKETS, counts=(0,) * (len(BUCKETS) + 1),
                                 total=0.0, count=0)
            assert (empty, empty) == (metrics.waited, metrics.ran)
        else:
            assert (None, None) == (metrics.waited, metrics.ran)


def test_metrics_of_an_unknown_container_is_not_found(k: Kernel) -> None:
    """metrics names the container it cannot find."""
    with pytest.raises(NotFound, match="nope"):
        k.metrics("nope")


def test_a_recreated_container_starts_counting_again(k: Kernel) -> None:
    """Counters belong to the container: deleting it and creating it again restarts
    them."""
    k.push_back("l", 1)
    k.pop_front("l")
    assert (1, 1) == counts(k, "l")
    k.delete_container("l")
    k.create("l", Kind.LIST)
    assert (0, 0) == counts(k, "l")


# -- counters: lists ----------------------------------------------------------------------


def test_list_pushes_and_inserts_are_added_pops_are_taken(k: Kernel) -> None:
    """push_back, push_front and insert add; pop_front, pop_back and an immediate
    wait_pop_next take."""
    s = k.open_session()
    k.push_back("l", "a")
    k.push_front("l", "b")
    k.insert("l", 1, "c")
    assert (3, 0) == counts(k, "l")
    assert "b" == k.pop_front("l").value
    assert "a" == k.pop_back("l").value
    assert ("c", None) == k.wait_pop_next(s, "l")
    assert (3, 3) == counts(k, "l")
    assert 0 == k.count("l")


def test_list_waiter_served_by_a_push_counts_as_taken(k: Kernel) -> None:
    """A record pushed to a parked waiter is added and taken in the one command, by
    push_back, push_front and insert alike."""
    s = k.open_session()
    for i, push in enumerate((lambda: k.push_back("l", 0), lambda: k.push_front("l", 1),
                              lambda: k.insert("l", 0, 2))):
        parked(k.wait_pop_next(s, "l"))
        push()
        assert [Event("l", "wnp_next", 0, i, None)] == delivered(k)
        assert (i + 1, i + 1) == counts(k, "l")
    assert 0 == k.count("l")


def test_list_failed_pops_and_other_edits_count_nothing(k: Kernel) -> None:
    """A pop of an empty list, a wait that parks or times out and set count nothing;
    delete and clear take the records they remove, so added - taken is the count."""
    s = k.open_session()
    with pytest.raises(Empty):
        k.pop_front("l")
    with pytest.raises(Empty):
        k.wait_pop_next(s, "l", timeout=0)
    parked(k.wait_pop_next(s, "l", timeout=1.0))
    k.advance(1.0)  # it times out
    assert (0, 0) == counts(k, "l")
    k.push_back("l", 1)
    k.push_back("l", 2)
    k.push_back("l", 3)
    k.set("l", 0, "replaced")
    k.delete("l", 1)
    assert (3, 1) == counts(k, "l")
    k.clear("l")
    assert (3, 3) == counts(k, "l")


def test_list_give_back_of_an_immediate_pop_takes_one_back(k: Kernel) -> None:
    """Giving back a wait_pop_next delivery decrements taken: the record is back."""
    s = k.open_session()
    k.push_back("l", "x", "meta")
    value, metadata = k.wait_pop_next(s, "l")
    assert (1, 1) == counts(k, "l")
    k.give_back(s, "l", Event("l", "wnp_next", 0, value, metadata))
    assert (1, 0) == counts(k, "l")
    assert 1 == k.count("l")


def test_list_give_back_to_a_parked_waiter_leaves_it_taken(k: Kernel) -> None:
    """A record given back while another waiter is parked goes straight to that
    waiter: it went out again, so taken stays 1 (added - taken == count), as if the
    first waiter had never asked."""
    a, b = k.open_session(), k.open_session()
    k.push_back("l", "x")
    value, metadata = k.wait_pop_next(a, "l")
    waiter = parked(k.wait_pop_next(b, "l"))
    k.give_back(a, "l", Event("l", "wnp_next", 0, value, metadata))
    assert [Delivered(b, waiter, Event("l", "wnp_next", 0, "x", None))] == k.take_effects()
    assert 0 == k.count("l")
    assert (1, 1) == counts(k, "l")


# -- counters: maps ------------------------------------------------------------------------


def test_map_sets_and_inserts_are_added_wait_pop_key_is_taken(k: Kernel) -> None:
    """set and insert add (setting a present key again replaces a record: nothing
    comes in); wait_pop_key takes, at once or served to a parked waiter by a set or
    insert."""
    s = k.open_session()
    k.set("m", "a", 1)
    k.insert("m", "b", 2)
    k.set("m", "a", 3)  # replaces: no new record
    assert (2, 0) == counts(k, "m")
    assert (3, None) == k.wait_pop_key(s, "m", "a")
    assert (2, 1) == counts(k, "m")
    parked(k.wait_pop_key(s, "m", "c"))
    k.set("m", "c", 4)
    parked(k.wait_pop_key(s, "m", "d"))
    k.insert("m", "d", 5)
    assert [4, 5] == [e.value for e in delivered(k)]
    assert (4, 3) == counts(k, "m")
    assert ["b"] == k.keys("m")


def test_map_delete_counts_as_taken(k: Kernel) -> None:
    """Deleting a map key takes its record out, as a feed's retract does, and clear
    takes every record: a map's added - taken is its count."""
    k.set("m", "a", 1)
    k.delete("m", "a")
    assert (1, 1) == counts(k, "m")
    k.set("m", "b", 2)
    k.set("m", "c", 3)
    k.clear("m")
    assert (3, 3) == counts(k, "m")


def test_map_give_back_of_an_immediate_pop_takes_one_back(k: Kernel) -> None:
    """Giving back a wait_pop_key delivery for a still-absent key decrements taken."""
    s = k.open_session()
    k.set("m", "a", "v")
    value, metadata = k.wait_pop_key(s, "m", "a")
    k.give_back(s, "m", Event("m", "wnp_key", "a", value, metadata))
    assert (1, 0) == counts(k, "m")
    assert [Record("a", "v")] == k.query("m")


def test_map_give_back_when_a_newer_value_won_keeps_the_count(k: Kernel) -> None:
    """A give-back that finds a newer value at its key is dropped (the newer value
    wins): the pop and the set stand, and added - taken is still the count."""
    s = k.open_session()
    k.set("m", "a", "old")
    value, metadata = k.wait_pop_key(s, "m", "a")
    k.set("m", "a", "new")
    k.give_back(s, "m", Event("m", "wnp_key", "a", value, metadata))
    assert [Record("a", "new")] == k.query("m")
    assert (2, 1) == counts(k, "m")


def test_map_give_back_to_a_parked_waiter_leaves_it_taken(k: Kernel) -> None:
    """As for lists: a record given back to another parked waiter went out again, so
    taken stays 1."""
    a, b = k.open_session(), k.open_session()
    k.set("m", "a", "v")
    value, metadata = k.wait_pop_key(a, "m", "a")
    parked(k.wait_pop_key(b, "m", "a"))
    k.give_back(a, "m", Event("m", "wnp_key", "a", value, metadata))
    assert ["v"] == [e.value for e in delivered(k)]
    assert (1, 1) == counts(k, "m")


# -- counters: queues -----------------------------------------------------------------------


def test_queue_puts_are_added_gets_are_taken(k: Kernel) -> None:
    """queue_put adds, queue_get takes; a put to a parked getter does both."""
    s = k.open_session()
    k.queue_put(s, "q", "a")
    k.queue_put(s, "q", "b", priority=1)
    assert (2, 0) == counts(k, "q")
    assert ("b", None) == k.queue_get(s, "q")
    assert ("a", None) == k.queue_get(s, "q")
    assert (2, 2) == counts(k, "q")
    parked(k.queue_get(s, "q"))
    k.queue_put(s, "q", "c")
    assert ["c"] == [e.value for e in delivered(k)]
    assert (3, 3) == counts(k, "q")


def test_bounded_queue_counts_a_putter_when_a_get_admits_it(k: Kernel) -> None:
    """A put refused by a full queue or parked there is not added until a get makes
    room; a putter that times out is never added."""
    k.create("b", Kind.QUEUE, max_length=1)
    s = k.open_session()
    k.queue_put(s, "b", "first")
    with pytest.raises(LimitExceeded):
        k.queue_put(s, "b", "refused")
    parked(k.queue_put(s, "b", "waits", timeout=None))
    assert (1, 0) == counts(k, "b")
    assert ("first", None) == k.queue_get(s, "b")  # admits the putter
    assert (2, 1) == counts(k, "b")
    parked(k.queue_put(s, "b", "gives up", timeout=1.0))
    k.advance(1.0)
    assert (2, 1) == counts(k, "b")
    assert [Record(0, "waits")] == k.peek("b")


def test_queue_give_back_takes_one_back(k: Kernel) -> None:
    """Giving back a get delivery decrements taken: the item is in the queue again."""
    s = k.open_session()
    k.queue_put(s, "q", "x")
    item, order = k.queue_get(s, "q", receipt=True)
    k.give_back(s, "q", Event("q", "get", None, item, order))
    assert (1, 0) == counts(k, "q")
    assert 1 == k.count("q")


def test_queue_give_back_to_a_parked_getter_leaves_it_taken(k: Kernel) -> None:
    """An item given back while a getter is parked goes to that getter: it went out
    again, so taken stays 1."""
    a, b = k.open_session(), k.open_session()
    k.queue_put(a, "q", "x")
    item, order = k.queue_get(a, "q", receipt=True)
    parked(k.queue_get(b, "q"))
    k.give_back(a, "q", Event("q", "get", None, item, order))
    assert ["x"] == [e.value for e in delivered(k)]
    assert 0 == k.count("q")
    assert (1, 1) == counts(k, "q")


# -- counters: feeds -------------------------------------------------------------------------


def test_feed_publish_is_added_retract_and_trimming_are_taken(k: Kernel) -> None:
    """publish adds (publishing an id again edits and moves the item: nothing new
    comes in); retract takes, and so does each item max_length trims."""
    first = k.publish("f", "a")
    k.publish("f", "b", id="x")
    k.publish("f", "b2", id="x")  # an edit
    assert (2, 0) == counts(k, "f")
    k.retract("f", first)
    assert (2, 1) == counts(k, "f")
    k.create("short", Kind.FEED, max_length=2)
    for item in "abcd":
        k.publish("short", item)
    assert (4, 2) == counts(k, "short")
    assert ["c", "d"] == [item for _, item in k.items("short")]


def test_sorted_feed_publishes_are_added_retract_is_taken(k: Kernel) -> None:
    """append, prepend, insert_before and insert_after add; retract takes; edit and
    moves count nothing."""
    one = k.append("s", "one")
    k.prepend("s", "zero")
    k.insert_before("s", one, "half")
    k.insert_after("s", one, "two")
    k.edit("s", one, "ONE")
    k.move_last("s", one)
    k.move_first("s", one)
    assert (4, 0) == counts(k, "s")
    k.retract("s", one)
    assert (4, 1) == counts(k, "s")


# -- counters: job queues ------------------------------------------------------------------


def test_job_put_is_added_claim_is_taken_finish_is_finished(k: Kernel) -> None:
    """put adds, a claim (at once or served to a parked claimer) takes, finish counts
    a finished claim."""
    s = k.open_session()
    k.put("j", "a")
    job = claim(k, s)
    assert (1, 1) == counts(k, "j")
    parked(k.claim(s, "j"))
    k.put("j", "b")
    [served] = delivered(k)
    assert (2, 2) == counts(k, "j")
    k.finish("j", job)
    k.finish("j", served.value)
    assert (2, 0, 0, 0) == ends(k, "j")


def test_job_cancel_is_failed_expiry_is_expired(k: Kernel) -> None:
    """A cancel counts failed (with or without a delay), a lease that runs out under
    advance counts expired; each retry is another claim taken."""
    s = k.open_session()
    k.put("j", "a")
    k.cancel("j", claim(k, s, now=0.0), reason="boom", now=1.0)
    k.cancel("j", claim(k, s, now=1.0), delay=5.0, now=2.0)
    k.advance(7.0)  # ready again
    claim(k, s, now=7.0)
    k.advance(17.0)  # the lease of 10 runs out
    assert JobState.READY == k.state("j", "1")
    assert (0, 2, 1, 0) == ends(k, "j")
    assert (1, 3) == counts(k, "j")


def test_job_failing_past_max_attempts_is_failed_and_stalled(k: Kernel) -> None:
    """The claim that exhausts max_attempts counts as failed (or expired) and the job
    as stalled: one end each way."""
    k.create("few", Kind.JOBS, lease=10.0, backoff=0, max_attempts=2)
    s = k.open_session()
    k.put("few", "a")
    k.put("few", "b")
    k.cancel("few", claim(k, s, "few"))
    k.cancel("few", claim(k, s, "few"))  # b: failed once
    k.cancel("few", claim(k, s, "few"))  # a again: attempt 2, stalls
    assert JobState.STALLED == k.state("few", "1")
    assert (0, 3, 0, 1) == ends(k, "few")
    claim(k, s, "few", now=1.0)  # b's second attempt runs out
    k.advance(11.0)
    assert JobState.STALLED == k.state("few", "2")
    assert (0, 3, 1, 2) == ends(k, "few")


def test_job_explicit_stall_is_stalled_only(k: Kernel) -> None:
    """stall counts stalled, not failed; retract of a claimed job counts no end."""
    s = k.open_session()
    k.put("j", "a")
    k.put("j", "b")
    k.stall("j", claim(k, s), "stuck")
    claim(k, s)
    k.retract("j", "2")
    assert (0, 0, 0, 1) == ends(k, "j")
    assert (2, 2) == counts(k, "j")


def test_job_close_session_release_counts_failed(k: Kernel) -> None:
    """A lease released because its session closed counts as a failed claim."""
    s = k.open_session()
    k.put("j", "a")
    claim(k, s)
    k.close_session(s, now=3.0)
    assert JobState.READY == k.state("j", "1")
    assert (0, 1, 0, 0) == ends(k, "j")


def test_job_give_back_undoes_the_claims_taken(k: Kernel) -> None:
    """Giving a claim back decrements taken; handing it straight to a parked claimer
    takes it again. Neither counts an end, nor a run."""
    a, b = k.open_session(), k.open_session()
    k.put("j", "a")
    job = claim(k, a)
    k.give_back(a, "j", Event("j", "claimed", job.id, job, None))
    assert (1, 0) == counts(k, "j")
    job = claim(k, a)
    parked(k.claim(b, "j"))
    k.give_back(a, "j", Event("j", "claimed", job.id, job, None))
    assert [Job("1", "a", 1)] == [e.value for e in delivered(k)]
    assert (1, 1) == counts(k, "j")
    assert (0, 0, 0, 0) == ends(k, "j")
    assert 0 == ran(k).count


def test_job_give_back_leaves_no_wait_observed(k: Kernel) -> None:
    """give_back is 'as if the delivery had never been made': the given-back claim's
    wait leaves ``waited`` too, so after one real claim the distribution is that of a
    kernel where the first claim was never made."""
    s = k.open_session()
    k.put("j", "a", now=0.0)
    job = claim(k, s, now=1.0)
    k.give_back(s, "j", Event("j", "claimed", job.id, job, None), now=2.0)
    claim(k, s, now=3.0)
    never = Kernel()
    never.create("j", Kind.JOBS, lease=10.0, backoff=0)
    never.open_session()
    never.put("j", "a", now=0.0)
    claim(never, 1, now=3.0)
    assert never.metrics("j") == k.metrics("j")
    assert k.metrics("j").taken == waited(k).count


# -- distributions ---------------------------------------------------------------------------


def test_waited_runs_from_put_to_claim(k: Kernel) -> None:
    """waited observes claim time minus put time, at once or for a parked claimer."""
    s = k.open_session()
    k.put("j", "a", now=1.0)
    claim(k, s, now=1.5)
    parked(k.claim(s, "j", now=2.0))
    k.put("j", "b", now=4.0)  # served at once: waited 0
    assert Distribution(bounds=BUCKETS, counts=hist(0.5, 0.0), total=0.5,
                        count=2) == waited(k)


def test_waited_counts_from_the_end_of_a_delay(k: Kernel) -> None:
    """A delayed job is ready when advance reaches its delay; it waits from then."""
    s = k.open_session()
    k.put("j", "a", delay=5.0, now=0.0)
    k.advance(5.0)
    claim(k, s, now=7.0)
    assert Distribution(bounds=BUCKETS, counts=hist(2.0), total=2.0, count=1) == waited(k)


def test_waited_counts_from_a_retry_or_a_failed_claim(k: Kernel) -> None:
    """A job made ready again (a cancel without delay, a retry of a stalled job)
    waits from that moment, not from its put."""
    s = k.open_session()
    k.put("j", "a", now=0.0)
    k.cancel("j", claim(k, s, now=1.0), delay=0.0, now=2.0)
    k.stall("j", claim(k, s, now=2.25))
    k.retry("j", "1", now=10.0)
    claim(k, s, now=10.5)
    assert Distribution(bounds=BUCKETS, counts=hist(1.0, 0.25, 0.5), total=1.75,
                        count=3) == waited(k)


def test_ran_runs_from_claim_to_each_end(k: Kernel) -> None:
    """ran observes the end time minus the claim time, for finish, cancel, lease
    expiry (when advance fires it) and stall (at the kernel's latest time, since stall
    takes no ``now``)."""
    s = k.open_session()
    for item in "abcd":
        k.put("j", item, now=0.0)
    finished, cancelled, expires = (claim(k, s, now=0.0) for _ in range(3))
    stalls = claim(k, s, lease=100.0, now=0.0)
    k.finish("j", finished, now=0.5)
    k.cancel("j", cancelled, now=2.0)
    k.advance(10.0)  # "c"'s lease of 10 runs out
    k.stall("j", stalls)  # the kernel's clock says 10
    assert Distribution(bounds=BUCKETS, counts=hist(0.5, 2.0, 10.0, 10.0), total=22.5,
                        count=4) == ran(k)


def test_a_duration_on_a_bound_falls_in_that_bounds_bucket(k: Kernel) -> None:
    """counts[i] holds durations in (bounds[i-1], bounds[i]]; the last count, those
    above every bound. total and count add up every observation."""
    s = k.open_session()
    # Claim lengths on the kernel's clock, given as each finish's ``now``: nothing here
    # measures time; the kernel files what it is told.
    lengths = [0.0, *BUCKETS, 1.5, BUCKETS[-1] + 1]
    for i in range(len(lengths)):
        k.put("j", i, now=0.0)
    jobs = [claim(k, s, now=0.0) for _ in lengths]
    for job, seconds in sorted(zip(jobs, lengths, strict=True), key=lambda p: p[1]):
        k.finish("j", job, now=seconds)
    distribution = ran(k)
    expected = [2, *[1] * (len(BUCKETS) - 1), 1]  # 0 and 0.001 share the first bucket
    expected[BUCKETS.index(2.5)] += 1  # 1.5
    assert tuple(expected) == distribution.counts
    assert len(BUCKETS) + 1 == len(distribution.counts)
    assert (len(lengths), pytest.approx(sum(lengths))) == (distribution.count,
                                                           distribution.total)
    assert BUCKETS == distribution.bounds
    just_above = Kernel()
    just_above.create("j", Kind.JOBS)
    t = just_above.open_session()
    just_above.put("j", "x", now=0.0)
    claim(just_above, t, now=BUCKETS[3] + 1e-9)
    assert 1 == waited(just_above).counts[4]


# -- oldest_ready ---------------------------------------------------------------------------


def test_oldest_ready_is_the_earliest_ready_job(k: Kernel) -> None:
    """oldest_ready is the least ready_since among READY jobs, whatever their
    priority; None when none is ready. Delayed and claimed jobs do not count."""
    s = k.open_session()
    assert None is k.metrics("j").oldest_ready
    k.put("j", "delayed", delay=100.0, now=1.0)
    assert None is k.metrics("j").oldest_ready
    k.put("j", "low", now=2.0)
    k.put("j", "high", priority=5, now=3.0)
    assert 2.0 == k.metrics("j").oldest_ready
    high = claim(k, s, now=4.0)
    assert "high" == high.item
    assert 2.0 == k.metrics("j").oldest_ready
    k.finish("j", high, now=4.0)
    low = claim(k, s, now=5.0)
    assert None is k.metrics("j").oldest_ready
    k.cancel("j", low, delay=0.0, now=6.0)  # ready again, from 6
    assert 6.0 == k.metrics("j").oldest_ready
    k.advance(101.0)  # the delayed one too, from 101
    assert 6.0 == k.metrics("j").oldest_ready
    assert "low" == claim(k, s, now=101.0).item
    assert 101.0 == k.metrics("j").oldest_ready


def test_oldest_ready_of_a_given_back_job_is_its_old_time(k: Kernel) -> None:
    """A claim given back returns the job to where it was: ready since before."""
    s = k.open_session()
    k.put("j", "a", now=1.0)
    job = claim(k, s, now=2.0)
    assert None is k.metrics("j").oldest_ready
    k.give_back(s, "j", Event("j", "claimed", job.id, job, None), now=3.0)
    assert 1.0 == k.metrics("j").oldest_ready


# -- peek ---------------------------------------------------------------------------------


def test_peek_a_list_by_index(k: Kernel) -> None:
    """A list's records with their indexes as keys, sliced as query slices."""
    for i in range(5):
        k.push_back("l", f"v{i}", i)
    everything = [Record(i, f"v{i}", i) for i in range(5)]
    assert everything == k.peek("l")
    assert everything[1:3] == k.peek("l", 1, 3)
    assert everything[-2:] == k.peek("l", -2)
    assert [] == k.peek("l", 7)
    assert k.query("l", 1, -1) == k.peek("l", 1, -1)


def test_peek_a_map_in_key_order(k: Kernel) -> None:
    """A map's records in key order."""
    for key in ("c", "a", "b"):
        k.set("m", key, key.upper(), {"k": key})
    assert [Record("a", "A", {"k": "a"}), Record("b", "B", {"k": "b"}),
            Record("c", "C", {"k": "c"})] == k.peek("m")
    assert [Record("b", "B", {"k": "b"})] == k.peek("m", 1, 2)


def test_peek_a_feed_by_id(k: Kernel) -> None:
    """A feed's items keyed by id in publish order; a republished id moves last."""
    k.publish("f", "a", id="x")
    k.publish("f", "b", id="y")
    k.publish("f", "a2", id="x")
    assert [Record("y", "b"), Record("x", "a2")] == k.peek("f")
    assert [Record("x", "a2")] == k.peek("f", -1)


def test_peek_a_sorted_feed_in_its_order(k: Kernel) -> None:
    """A sorted feed's items keyed by id, in the order inserts and moves made."""
    one = k.append("s", "one")
    two = k.append("s", "two")
    zero = k.prepend("s", "zero")
    half = k.insert_after("s", zero, "half")
    k.move_before("s", zero, two)
    assert [Record(two, "two"), Record(zero, "zero"), Record(half, "half"),
            Record(one, "one")] == k.peek("s")
    assert k.ids("s") == [r.key for r in k.peek("s")]
    assert [Record(zero, "zero"), Record(half, "half")] == k.peek("s", 1, 3)


def test_peek_a_queue_in_take_order_with_priority_keys(k: Kernel) -> None:
    """A queue's items in the order gets will take them, each keyed by its priority."""
    s = k.open_session()
    for item, priority in (("a", 0), ("b", 2), ("c", 0), ("d", 1), ("e", 2)):
        k.queue_put(s, "q", item, priority=priority)
    peeked = k.peek("q")
    assert [Record(2, "b"), Record(2, "e"), Record(1, "d"), Record(0, "a"),
            Record(0, "c")] == peeked
    assert peeked[1:4] == k.peek("q", 1, 4)
    taken = [k.queue_get(s, "q")[0] for _ in range(5)]
    assert taken == [r.value for r in peeked]


def test_peek_a_job_queue_shows_jobs_not_ended(k: Kernel) -> None:
    """A job queue's jobs that have not ended (ready, delayed, claimed, stalled), keyed
    by id, in the order they were put; finished and retracted ones are gone."""
    s = k.open_session()
    for item in "abcdef":
        k.put("j", item, delay=5.0 if item == "c" else 0.0)
    k.finish("j", claim(k, s))  # a
    k.stall("j", claim(k, s))  # b
    claim(k, s)  # d
    k.retract("j", "5")  # e
    assert [Record("2", "b"), Record("3", "c"), Record("4", "d"), Record("6", "f")
            ] == k.peek("j")
    assert k.ids("j") == [r.key for r in k.peek("j")]
    assert [Record("3", "c"), Record("4", "d")] == k.peek("j", 1, 3)


def test_peek_rejects_unknown_containers_and_non_int_bounds(k: Kernel) -> None:
    """NotFound for an unknown container (before the bounds are looked at),
    InvalidArgument for a start or end that is not an int, on every kind."""
    with pytest.raises(NotFound):
        k.peek("nope")
    with pytest.raises(NotFound):
        k.peek("nope", "x")  # type: ignore[arg-type]
    for name in k.containers():
        for start, end in (("1", None), (1.0, None), (True, None), (0, "2"), (0, 2.0)):
            with pytest.raises(InvalidArgument):
                k.peek(name, start, end)  # type: ignore[arg-type]


def test_inspection_changes_nothing(tmp_path: Path) -> None:
    """metrics, peek, waiters, session_info and statistics leave the kernel's whole
    state (its snapshot) as it was, and journal nothing."""
    with Journal(tmp_path) as journal:
        kernel = JournaledKernel(journal)
        for name, kind in (("l", Kind.LIST), ("m", Kind.MAP), ("f", Kind.FEED),
                           ("s", Kind.SORTED_FEED), ("q", Kind.QUEUE), ("j", Kind.JOBS)):
            kernel.create(name, kind)
        s, t = kernel.open_session(), kernel.open_session()
        kernel.push_back("l", 1)
        kernel.set("m", "a", 1)
        kernel.wait_pop_key(s, "m", "b", timeout=5.0, now=1.0)
        kernel.publish("f", "x")
        kernel.append("s", "y")
        kernel.queue_put(s, "q", "z", priority=3)
        kernel.put("j", "job", now=1.0)
        kernel.put("j", "job2", now=1.0)
        claim(kernel, t, now=2.0)
        kernel.result(s, "j", "2", now=2.0)
        kernel.subscribe(t, "l")
        before, appended = kernel.snapshot(), journal.appended
        for name in kernel.containers():
            kernel.metrics(name)
            kernel.peek(name)
            kernel.peek(name, 1, -1)
            kernel.waiters(name)
            kernel.statistics(name)
        kernel.session_info(s)
        kernel.session_info(t)
        assert before == kernel.snapshot()
        assert appended == journal.appended


# -- waiters ------------------------------------------------------------------------------


def test_waiters_of_a_list_in_fifo_order_with_since_and_deadline(k: Kernel) -> None:
    """Each parked call with its session, op, key, since (when it parked) and deadline
    (since + timeout; None without a timeout), oldest first."""
    a, b = k.open_session(), k.open_session()
    first = parked(k.wait_pop_next(b, "l", now=1.0))
    second = parked(k.wait_pop_next(a, "l", timeout=2.5, now=2.0))
    third = parked(k.wait_pop_next(b, "l", timeout=0.5, now=1.5))  # the clock says 2
    assert [WaiterInfo(id=first, session=b, op="wait_pop_next", container="l", key=None,
                       since=1.0, deadline=None),
            WaiterInfo(id=second, session=a, op="wait_pop_next", container="l", key=None,
                       since=2.0, deadline=4.5),
            WaiterInfo(id=third, session=b, op="wait_pop_next", container="l", key=None,
                       since=2.0, deadline=2.5)] == k.waiters("l")
    assert [] == k.waiters("m")


def test_waiters_of_a_job_queue_claimers_then_result_readers(k: Kernel) -> None:
    """A job queue's claimers come first, then each job's result readers."""
    s = k.open_session()
    k.put("j", "a", delay=10.0)
    k.put("j", "b", delay=10.0)
    r2 = parked(k.result(s, "j", "2", now=1.0))
    r1 = parked(k.result(s, "j", "1", timeout=3.0, now=1.0))
    c = parked(k.claim(s, "j", now=2.0))
    assert [(c, "claim", None, 2.0, None), (r1, "result", "1", 1.0, 4.0),
            (r2, "result", "2", 1.0, None)
            ] == [(w.id, w.op, w.key, w.since, w.deadline) for w in k.waiters("j")]


def test_waiters_of_a_queue_getters_and_putters(k: Kernel) -> None:
    """A queue's parked getters (empty queue) or parked putters (full queue)."""
    k.create("b", Kind.QUEUE, max_length=1)
    s = k.open_session()
    getter = parked(k.queue_get(s, "b", now=1.0))
    assert [(getter, "get")] == [(w.id, w.op) for w in k.waiters("b")]
    k.queue_put(s, "b", "served")
    k.queue_put(s, "b", "kept")
    putter = parked(k.queue_put(s, "b", "waits", timeout=4.0, now=2.0))
    assert [WaiterInfo(id=putter, session=s, op="put", container="b", key=None,
                       since=2.0, deadline=6.0)] == k.waiters("b")


def test_waiters_of_a_map_by_key(k: Kernel) -> None:
    """A map's waiters come grouped by key, the keys in the order they were first
    waited for, each key's in the order they will be served."""
    s = k.open_session()
    b1 = parked(k.wait_pop_key(s, "m", "b"))
    a1 = parked(k.wait_pop_key(s, "m", "a"))
    b2 = parked(k.wait_pop_key(s, "m", "b"))
    assert [(b1, "b"), (b2, "b"), (a1, "a")] == [(w.id, w.key) for w in k.waiters("m")]


def test_waiters_of_a_map_fifo_per_key(k: Kernel) -> None:
    """Within one key, a map's waiters are listed in the order they are served."""
    s = k.open_session()
    ids = [parked(k.wait_pop_key(s, "m", "a", now=float(i))) for i in range(3)]
    assert [(i, "a", float(t)) for t, i in enumerate(ids)] == [
        (w.id, w.key, w.since) for w in k.waiters("m")]
    k.set("m", "a", 1)
    assert ids[1:] == [w.id for w in k.waiters("m")]


def test_a_waiter_leaves_the_list_when_served_cancelled_or_timed_out(k: Kernel) -> None:
    """A waiter is listed only while parked: serving, cancel_wait and its timeout
    each remove it, leaving the others in order."""
    s = k.open_session()
    served, cancelled, times_out, stays = (
        parked(k.wait_pop_next(s, "l", timeout=t)) for t in (None, None, 1.0, None))
    k.push_back("l", 1)
    assert [served] == [e.waiter for e in k.take_effects() if isinstance(e, Delivered)]
    assert [cancelled, times_out, stays] == [w.id for w in k.waiters("l")]
    assert k.cancel_wait(s, cancelled)
    assert [times_out, stays] == [w.id for w in k.waiters("l")]
    k.advance(1.0)
    assert [stays] == [w.id for w in k.waiters("l")]


def test_waiters_of_an_unknown_container_is_not_found(k: Kernel) -> None:
    with pytest.raises(NotFound):
        k.waiters("nope")


# -- session_info ---------------------------------------------------------------------------


def test_session_info_lists_waiters_subscriptions_and_claims(k: Kernel) -> None:
    """A session's parked calls (in parking order, across containers), its
    subscriptions as (id, container) and its claims as (job queue, job id); another
    session's are not in it."""
    s, other = k.open_session(), k.open_session()
    assert SessionInfo(id=s, waiters=(), subscriptions=(), claims=()) == k.session_info(s)
    k.put("j", "a")
    k.put("j", "b")
    claim(k, s)
    claim(k, other)
    on_map = parked(k.wait_pop_key(s, "m", "x", timeout=2.0, now=1.0))
    on_list = parked(k.wait_pop_next(s, "l", now=1.0))
    parked(k.wait_pop_next(other, "l"))
    sub_q = k.subscribe(s, "q")
    sub_l = k.subscribe(s, "l")
    info = k.session_info(s)
    assert s == info.id
    assert [WaiterInfo(id=on_map, session=s, op="wait_pop_key", container="m", key="x",
                       since=1.0, deadline=3.0),
            WaiterInfo(id=on_list, session=s, op="wait_pop_next", container="l",
                       key=None, since=1.0, deadline=None)] == list(info.waiters)
    assert ((sub_q, "q"), (sub_l, "l")) == info.subscriptions
    assert (("j", "1"),) == info.claims
    assert (("j", "2"),) == k.session_info(other).claims


def test_session_info_drops_what_ends(k: Kernel) -> None:
    """A claim leaves when finished, cancelled or expired, a waiter when served, a
    subscription when unsubscribed."""
    k.create("k2", Kind.JOBS, lease=5.0, backoff=0)
    s = k.open_session()
    for item in "abc":
        k.put("j", item)
    k.put("k2", "d")
    first, second, third = (claim(k, s) for _ in range(3))
    claim(k, s, "k2", now=0.0)
    assert (("j", "1"), ("j", "2"), ("j", "3"), ("k2", "1")) == k.session_info(s).claims
    k.finish("j", first)
    k.cancel("j", second, delay=3.0)
    k.advance(5.0)  # k2's lease runs out
    assert (("j", "3"),) == k.session_info(s).claims
    k.finish("j", third)
    parked(k.wait_pop_next(s, "l"))
    sub = k.subscribe(s, "l")
    k.push_back("l", 1)
    k.unsubscribe(s, sub)
    assert SessionInfo(id=s, waiters=(), subscriptions=(), claims=()) == k.session_info(s)


def test_a_closed_sessions_claims_are_released(k: Kernel) -> None:
    """Closing a session releases its claims: the jobs are ready for another session's
    claims, and the closed session is not found any more."""
    s, other = k.open_session(), k.open_session()
    k.put("j", "a")
    claim(k, s)
    parked(k.wait_pop_next(s, "l"))
    k.close_session(s)
    with pytest.raises(NotFound):
        k.session_info(s)
    assert [] == k.waiters("l")
    assert Job("1", "a", 2) == claim(k, other)
    assert (("j", "1"),) == k.session_info(other).claims


def test_session_info_of_an_unknown_session_is_not_found(k: Kernel) -> None:
    with pytest.raises(NotFound):
        k.session_info(999)


# -- journal ----------------------------------------------------------------------------


def exercise(kernel: Kernel) -> None:
    """Commands that move every counter and distribution, including the backoff's
    seeded jitter, lease expiry and a give-back."""
    for name, kind in (("l", Kind.LIST), ("m", Kind.MAP), ("f", Kind.FEED),
                       ("s", Kind.SORTED_FEED), ("q", Kind.QUEUE)):
        kernel.create(name, kind)
    kernel.create("j", Kind.JOBS, lease=3.0, max_attempts=3)  # default, jittered backoff
    a, b = kernel.open_session(), kernel.open_session()
    kernel.push_back("l", "x")
    kernel.push_front("l", "y")
    kernel.pop_back("l")
    got = kernel.wait_pop_next(a, "l")
    kernel.give_back(a, "l", Event("l", "wnp_next", 0, got[0], got[1]))
    kernel.set("m", "k", 1)
    kernel.wait_pop_key(a, "m", "k")
    kernel.publish("f", "p")
    kernel.publish("f", "p2", id="1")
    kernel.append("s", "a")
    kernel.retract("s", 1)
    kernel.queue_put(a, "q", "i", priority=2)
    item, order = kernel.queue_get(a, "q", receipt=True)
    kernel.give_back(a, "q", Event("q", "get", None, item, order))
    for i in range(4):
        kernel.put("j", i, now=float(i))
    kernel.finish("j", claim(kernel, a, now=4.0), now=4.5)
    kernel.cancel("j", claim(kernel, a, now=5.0), reason="boom", now=6.25)
    claim(kernel, b, now=6.5)
    kernel.advance(20.0)  # a lease runs out; backoffs end
    kernel.stall("j", claim(kernel, a, now=21.0))
    job = claim(kernel, a, now=22.0)
    kernel.give_back(a, "j", Event("j", "claimed", job.id, job, None), now=23.0)
    claim(kernel, b, now=24.0)
    kernel.close_session(b, now=25.0)
    kernel.take_effects()


def all_metrics(kernel: Kernel) -> dict[str, ContainerMetrics]:
    return {name: kernel.metrics(name) for name in kernel.containers()}


def test_a_replayed_journal_reports_the_same_metrics(tmp_path: Path) -> None:
    """Counters, distributions and oldest_ready are state: a kernel replayed from the
    journal reports exactly what the live one did, as does a plain kernel given the
    same commands."""
    journal = Journal(tmp_path)
    live = JournaledKernel(journal)
    exercise(live)
    seen = all_metrics(live)
    journal.close()
    plain = Kernel()
    exercise(plain)
    assert seen == all_metrics(plain)
    assert 0 < waited(live).count
    replayed = JournaledKernel(Journal(tmp_path))
    assert seen == all_metrics(replayed)
    replayed.journal.close()


def test_a_snapshot_keeps_the_metrics(tmp_path: Path) -> None:
    """A kernel restored from a snapshot (the state, then the records after it) reports
    the same metrics too."""
    journal = Journal(tmp_path, snapshot_size=1)  # snapshot as soon as it grows
    live = JournaledKernel(journal, autocommit=True)
    exercise(live)
    seen = all_metrics(live)
    journal.close()
    assert list(tmp_path.glob("snapshot-*.bin"))
    restored = JournaledKernel(Journal(tmp_path))
    assert seen == all_metrics(restored)
    restored.journal.close()


# -- property -----------------------------------------------------------------------------

LIST_OPS = st.one_of(
    st.tuples(st.sampled_from(["push_back", "push_front", "insert"]), st.integers(0, 9)),
    st.tuples(st.sampled_from(["pop_front", "pop_back"])),
    st.tuples(st.just("wait_pop_next"), st.integers(0, 1),
              st.sampled_from([None, 0.0, 1.0])),
)
QUEUE_OPS = st.one_of(
    st.tuples(st.just("queue_put"), st.integers(0, 1), st.integers(-1, 1),
              st.sampled_from([0.0, 1.0, None])),
    st.tuples(st.just("queue_get"), st.integers(0, 1), st.sampled_from([None, 0.0, 1.0])),
)
SHARED_OPS = st.one_of(
    st.tuples(st.just("cancel_wait"), st.integers(0, 9)),
    st.tuples(st.just("advance"), st.sampled_from([0.5, 1.0])),
)


@settings(max_examples=300)
@given(st.lists(LIST_OPS | QUEUE_OPS | SHARED_OPS, max_size=40),
       st.sampled_from([None, 1, 2]))
def test_added_less_taken_is_the_count(ops: list[tuple[Any, ...]],
                                       max_length: int | None) -> None:
    """With pushes, pops, waits (served, cancelled or timed out) on a list and puts and
    gets (parked both ways) on a queue, every record in has either been taken or is
    still there: added - taken == count after every command."""
    k = Kernel()
    k.create("l", Kind.LIST)
    k.create("q", Kind.QUEUE, max_length=max_length)
    sessions = [k.open_session(), k.open_session()]
    waiters: list[tuple[int, int]] = []
    now = 0.0
    for op, *args in ops:
        try:
            if op in ("push_back", "push_front"):
                getattr(k, op)("l", args[0])
            elif op == "insert":
                k.insert("l", args[0] % (k.count("l") + 1), args[0])
            elif op in ("pop_front", "pop_back"):
                getattr(k, op)("l")
            elif op == "wait_pop_next":
                got = k.wait_pop_next(sessions[args[0]], "l", timeout=args[1], now=now)
                if isinstance(got, Waiting):
                    waiters.append((sessions[args[0]], got.waiter))
            elif op == "queue_put":
                got = k.queue_put(sessions[args[0]], "q", "item", priority=args[1],
                                  timeout=args[2], now=now)
                if isinstance(got, Waiting):
                    waiters.append((sessions[args[0]], got.waiter))
            elif op == "queue_get":
                got = k.queue_get(sessions[args[0]], "q", timeout=args[1], now=now)
                if isinstance(got, Waiting):
                    waiters.append((sessions[args[0]], got.waiter))
            elif op == "cancel_wait":
                if waiters:
                    k.cancel_wait(*waiters[args[0] % len(waiters)])
            else:
                now += args[0]
                k.advance(now)
        except CorralError:
            pass
        k.take_effects()
        for name in ("l", "q"):
            added, taken = counts(k, name)
            assert k.count(name) == added - taken
            assert 0 <= taken <= added
