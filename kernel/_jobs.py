"""Job queues: jobs claimed under a lease, finished exactly once.

A job's life is a table (``JobState``):

    put ──► READY ◄──────────── session close (attempts left)
    put(delay) ──► DELAYED ──(deadline)──► READY
    CLAIMED ──cancel / lease expiry (attempts left)──► DELAYED (the backoff) or READY
    READY ──claim──► CLAIMED ──finish──► FINISHED ──(result TTL)──► forgotten
    CLAIMED ──stall, or a failure with no attempts left──► STALLED ──retry──► READY
    READY, DELAYED, CLAIMED or STALLED ──retract──► RETRACTED ──(result TTL)──► forgotten

FINISHED and RETRACTED are terminal: a job reaches exactly one of them, once. STALLED is
the dead-letter state: the job, its item and its last error stay until someone retries
or retracts it; whoever waits for its result hears ``JobFailed`` at once.

The failure policy: a failed claim (cancelled without an explicit delay, or expired)
is retried after a backoff of ``backoff * backoff_factor ** (failures - 1)`` seconds,
at most ``backoff_max``, less up to half of it drawn from the kernel's own seeded
generator (so that jobs failing together do not come back together, and a replay draws
the same); after ``max_attempts`` claims (0: no limit) the job stalls.

A claim grants a lease: the job, its attempt number and a deadline. Every call about a
claimed job carries the ``Job`` token it was given; a token whose attempt is not the
job's current claim (it expired, was cancelled, released or retracted) raises LeaseLost,
so a late finish can never complete a job twice. One timer per job serves whichever
deadline its state has: the delay, the lease or the result TTL.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import attrs

from ._containers import Container, check_int
from ._core import check_timeout
from ._errors import AlreadyExists, Empty, InvalidArgument, JobFailed, LeaseLost, NotFound
from ._model import (
    TERMINAL_STATES,
    ContainerMetrics,
    Event,
    Job,
    JobInfo,
    JobState,
    JobStatistics,
    Kind,
    Popped,
    Record,
    Tally,
    Waiting,
)
from ._sorted import PriorityFifo
from ._waiters import Waiter, WaiterQueue

__all__ = ["JobRecord", "JobsContainer", "check_seconds", "claimed_token"]

DEFAULT_LEASE = 30.0
DEFAULT_RESULT_TTL = 300.0
DEFAULT_MAX_ATTEMPTS = 5  # claims before a failing job stalls (0: no limit)
DEFAULT_BACKOFF = 1.0  # seconds before the first retry
DEFAULT_BACKOFF_FACTOR = 2.0  # each next one this much longer
DEFAULT_BACKOFF_MAX = 300.0  # but never longer than this
MAX_ERROR = 8192  # characters of a failure's text kept (its head and its tail)


def bounded_error(text: str | None) -> str | None:
    """A failure's text, cut in the middle if it is long: a traceback's head says
    where, its tail what."""
    if text is None or len(text) <= MAX_ERROR:
        return text
    head, tail = MAX_ERROR // 4, MAX_ERROR - MAX_ERROR // 4 - 64
    return f"{text[:head]}\n[... {len(text) - head - tail} characters cut ...]\n{text[-tail:]}"


def claimed_token(name: str, delivery: Event) -> Job:
    """The claim token a ``claimed`` delivery of job queue ``name`` carries, for
    ``give_back``; InvalidArgument for a malformed delivery."""
    job = delivery.value
    if not isinstance(job, Job):
        raise InvalidArgument(f"give_back on {name!r}: a claimed delivery's value is the "
                              f"Job token, not {job!r}")
    if delivery.key is not None and delivery.key != job.id:
        raise InvalidArgument(f"give_back on {name!r}: key {delivery.key!r} differs from "
                              f"the token's job {job.id!r}")
    return job


def check_seconds(where: str, what: str, value: Any, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            value > 0 if positive else value >= 0):
        raise InvalidArgument(f"{where}: {what} must be a number "
                              f"{'> 0' if positive else '>= 0'}, not {value!r}")
    return float(value)


@attrs.define(eq=False)
class JobRecord:
    """One job and everything its state needs."""

    id: str
    container: str
    item: Any
    priority: int
    state: JobState
    order: tuple[int, int] = (0, 0)  # its key in the ready index while READY
    attempt: int = 0  # claims since put or retry; the current lease's number
    owner: int | None = None  # the session holding the lease, while it holds it
    reason: str | None = None  # why it last failed (cancel, expiry, stall), bounded
    result: Any = None
    created: float = 0.0
    claimed: float | None = None  # when the last claim began
    ready_since: float = 0.0  # when it last became ready
    ended: float | None = None  # when it finished or was retracted
    timer: tuple[float, int] | None = None  # delay, lease or result-TTL deadline
    result_waiters: WaiterQueue | None = None  # made by the first result() that waits


@attrs.define(eq=False)
class JobsContainer(Container):
    """Jobs by id; ready ones ordered by ``(-priority, arrival)``; claimers FIFO.

    Invariant: claimers wait only while no job is ready, so whatever makes a job ready
    serves the oldest claimer inside the same command.
    """

    jobs: dict[str, JobRecord] = attrs.Factory(dict)
    ready: PriorityFifo[JobRecord] = attrs.Factory(PriorityFifo)
    claimers: WaiterQueue = attrs.Factory(WaiterQueue)
    lease: float = DEFAULT_LEASE
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    release_on_close: bool = True
    result_ttl: float = DEFAULT_RESULT_TTL
    backoff: float = DEFAULT_BACKOFF
    backoff_factor: float = DEFAULT_BACKOFF_FACTOR
    backoff_max: float = DEFAULT_BACKOFF_MAX
    last_id: int = 0
    arrivals: int = 0
    finished: int = 0  # claims that ended each way (ContainerMetrics)
    failed: int = 0
    expired: int = 0
    stalled: int = 0
    waited: Tally = attrs.Factory(Tally)  # ready until claimed
    ran: Tally = attrs.Factory(Tally)  # claimed until finished, failed or stalled
    kind: Kind = attrs.field(init=False, default=Kind.JOBS)

    # -- configuration ----------------------------------------------------------------

    def options(self) -> dict[str, Any]:
        return {"lease": self.lease, "max_attempts": self.max_attempts,
                "release_on_close": self.release_on_close, "result_ttl": self.result_ttl,
                "backoff": self.backoff, "backoff_factor": self.backoff_factor,
                "backoff_max": self.backoff_max}

    def configure(self, options: dict[str, Any]) -> None:
        where = f"jobs {self.name!r}"
        if options.get("lease") is not None:
            self.lease = check_seconds(where, "lease", options["lease"], positive=True)
        max_attempts = options.get("max_attempts")
        if max_attempts is not None:
            if check_int(where, self.name, "max_attempts", max_attempts) < 0:
                raise InvalidArgument(f"{where}: max_attempts must be >= 0 (0: no limit)")
            self.max_attempts = max_attempts
        for option in ("backoff", "backoff_max"):
            if options.get(option) is not None:
                setattr(self, option, check_seconds(where, option, options[option],
                                                     positive=False))
        if options.get("backoff_factor") is not None:
            factor = check_seconds(where, "backoff_factor", options["backoff_factor"],
                                    positive=True)
            if factor < 1:
                raise InvalidArgument(f"{where}: backoff_factor must be >= 1")
            self.backoff_factor = factor
        if options.get("release_on_close") is not None:
            if not isinstance(options["release_on_close"], bool):
                raise InvalidArgument(f"{where}: release_on_close must be a bool")
            self.release_on_close = options["release_on_close"]
        if options.get("result_ttl") is not None:
            self.result_ttl = check_seconds(where, "result_ttl", options["result_ttl"],
                                             positive=False)

    # -- helpers ----------------------------------------------------------------------

    def _job(self, op: str, id: Any) -> JobRecord:
        try:
            return self.jobs[id]
        except (KeyError, TypeError):
            raise NotFound(f"{op} on {self.name!r}: no job {id!r}") from None

    def _leased(self, op: str, job: Any) -> JobRecord:
        """The record a still-valid claim token refers to, or LeaseLost."""
        if not isinstance(job, Job):
            raise InvalidArgument(f"{op} on {self.name!r}: expected a Job, not {job!r}")
        record = self.jobs.get(job.id)
        if record is None:
            raise LeaseLost(f"{op} on {self.name!r}: job {job.id} is gone")
        if record.state is not JobState.CLAIMED:
            raise LeaseLost(f"{op} on {self.name!r}: job {job.id} is "
                            f"{record.state.value}, not claimed")
        if record.attempt != job.attempt:
            raise LeaseLost(f"{op} on {self.name!r}: job {job.id} is on attempt "
                            f"{record.attempt}, this claim was attempt {job.attempt}")
        return record

    def _arm(self, record: JobRecord, deadline: float) -> None:
        self._disarm(record)
        if deadline != math.inf:
            record.timer = self.core.timers.add(deadline, record)

    def _disarm(self, record: JobRecord) -> None:
        if record.timer is not None:
            self.core.timers.cancel(record.timer)
            record.timer = None

    def _event(self, name: str, record: JobRecord, value: Any) -> None:
        if self.subscribers:
            self.core.notify(self, name, record.id, value)

    def _make_ready(self, record: JobRecord) -> None:
        """Put a job at the back of its priority; the oldest claimer, if any, gets it."""
        self._disarm(record)
        record.state = JobState.READY
        record.ready_since = self.core.now
        self.arrivals += 1
        record.order = (-record.priority, self.arrivals)
        self.ready[record.order] = record
        if self.claimers:  # so nothing else was ready: this is the one to hand over
            claimer = self.claimers.popleft()
            self.ready.pop(record.order)
            job = self._grant(record, claimer.session, claimer.payload, self.core.now)
            self.core.serve(claimer, Event(self.name, "claimed", record.id, job, None))

    def _grant(self, record: JobRecord, session: int, lease: float, now: float, *,
               quiet: bool = False) -> Job:
        record.state = JobState.CLAIMED
        record.attempt += 1
        record.claimed = now
        self.taken += 1
        self.waited.observe(now - record.ready_since)
        record.owner = session
        self.core.sessions[session].leases[(self.name, record.id)] = None
        self._arm(record, now + lease)
        if not quiet:
            self._event("claimed", record, record.item)
        return Job(record.id, record.item, record.attempt)

    def _claim_ended(self, record: JobRecord) -> None:
        assert record.claimed is not None
        self.ran.observe(self.core.now - record.claimed)

    def _unlease(self, record: JobRecord) -> None:
        if record.owner is not None:
            del self.core.sessions[record.owner].leases[(self.name, record.id)]
            record.owner = None

    def _backoff(self, failures: int) -> float:
        """The wait before retrying a job that has failed ``failures`` times."""
        if self.backoff <= 0:
            return 0.0
        exponent = min(failures - 1, 64)  # past the cap long before; no overflow
        delay = min(self.backoff_max, self.backoff * self.backoff_factor ** exponent)
        return delay * (1 - self.core.random() / 2)

    def _fail(self, record: JobRecord, event: str, reason: str | None,
              delay: float | None) -> None:
        """A claim ended without finishing: back to ready, after ``delay`` (None: the
        policy's backoff), or stalled once max_attempts claims have failed."""
        if event == "expired":
            self.expired += 1
        else:
            self.failed += 1
        self._claim_ended(record)
        self._unlease(record)
        self._disarm(record)
        reason = record.reason = bounded_error(reason)
        self._event(event, record, reason)
        if self.max_attempts and record.attempt >= self.max_attempts:
            self._stall(record, reason)
            return
        if delay is None:
            delay = self._backoff(record.attempt)
        if delay > 0:
            record.state = JobState.DELAYED
            self._arm(record, self.core.now + delay)
        else:
            self._make_ready(record)

    def _stall(self, record: JobRecord, reason: str | None) -> None:
        """Park a job in the dead-letter state; whoever waits for its result hears."""
        self.stalled += 1
        record.state = JobState.STALLED
        record.reason = bounded_error(reason)
        self._event("stalled", record, record.reason)
        while record.result_waiters:
            self.core.cancel(record.result_waiters.popleft(), self._failed(record))

    def _failed(self, record: JobRecord) -> JobFailed:
        return JobFailed(record.reason or f"job {record.id} on {self.name!r} stalled")

    def _end(self, record: JobRecord, state: JobState, result: Any, ttl: float) -> None:
        """Make a job terminal: it is remembered for ``ttl`` seconds (0: not at all),
        then forgotten."""
        self._unlease(record)
        if record.state is JobState.READY:
            self.ready.pop(record.order)
        record.state = state
        record.result = result
        record.ended = self.core.now
        if ttl > 0:
            self._arm(record, self.core.now + ttl)
        else:
            self._disarm(record)
            del self.jobs[record.id]
        while record.result_waiters:
            waiter = record.result_waiters.popleft()
            if state is JobState.FINISHED:
                self.core.serve(waiter, Event(self.name, "finished", record.id, result,
                                              None))
            else:
                self.core.cancel(waiter, NotFound(
                    f"result on {self.name!r}: job {record.id} was retracted"))

    # -- commands ---------------------------------------------------------------------

    def put(self, item: Any, priority: Any, delay: Any, id: Any, now: float) -> str:
        check_int("put", self.name, "priority", priority)
        delay = check_seconds(f"put on {self.name!r}", "delay", delay, positive=False)
        if id is None:
            while True:
                self.last_id += 1
                id = str(self.last_id)
                if id not in self.jobs:
                    break
        elif not isinstance(id, str) or not id:
            raise InvalidArgument(f"put on {self.name!r}: a job id is a non-empty str, "
                                  f"not {id!r}")
        elif id in self.jobs:
            raise AlreadyExists(f"put on {self.name!r}: job {id} exists "
                                f"({self.jobs[id].state.value})")
        now = self.core.tick(now)
        self.added += 1
        record = self.jobs[id] = JobRecord(id, self.name, item, priority, JobState.DELAYED,
                                           created=now)
        self._event("put", record, item)
        if delay > 0:
            self._arm(record, self.core.now + delay)
        else:
            self._make_ready(record)
        return record.id

    def claim(self, session: int, timeout: float | None, lease: float | None, now: float
              ) -> Job | Waiting:
        check_timeout("claim", self.name, timeout)
        lease = self.lease if lease is None else check_seconds(
            f"claim on {self.name!r}", "lease", lease, positive=True)
        self.core.session(session)
        now = self.core.tick(now)
        if self.ready:
            _, record = self.ready.pop_first()
            return self._grant(record, session, lease, now)
        if timeout == 0:
            raise Empty(f"claim on {self.name!r}: no job is ready")
        return self.core.park(self.claimers, session, "claim", self.name, None, timeout,
                              now, payload=lease)

    def put_many(self, items: Any, priority: Any, delay: Any, now: float) -> list[str]:
        """Put each of ``items`` as ``put`` would, all or none (every argument is
        checked before the first goes in)."""
        if not isinstance(items, (list, tuple)):
            raise InvalidArgument(f"put_many on {self.name!r}: items must be a list, not "
                                  f"{type(items).__name__}")
        check_int("put_many", self.name, "priority", priority)
        check_seconds(f"put_many on {self.name!r}", "delay", delay, positive=False)
        return [self.put(item, priority, delay, None, now) for item in items]

    def claim_many(self, session: int, n: Any, timeout: float | None, lease: float | None,
                   now: float) -> list[Job] | Waiting:
        """Up to ``n`` ready jobs at once, each under its own lease; with none ready,
        park as ``claim`` does (served with one)."""
        if check_int("claim_many", self.name, "n", n) < 1:
            raise InvalidArgument(f"claim_many on {self.name!r}: n must be >= 1, not {n}")
        first = self.claim(session, timeout, lease, now)
        if type(first) is not Job:
            return first  # type: ignore[return-value]
        claimed = [first]
        lease = self.lease if lease is None else lease
        while self.ready and len(claimed) < n:
            _, record = self.ready.pop_first()
            claimed.append(self._grant(record, session, lease, self.core.now))
        return claimed

    def finish_claim(self, session: int, job: Any, result: Any, result_ttl: Any,
                     timeout: float | None, lease: float | None, now: float
                     ) -> Job | Waiting:
        """Finish ``job`` and claim the next one, as ``finish`` then ``claim``. With
        ``timeout`` 0 and no job ready it raises Empty having done nothing (not even
        the finish), so that a call that raises has changed nothing."""
        record = self._leased("finish", job)
        check_timeout("finish_claim", self.name, timeout)
        ttl = self._result_ttl(result_ttl)
        if lease is not None:
            check_seconds(f"claim on {self.name!r}", "lease", lease, positive=True)
        self.core.session(session)
        if timeout == 0 and not self.ready:
            raise Empty(f"finish_claim on {self.name!r}: no job is ready (the job is "
                        "not finished)")
        self._finish(record, result, ttl, now)
        return self.claim(session, timeout, lease, now)

    def finish(self, job: Any, result: Any, result_ttl: Any, now: float) -> None:
        record = self._leased("finish", job)
        self._finish(record, result, self._result_ttl(result_ttl), now)

    def _result_ttl(self, result_ttl: Any) -> float:
        return self.result_ttl if result_ttl is None else check_seconds(
            f"finish on {self.name!r}", "result_ttl", result_ttl, positive=False)

    def _finish(self, record: JobRecord, result: Any, ttl: float, now: float) -> None:
        """Finish a claim ``_leased`` has checked, its result kept ``ttl`` seconds."""
        self.core.tick(now)
        self.finished += 1
        self._claim_ended(record)
        self._event("finished", record, result)
        self._end(record, JobState.FINISHED, result, ttl)

    def cancel(self, job: Any, delay: Any, reason: str | None, now: float) -> None:
        record = self._leased("cancel", job)
        if delay is not None:
            delay = check_seconds(f"cancel on {self.name!r}", "delay", delay,
                                   positive=False)
        self.core.tick(now)
        self._fail(record, "cancelled", reason, delay)

    def stall(self, job: Any, reason: str | None) -> None:
        record = self._leased("stall", job)
        self._claim_ended(record)
        self._unlease(record)
        self._disarm(record)
        self._stall(record, reason)

    def touch(self, job: Any, lease: float | None, now: float) -> None:
        record = self._leased("touch", job)
        lease = self.lease if lease is None else check_seconds(
            f"touch on {self.name!r}", "lease", lease, positive=True)
        self._arm(record, self.core.tick(now) + lease)

    def give_back(self, session: int, delivery: Event, now: float) -> None:
        """Undo a claim: the job is ready again at its old place with its attempt
        restored, unseen by subscribers; the oldest parked claimer, if any, has it."""
        job = claimed_token(self.name, delivery)
        record = self._leased("give_back", job)
        if record.owner != session:
            raise LeaseLost(f"give_back on {self.name!r}: job {job.id} attempt "
                            f"{job.attempt} is not held by session {session}")
        now = self.core.tick(now)
        self._unlease(record)
        self._disarm(record)
        self.taken -= 1  # as if the claim had never been made: nor its wait
        assert record.claimed is not None
        self.waited.forget(record.claimed - record.ready_since)
        record.attempt -= 1
        record.state = JobState.READY
        if self.claimers:  # so nothing else is ready: this is the one to hand over
            claimer = self.claimers.popleft()
            token = self._grant(record, claimer.session, claimer.payload, now, quiet=True)
            self.core.serve(claimer, Event(self.name, "claimed", record.id, token, None))
            return
        self.ready[record.order] = record

    def retry(self, id: Any, now: float) -> None:
        record = self._job("retry", id)
        if record.state is not JobState.STALLED:
            raise InvalidArgument(f"retry on {self.name!r}: job {id} is "
                                  f"{record.state.value}, not stalled")
        self.core.tick(now)
        record.attempt = 0
        self._event("retried", record, record.item)
        self._make_ready(record)

    def retry_all(self, now: float) -> int:
        stalled = [r.id for r in self.jobs.values() if r.state is JobState.STALLED]
        for id in stalled:
            self.retry(id, now)
        return len(stalled)

    def retract(self, id: Any) -> None:
        record = self._job("retract", id)
        if record.state in TERMINAL_STATES:  # terminal means terminal: one end per job
            raise InvalidArgument(f"retract on {self.name!r}: job {id} is "
                                  f"{record.state.value}")
        self._event("retracted", record, record.item)
        self._end(record, JobState.RETRACTED, None, self.result_ttl)

    def result(self, session: int, id: Any, timeout: float | None, now: float
               ) -> Popped | Waiting:
        check_timeout("result", self.name, timeout)
        record = self._job("result", id)
        self.core.session(session)
        if record.state is JobState.FINISHED:
            return (record.result, None)
        if record.state is JobState.RETRACTED:
            raise NotFound(f"result on {self.name!r}: job {id} was retracted")
        if record.state is JobState.STALLED:
            raise self._failed(record)
        if timeout == 0:
            raise Empty(f"result on {self.name!r}: job {id} is {record.state.value}")
        if record.result_waiters is None:
            record.result_waiters = WaiterQueue()
        return self.core.park(record.result_waiters, session, "result", self.name, id,
                              timeout, now)

    def state(self, id: Any) -> JobState:
        return self._job("state", id).state

    def info(self, id: Any) -> JobInfo:
        record = self._job("info", id)
        deadline = None
        if record.timer is not None and record.state in (JobState.CLAIMED,
                                                         JobState.DELAYED):
            deadline = record.timer[0]
        return JobInfo(id=record.id, item=record.item, state=record.state,
                       attempt=record.attempt, priority=record.priority,
                       created=record.created, claimed=record.claimed, ended=record.ended,
                       deadline=deadline, error=record.reason, result=record.result)

    def ids_in(self, state: Any, start: int, end: int | None) -> list[Any]:
        """The ids of the jobs in ``state`` (None: every job that has not ended), in the
        order they were put, ``[start:end]``."""
        if state is None:
            return self.ids()[start:end]
        try:
            state = JobState(state)
        except ValueError:
            raise InvalidArgument(f"ids on {self.name!r}: no job state {state!r}") from None
        return [id for id, r in self.jobs.items() if r.state is state][start:end]

    def statistics(self) -> JobStatistics:
        counts = dict.fromkeys(JobState, 0)
        for record in self.jobs.values():
            counts[record.state] += 1
        return JobStatistics(
            kind=self.kind, records=self.count(), waiters=len(self.claimers),
            subscribers=len(self.subscribers),
            ready=counts[JobState.READY], delayed=counts[JobState.DELAYED],
            claimed=counts[JobState.CLAIMED], stalled=counts[JobState.STALLED],
            finished=counts[JobState.FINISHED], retracted=counts[JobState.RETRACTED],
            result_waiters=sum(len(r.result_waiters or ()) for r in self.jobs.values()),
        )

    def metrics(self) -> ContainerMetrics:
        ready = [r.ready_since for _, r in self.ready.items()]
        return ContainerMetrics(
            kind=self.kind, added=self.added, taken=self.taken, finished=self.finished,
            failed=self.failed, expired=self.expired, stalled=self.stalled,
            waited=self.waited.distribution(), ran=self.ran.distribution(),
            oldest_ready=min(ready) if ready else None)

    # -- timers, sessions and the generic surface -------------------------------------

    def fire(self, payload: Any) -> None:
        if isinstance(payload, Waiter):
            super().fire(payload)
            return
        record: JobRecord = payload
        if record.state is JobState.DELAYED:
            self._make_ready(record)
        elif record.state is JobState.CLAIMED:
            self._fail(record, "expired", f"lease expired on attempt {record.attempt}",
                       None)
        else:  # terminal: its TTL ran out
            del self.jobs[record.id]

    def close_session(self, session: int) -> None:
        held = [id for (name, id) in self.core.sessions[session].leases if name == self.name]
        for id in held:
            record = self.jobs[id]
            if self.release_on_close:
                self._fail(record, "cancelled", "the claiming session closed", 0)
            else:  # the lease runs to its deadline with nobody to renew it
                self._unlease(record)

    def discard(self) -> None:
        for record in self.jobs.values():
            self._unlease(record)
            self._disarm(record)

    def remove_waiter(self, waiter: Waiter) -> None:
        if waiter.op == "claim":
            self.claimers.remove(waiter)
        else:
            queue = self.jobs[waiter.key].result_waiters
            assert queue is not None
            queue.remove(waiter)

    def waiter_queues(self) -> Iterator[WaiterQueue]:
        yield self.claimers
        for record in list(self.jobs.values()):
            if record.result_waiters:
                yield record.result_waiters

    def get(self, key: Any) -> Record:
        record = self._job("get", key)
        return Record(key, record.item)

    def ids(self) -> list[Any]:
        return [id for id, r in self.jobs.items() if r.state not in TERMINAL_STATES]

    def count(self) -> int:
        return sum(1 for r in self.jobs.values() if r.state not in TERMINAL_STATES)

    def snapshot(self, start: int, end: int | None = None) -> list[tuple[str, Record]]:
        return [("put", Record(id, self.jobs[id].item)) for id in self.ids()[start:end]]

    def check_timer(self, payload: Any) -> None:
        if isinstance(payload, Waiter):
            super().check_timer(payload)
        else:
            assert self.jobs.get(payload.id) is payload, f"{self.name}: timer of a gone job"

    def check(self) -> None:
        assert not (self.claimers and self.ready), f"{self.name}: claimers beside ready jobs"
        ready = 0
        for id, record in self.jobs.items():
            assert record.id == id and record.container == self.name
            state = record.state
            if state is JobState.READY:
                ready += 1
                assert self.ready[record.order] is record
            assert (state is JobState.CLAIMED) or record.owner is None
            if record.owner is not None:
                assert (self.name, id) in self.core.sessions[record.owner].leases
            if state in (JobState.DELAYED, JobState.CLAIMED):
                assert record.timer is not None, f"{self.name}: job {id} has no deadline"
            if state in (JobState.READY, JobState.STALLED):
                assert record.timer is None, f"{self.name}: job {id} has a stray timer"
            if state in TERMINAL_STATES or state is JobState.STALLED:
                assert not record.result_waiters
        assert ready == len(self.ready), f"{self.name}: ready index has strays"
