"""Job queues against a model, with time moving, sessions closing and leases expiring.

What it holds the kernel to: no job is ever lost (a job that did not end is always in a
live state), no job is held by two live claims (the kernel honours exactly the one token
the model says is current), every job ends in exactly one terminal state, once, and the
failure policy: no job is claimed more than max_attempts times between retries, and a
failed claim comes back after exactly the backoff the model computes with its own copy
of the kernel's seeded generator (so the schedule is deterministic for the seed).
"""

from __future__ import annotations

from typing import Any

import attrs
import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
)

from corral.kernel import (
    TERMINAL_STATES,
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
    Waiting,
)

LEASE, MAX_ATTEMPTS, RESULT_TTL = 5.0, 3, 7.0
BACKOFF, BACKOFF_FACTOR, BACKOFF_MAX = 1.0, 2.0, 3.0  # the cap is met on the 3rd failure
SEED, MASK = 2605, (1 << 64) - 1


class SplitMix:
    """splitmix64 (Steele, Lea and Flood), as the kernel is documented to draw."""

    def __init__(self) -> None:
        self.state = SEED

    def random(self) -> float:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return ((z ^ (z >> 31)) >> 11) / float(1 << 53)


@attrs.define
class ModelJob:
    state: JobState
    priority: int
    order: int = 0
    attempt: int = 0
    owner: int | None = None
    deadline: float | None = None
    timer_seq: int = 0


@attrs.define
class Claimer:
    waiter: int
    session: int
    lease: float
    deadline: float | None
    timer_seq: int


class JobsModel(RuleBasedStateMachine):
    sessions = Bundle("sessions")
    tokens = Bundle("tokens")
    job_ids = Bundle("job_ids")

    def __init__(self) -> None:
        super().__init__()
        self.kernel = Kernel()
        self.kernel.create("j", Kind.JOBS, lease=LEASE, max_attempts=MAX_ATTEMPTS,
                           result_ttl=RESULT_TTL, backoff=BACKOFF,
                           backoff_factor=BACKOFF_FACTOR, backoff_max=BACKOFF_MAX)
        self.rng = SplitMix()
        self.now = 0.0
        self.seq = 0  # the kernel's timer arming counter, mirrored
        self.arrivals = 0
        self.live: set[int] = set()
        self.jobs: dict[str, ModelJob] = {}
        self.leases: dict[int, list[str]] = {}  # session -> leased job ids, in order
        self.claimers: list[Claimer] = []
        self.expected: list[tuple[Any, ...]] = []
        self.ended: dict[str, JobState] = {}  # job -> the terminal state it reached
        self.forgotten: set[str] = set()

    # -- the model's rules, mirroring the kernel's ------------------------------------

    def arm(self, job: ModelJob, deadline: float) -> None:
        self.seq += 1
        job.deadline, job.timer_seq = deadline, self.seq

    def grant(self, jid: str, session: int, lease: float) -> Job:
        job = self.jobs[jid]
        assert job.attempt < MAX_ATTEMPTS, f"job {jid} claimed past max_attempts"
        job.state, job.attempt, job.owner = JobState.CLAIMED, job.attempt + 1, session
        self.leases[session].append(jid)
        self.arm(job, self.now + lease)
        return Job(jid, f"item {jid}", job.attempt)

    def make_ready(self, jid: str) -> None:
        job = self.jobs[jid]
        job.state, job.deadline = JobState.READY, None
        self.arrivals += 1
        job.order = self.arrivals
        if self.claimers:
            claimer = self.claimers.pop(0)
            token = self.grant(jid, claimer.session, claimer.lease)
            self.expected.append(("delivered", claimer.session, claimer.waiter, token))

    def unlease(self, jid: str) -> None:
        job = self.jobs[jid]
        if job.owner is not None:
            self.leases[job.owner].remove(jid)
            job.owner = None

    def fail(self, jid: str, delay: float | None) -> None:
        job = self.jobs[jid]
        self.unlease(jid)
        job.deadline = None
        if job.attempt >= MAX_ATTEMPTS:
            job.state = JobState.STALLED
            return
        if delay is None:  # the policy's: exponential, capped, less up to half
            full = min(BACKOFF_MAX, BACKOFF * BACKOFF_FACTOR ** (job.attempt - 1))
            delay = full * (1 - self.rng.random() / 2)
            assert full / 2 < delay <= full
        if delay > 0:
            job.state = JobState.DELAYED
            self.arm(job, self.now + delay)
        else:
            self.make_ready(jid)

    def end(self, jid: str, state: JobState) -> None:
        assert jid not in self.ended, f"job {jid} would end twice"
        self.unlease(jid)
        self.jobs[jid].state = state
        self.arm(self.jobs[jid], self.now + RESULT_TTL)
        self.ended[jid] = state

    def current(self, token: Job) -> bool:
        job = self.jobs.get(token.id)
        return job is not None and job.state is JobState.CLAIMED and (
            job.attempt == token.attempt)

    def leased_call(self, token: Job, call: Any) -> bool:
        """Run a call with a claim token; the kernel must accept exactly current ones."""
        if self.current(token):
            call()
            return True
        try:
            call()
        except LeaseLost:
            return False
        raise AssertionError(f"a stale claim {token} was honoured")

    # -- rules ------------------------------------------------------------------------

    @initialize(target=sessions)
    def start(self) -> Any:
        return multiple(self.open_session(), self.open_session())

    @rule(target=sessions)
    def open_session(self) -> int:
        session = self.kernel.open_session()
        self.live.add(session)
        self.leases[session] = []
        return session

    @rule(session=consumes(sessions))
    def close_session(self, session: int) -> None:
        if session not in self.live:
            return
        self.kernel.close_session(session, now=self.now)
        self.live.discard(session)
        self.claimers = [c for c in self.claimers if c.session != session]
        for jid in list(self.leases[session]):
            self.fail(jid, 0)

    @rule(target=job_ids, priority=st.integers(0, 2), delay=st.sampled_from([0, 0, 3.0]))
    def put(self, priority: int, delay: float) -> str:
        jid = str(len(self.jobs) + 1)
        assert jid == self.kernel.put("j", f"item {jid}", priority=priority, delay=delay,
                                      now=self.now)
        self.jobs[jid] = ModelJob(JobState.DELAYED, priority)
        if delay:
            self.arm(self.jobs[jid], self.now + delay)
        else:
            self.make_ready(jid)
        return jid

    @rule(target=tokens, session=sessions, timeout=st.sampled_from([0, None, 4.0]),
          lease=st.sampled_from([None, 2.0]))
    def claim(self, session: int, timeout: float | None, lease: float | None) -> Any:
        ready = sorted((-j.priority, j.order, jid) for jid, j in self.jobs.items()
                       if j.state is JobState.READY)
        if session not in self.live or (not ready and timeout == 0):
            error = NotFound if session not in self.live else Empty
            try:
                self.kernel.claim(session, "j", timeout=timeout, lease=lease, now=self.now)
            except error:
                return multiple()
            raise AssertionError(f"claim did not raise {error.__name__}")
        got = self.kernel.claim(session, "j", timeout=timeout, lease=lease, now=self.now)
        if ready:
            assert self.grant(ready[0][2], session, lease or LEASE) == got
            return got
        assert isinstance(got, Waiting)
        deadline = None if timeout is None else self.now + timeout
        if timeout is not None:
            self.seq += 1
        self.claimers.append(Claimer(got.waiter, session, lease or LEASE, deadline,
                                     self.seq))
        return multiple()

    @rule(token=tokens)
    def finish(self, token: Job) -> None:
        if self.leased_call(token, lambda: self.kernel.finish("j", token, "ok",
                                                             now=self.now)):
            self.end(token.id, JobState.FINISHED)

    @rule(token=tokens, delay=st.sampled_from([None, None, 0, 2.0]))
    def cancel(self, token: Job, delay: float | None) -> None:
        if self.leased_call(token, lambda: self.kernel.cancel("j", token, delay=delay,
                                                             now=self.now)):
            self.fail(token.id, delay)

    @rule(token=tokens)
    def stall(self, token: Job) -> None:
        if self.leased_call(token, lambda: self.kernel.stall("j", token)):
            self.unlease(token.id)
            self.jobs[token.id].state, self.jobs[token.id].deadline = JobState.STALLED, None

    @rule(token=tokens)
    def touch(self, token: Job) -> None:
        if self.leased_call(token, lambda: self.kernel.touch("j", token, now=self.now)):
            self.arm(self.jobs[token.id], self.now + LEASE)

    @rule(jid=job_ids)
    def retry(self, jid: str) -> None:
        job = self.jobs[jid]
        if jid in self.forgotten or job.state is not JobState.STALLED:
            error = NotFound if jid in self.forgotten else InvalidArgument
            try:
                self.kernel.retry("j", jid, now=self.now)
            except error:
                return
            raise AssertionError("retry of a job that is not stalled was accepted")
        self.kernel.retry("j", jid, now=self.now)
        job.attempt = 0
        self.make_ready(jid)

    @rule(jid=job_ids)
    def retract(self, jid: str) -> None:
        job = self.jobs[jid]
        if jid in self.forgotten or job.state in TERMINAL_STATES:
            error = NotFound if jid in self.forgotten else InvalidArgument
            try:
                self.kernel.retract("j", jid)
            except error:
                return
            raise AssertionError("retract of a job that ended was accepted")
        self.kernel.retract("j", jid)
        self.end(jid, JobState.RETRACTED)

    @rule(dt=st.sampled_from([0.5, 1.0, 2.0, 5.0]))
    def advance(self, dt: float) -> None:
        self.now += dt
        self.kernel.advance(self.now)
        while True:  # fire due timers in (deadline, arming order), as the kernel does
            due = [(j.deadline, j.timer_seq, "job", jid) for jid, j in self.jobs.items()
                   if j.deadline is not None and j.deadline <= self.now]
            due += [(c.deadline, c.timer_seq, "claimer", c) for c in self.claimers
                    if c.deadline is not None and c.deadline <= self.now]
            if not due:
                break
            _, _, what, which = min(due, key=lambda d: (d[0], d[1]))
            if what == "claimer":
                self.claimers.remove(which)
                self.expected.append(("cancelled", which.session, which.waiter, Empty))
                continue
            job = self.jobs[which]
            job.deadline = None
            if job.state is JobState.DELAYED:
                self.make_ready(which)
            elif job.state is JobState.CLAIMED:
                self.fail(which, None)
            else:  # an ended job's result TTL ran out
                self.forgotten.add(which)

    # -- invariants -------------------------------------------------------------------

    @invariant()
    def effects_match(self) -> None:
        got = []
        for effect in self.kernel.take_effects():
            if isinstance(effect, Delivered):
                got.append(("delivered", effect.session, effect.waiter, effect.event.value))
            elif isinstance(effect, Cancelled):
                got.append(("cancelled", effect.session, effect.waiter, type(effect.error)))
        expected, self.expected = self.expected, []
        assert expected == got

    @invariant()
    def no_job_lost_and_one_end_each(self) -> None:
        self.kernel._check()
        for jid, job in self.jobs.items():
            if jid in self.forgotten:
                assert jid in self.ended, f"job {jid} was forgotten without ending"
                try:
                    self.kernel.state("j", jid)
                except NotFound:
                    continue
                raise AssertionError(f"forgotten job {jid} still has a state")
            state = self.kernel.state("j", jid)
            assert job.state == state
            info = self.kernel.info("j", jid)
            assert job.attempt == info.attempt <= MAX_ATTEMPTS
            assert info.deadline == (job.deadline if state in (
                JobState.CLAIMED, JobState.DELAYED) else None)
            if jid in self.ended:
                assert self.ended[jid] == state, f"job {jid} changed its end"
            else:
                assert state not in TERMINAL_STATES

    @invariant()
    def one_live_claim_per_job(self) -> None:
        owners: dict[str, int] = {}
        for session, held in self.leases.items():
            for jid in held:
                assert jid not in owners, f"job {jid} leased twice"
                owners[jid] = session
        counts = {state: 0 for state in JobState}
        for jid, job in self.jobs.items():
            if jid not in self.forgotten:
                counts[job.state] += 1
        live = sum(counts[state] for state in JobState if state not in TERMINAL_STATES)
        assert JobStatistics(
            kind=Kind.JOBS, records=live, subscribers=0,
            ready=counts[JobState.READY], delayed=counts[JobState.DELAYED],
            claimed=counts[JobState.CLAIMED], stalled=counts[JobState.STALLED],
            finished=counts[JobState.FINISHED], retracted=counts[JobState.RETRACTED],
            waiters=len(self.claimers), result_waiters=0,
        ) == self.kernel.statistics("j")


JobsModel.TestCase.settings = settings(max_examples=300, stateful_step_count=50,
                                       deadline=None)
TestJobsModel = JobsModel.TestCase
