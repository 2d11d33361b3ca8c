"""Corral on Redis across real processes: worker processes started with
``sys.executable`` against redis-server processes these tests start themselves (unix
sockets in temp dirs, no TCP port). They check what one process cannot: FIFO claims
across 16 processes, a worker killed with SIGKILL while it holds a claim, every
acknowledged put surviving a SIGKILL of redis-server, and a pool of worker processes
running each job exactly once, then stopping on SIGTERM."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import redis
from conftest import RedisServer, start, wait_until

from corral.adapters.client import connect
from corral.kernel import Job, JobState, LeaseLost

# What the child processes run: ``python corral_child.py ROLE URL``. Each says what it
# did as one JSON object per line on stdout, flushed at once.
CHILD = '''
import json, os, sys, threading, time

from corral.adapters.client import connect


def say(**fields):
    print(json.dumps(fields), flush=True)


def claimer(url):
    """Connect, wait for the test's go on stdin, then claim once and finish it."""
    with connect(url) as corral:
        jobs = corral.jobs("fair")
        say(connected=os.getpid())
        sys.stdin.readline()
        job = jobs.claim(timeout=60)
        say(claimed=[job.id, job.item, job.attempt])
        jobs.finish(job, job.item)


def holder(url):
    """Claim a job and park a wait on a list, say so, then hang on until killed."""
    corral = connect(url)
    job = corral.jobs("held").claim(timeout=10)
    threading.Thread(target=corral.list("l").wait_pop_next, daemon=True).start()
    say(claimed=[job.id, job.item, job.attempt])
    time.sleep(60)


def producer(url):
    """Put jobs until 20000 or 3 seconds, saying the id of each put Redis acknowledged."""
    with connect(url) as corral:
        jobs = corral.jobs("d")
        give_up = time.monotonic() + 3.0
        for n in range(20000):
            if time.monotonic() > give_up:
                break
            say(put=jobs.put(n))
        say(done=True)


def square(n):
    say(ran=n)
    return n * n


def worker(url):
    """A Worker in this process's main thread, until SIGTERM."""
    from corral.adapters.workers import Worker

    worker = Worker("sq", square, corral=url)
    worker.run()
    say(finished=worker.finished)


globals()[sys.argv[1]](sys.argv[2])
'''

_prefixes = itertools.count()


class Child:
    """A child process running one role of ``CHILD``; its stdout lines are read as they
    come, its stderr is kept for failure messages."""

    def __init__(self, script: Path, role: str, url: str, *, stdin: bool = False) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(script), role, url], text=True,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: list[str] = []
        self.errors: list[str] = []
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [start(self._read, self.process.stdout, self.lines),
                         start(self._read, self.process.stderr, self.errors)]

    @staticmethod
    def _read(stream: IO[str], into: list[str]) -> None:
        for line in stream:
            into.append(line)

    def said(self, field: str) -> list[Any]:
        """The values of ``field`` in what it said, in order (whole lines only: a line
        cut short by a kill is not a statement)."""
        return [message[field] for message in map(json.loads, [
            line for line in list(self.lines) if line.endswith("\n")]) if field in message]

    def wait_for(self, field: str, count: int = 1, limit: float = 20.0) -> list[Any]:
        """Block until it said ``field`` ``count`` times; fails if it exits first."""
        def heard() -> bool:
            if len(self.said(field)) >= count:
                return True
            assert self.process.poll() is None, self.report()
            return False
        wait_until(heard, limit)
        return self.said(field)

    def tell(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def exit_code(self, limit: float = 20.0) -> int:
        """Its exit status, waiting up to ``limit`` seconds; then what it wrote is in."""
        code = self.process.wait(limit)
        for reader in self._readers:
            reader.join(5)
        return code

    def report(self) -> str:
        """What it said and wrote to stderr (the end of each), for a failure message."""
        return (f"pid {self.process.pid} exit {self.process.poll()}\nstdout:\n"
                f"{''.join(self.lines)[-2000:]}stderr:\n{''.join(self.errors)[-4000:]}")

    def end(self) -> None:
        """Kill it if it still runs, reap it, close its pipes."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        for reader in self._readers:
            reader.join(5)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):  # a broken pipe on flush
                    stream.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """This module's redis-server, without persistence; each test has its prefix."""
    server = RedisServer(tmp_path_factory.mktemp("redis"), "--appendonly", "no")
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def prefix() -> str:
    return f"p{os.getpid()}x{next(_prefixes)}"


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "corral_child.py"
    path.write_text(CHILD)
    return path


@pytest.fixture
def children(script: Path) -> Iterator[list[Child]]:
    """Every child a test starts (append it here) is killed if need be and reaped."""
    started: list[Child] = []
    try:
        yield started
    finally:
        for child in started:
            child.end()


def waiters(client: redis.Redis, prefix: str, name: str) -> list[Any]:
    """The waiter ids Redis queues on container ``name``'s main wait, oldest first."""
    return list(client.lrange(f"{prefix}:{{{name}}}:w", 0, -1))


def test_claims_parked_by_16_processes_are_served_in_order(
        server: RedisServer, prefix: str, script: Path, children: list[Child]) -> None:
    """16 processes park a claim each in a forced order (started together, so their
    imports overlap, each told to claim once Redis queues its predecessor) and wait
    longer than the client's one-second BLMOVE slice, so each re-arms its blocking
    read in place; 16 puts then serve them first come, first served: process i gets
    job i."""
    url, client = server.url(prefix), server.client()
    with contextlib.closing(client), connect(url) as corral:
        jobs = corral.jobs("fair")
        children.extend(Child(script, "claimer", url, stdin=True) for _ in range(16))
        for i, child in enumerate(children):  # claimer i parks once i are queued
            child.wait_for("connected")
            child.tell("go")
            wait_until(lambda i=i: i + 1 == len(waiters(client, prefix, "fair")))
        parked = waiters(client, prefix, "fair")
        time.sleep(2.5)  # each claimer's BLMOVE ran out twice and was issued again
        assert parked == waiters(client, prefix, "fair")
        ids = [jobs.put(i) for i in range(16)]
        got = [Job(*child.wait_for("claimed")[0]) for child in children]
        assert list(range(16)) == [job.item for job in got]
        assert ids == [job.id for job in got]
        assert [1] * 16 == [job.attempt for job in got]
        assert [0] * 16 == [child.exit_code() for child in children]
        stats = jobs.statistics()
        assert (16, 0, 0) == (stats.finished, stats.claimed, stats.waiters)
        assert [] == waiters(client, prefix, "fair")


def test_a_worker_killed_mid_lease_loses_its_claim_within_three_heartbeats(
        server: RedisServer, prefix: str, script: Path, children: list[Child]) -> None:
    """A process beating every 0.2 s claims a job (30 s lease) and parks a wait, then
    is SIGKILLed: within about three beats the job is ready again (attempt 1 counted,
    the claiming session closed), the dead process's token is fenced with LeaseLost,
    the next claim is attempt 2, and its parked wait is withdrawn, so the next push is
    not handed to the dead."""
    client = server.client()
    with contextlib.closing(client), connect(server.url(prefix)) as corral:
        jobs = corral.jobs("held")
        jobs.put("precious")
        holder = Child(script, "holder", server.url(prefix, heartbeat="0.2"))
        children.append(holder)
        token = Job(*holder.wait_for("claimed")[0])  # the dead process's, soon
        assert ("precious", 1) == (token.item, token.attempt)
        held = jobs.info(token.id)
        assert held.deadline is not None and held.claimed is not None
        assert 30 == round(held.deadline - held.claimed)  # the lease: only liveness is quick
        wait_until(lambda: 1 == len(waiters(client, prefix, "l")))
        time.sleep(1.0)  # five beats: its claim and its wait outlive three of them
        assert JobState.CLAIMED == jobs.state(token.id)
        assert 1 == len(waiters(client, prefix, "l"))

        holder.process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        holder.process.wait(10)
        wait_until(lambda: JobState.READY == jobs.state(token.id), limit=10)  # lease: 30 s
        back_after = time.monotonic() - killed
        info = jobs.info(token.id)
        assert (JobState.READY, 1, "the claiming session closed") == (
            info.state, info.attempt, info.error), back_after
        with pytest.raises(LeaseLost):
            jobs.finish(token)
        again = jobs.claim(timeout=0)
        assert (token.id, "precious", 2) == (again.id, again.item, again.attempt)
        jobs.finish(again)

        wait_until(lambda: 0 == corral.list("l").statistics().waiters, limit=10)
        assert [] == waiters(client, prefix, "l")
        corral.list("l").push_back("for the living")
        assert "for the living" == corral.list("l").pop_front()


def test_every_acknowledged_put_survives_a_redis_crash(
        tmp_path: Path, prefix: str, script: Path, children: list[Child]) -> None:
    """With ``appendfsync always``, redis-server is SIGKILLed while a producer process
    puts jobs, and started again on the same directory: every put the producer saw
    acknowledged is there."""
    directory = tmp_path / "aof"
    directory.mkdir()
    server = RedisServer(directory, "--appendonly", "yes", "--appendfsync", "always")
    try:
        server.start()
        url = server.url(prefix, durability="always")
        producer = Child(script, "producer", url)
        children.append(producer)
        producer.wait_for("put")
        time.sleep(1.0)
        server.kill()
        before_crash = producer.said("put")
        assert [] == producer.said("done"), "the crash came too late"
        server.start()
        producer.exit_code()  # it died on the lost connection, or went on after it
        acknowledged = producer.said("put")
        with connect(url) as corral:
            present = set(corral.jobs("d").ids())
        lost = [id for id in acknowledged if id not in present]
        assert [] == lost, f"{len(lost)} of {len(acknowledged)} acknowledged puts lost"
        assert len(before_crash) > 100, len(before_crash)
        assert len(set(acknowledged)) == len(acknowledged)
    finally:
        server.stop()


def test_a_pool_of_worker_processes_runs_each_job_once_and_stops_on_sigterm(
        server: RedisServer, prefix: str, script: Path, children: list[Child]) -> None:
    """Four processes each run a Worker; 200 jobs are each run exactly once, on the
    first attempt, every worker taking some; SIGTERM stops each cleanly, its parked
    claim withdrawn."""
    url, client = server.url(prefix), server.client()
    with contextlib.closing(client), connect(url) as corral:
        jobs = corral.jobs("sq")
        children.extend(Child(script, "worker", url) for _ in range(4))
        wait_until(lambda: 4 == len(waiters(client, prefix, "sq")), limit=20)
        ids = [jobs.put(n) for n in range(200)]
        assert [n * n for n in range(200)] == [jobs.result(id, timeout=20) for id in ids]
        stats = jobs.statistics()
        assert (200, 0, 0, 0) == (stats.finished, stats.claimed, stats.ready,
                                  stats.stalled)
        assert {1} == {jobs.info(id).attempt for id in ids}

        for child in children:
            child.process.send_signal(signal.SIGTERM)
        assert [0] * 4 == [child.exit_code() for child in children], [
            child.report() for child in children]
        ran = [child.said("ran") for child in children]
        assert Counter(range(200)) == Counter(n for each in ran for n in each)
        assert all(ran), [len(each) for each in ran]  # the first four puts: one each
        assert [len(each) for each in ran] == [
            child.said("finished")[0] for child in children]
        assert [] == waiters(client, prefix, "sq")
        assert 0 == jobs.statistics().waiters
