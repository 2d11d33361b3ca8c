"""Workers, worker pools, RPC and named tasks: embedded, over TCP and over ZeroMQ, and
with real processes killed mid-job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import serving, start, wait_until

from corral.adapters.client import connect
from corral.adapters.threads import Corral
from corral.adapters.workers import (
    CallFailed,
    CallTimeout,
    Executor,
    ExecutorClient,
    Stall,
    Tasks,
    Worker,
    WorkerPool,
    call,
    push_task,
    task_result,
)
from corral.kernel import Closed, InvalidArgument, Job, JobState, LeaseLost


@pytest.fixture(params=["embedded", "tcp", "zmq"])
def where(request: pytest.FixtureRequest) -> Iterator[Corral | str]:
    """Where workers find their queues: an embedded Corral, or a server's URL."""
    if request.param == "embedded":
        with Corral() as corral:
            yield corral
        return
    with serving() as urls:
        yield getattr(urls, request.param)


@pytest.fixture
def client(where: Corral | str) -> Iterator[Corral]:
    """The test's own view of the same queues."""
    if isinstance(where, Corral):
        yield where
    else:
        with connect(where) as corral:
            yield corral


def test_worker_finishes_each_job_with_its_result(where: Corral | str, client: Corral
                                                  ) -> None:
    jobs = client.jobs("squares")
    ids = {jobs.put(n): n for n in range(30)}
    with Worker("squares", lambda n: n * n, corral=where, concurrency=3) as worker:
        assert {id: n * n for id, n in ids.items()} == {
            id: jobs.result(id, timeout=10) for id in ids}
    assert 30 == worker.finished
    assert 30 == jobs.statistics().finished


def test_an_exception_gives_the_job_back_and_max_attempts_stalls_it(
        where: Corral | str, client: Corral) -> None:
    jobs = client.jobs("flaky", max_attempts=2)
    id = jobs.put("x")

    def fail(item: Any) -> None:
        raise ValueError(f"cannot do {item}")

    with Worker("flaky", fail, corral=where) as worker:
        wait_until(lambda: jobs.state(id) is JobState.STALLED)
    assert 2 == worker.failed
    assert 0 == worker.finished


def test_stall_parks_the_job_at_once(where: Corral | str, client: Corral) -> None:
    jobs = client.jobs("hopeless")
    id = jobs.put("x")

    def give_up(item: Any) -> None:
        raise Stall("needs a human")

    with Worker("hopeless", give_up, corral=where):
        wait_until(lambda: jobs.state(id) is JobState.STALLED)


def test_a_long_job_keeps_its_lease() -> None:
    """A job running for several leases is touched and never claimed twice."""
    with Corral() as corral:
        jobs = corral.jobs("long")
        id = jobs.put("x")
        attempts: list[int] = []
        release = threading.Event()

        def slow(item: Any) -> str:
            attempts.append(1)
            release.wait(10)
            return "done"

        with Worker("long", slow, corral=corral, lease=0.5, concurrency=2):
            wait_until(lambda: bool(attempts))
            time.sleep(1.6)  # three leases and more (touched every 1/6 s)
            release.set()
            assert "done" == jobs.result(id, timeout=10)
        assert [1] == attempts


def test_stop_finishes_the_jobs_in_hand_and_ends_idle_claims(where: Corral | str,
                                                              client: Corral) -> None:
    jobs = client.jobs("graceful")
    running = threading.Event()
    release = threading.Event()

    def slow(item: Any) -> str:
        running.set()
        release.wait(10)
        return f"did {item}"

    worker = Worker("graceful", slow, corral=where, concurrency=3).start()
    id = jobs.put("it")
    assert running.wait(10)
    stopper = start(worker.stop)
    time.sleep(0.1)
    assert stopper.is_alive()  # waiting for the job in hand
    release.set()
    stopper.join(10)
    assert not stopper.is_alive()
    assert "did it" == jobs.result(id, timeout=5)
    later = jobs.put("later")
    time.sleep(0.1)
    assert JobState.READY == jobs.state(later)  # nobody claims after stop


# -- processes ------------------------------------------------------------------------------

WORKER_SCRIPT = textwrap.dedent("""
    import sys, time
    from corral.adapters.client import connect
    from corral.adapters.workers import Worker

    url, mark = sys.argv[1], sys.argv[2]

    def work(item):
        with connect(url) as c:
            c.list("started").push_back([mark, item])
        time.sleep(60)

    Worker("killme", work, corral=url, lease=float(sys.argv[3])).run()
""")


@pytest.mark.parametrize("transport", ["tcp", "zmq"])
def test_a_worker_killed_mid_job_loses_nothing(transport: str, tmp_path: Path) -> None:
    """SIGKILL a worker process holding a job: the job runs again on another worker
    (after the disconnect over TCP; after the lease over ZeroMQ, which does not see
    the death), is finished exactly once, and the dead claim's finish is fenced."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT)
    with serving() as urls, connect(urls.tcp) as corral:
        url = getattr(urls, transport)
        jobs = corral.jobs("killme", lease=1.0)
        id = jobs.put("payload")
        victim = subprocess.Popen([sys.executable, str(script), url, "victim", "1.0"])
        try:
            started = corral.list("started")
            assert ["victim", "payload"] == started.wait_pop_next(timeout=30)
            assert JobState.CLAIMED == jobs.state(id)
        finally:
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
        done: list[Any] = []
        with Worker("killme", lambda item: done.append(item) or "second", corral=url,
                    lease=5.0):
            assert "second" == jobs.result(id, timeout=30)
        assert ["payload"] == done
        with pytest.raises(LeaseLost):  # the dead worker's claim, had it lived on
            jobs.finish(Job(id, None, 1), "stale")
        assert "second" == jobs.result(id, timeout=1)


POOL_WORKER = textwrap.dedent("""
    import os, signal, sys, time
    wid, out = sys.argv[1], sys.argv[2]
    def bye(*_):
        with open(os.path.join(out, f"stopped-{wid}-{os.getpid()}"), "w"):
            pass
        sys.exit(0)
    signal.signal(signal.SIGTERM, bye)
    with open(os.path.join(out, f"started-{wid}-{os.getpid()}"), "w"):
        pass
    while True:
        time.sleep(1)
""")


def _marks(path: Path, prefix: str) -> list[str]:
    return sorted(p.name.split("-")[1] for p in path.glob(f"{prefix}-*"))


def test_pool_respawns_a_dead_worker_with_its_wid(tmp_path: Path) -> None:
    script = tmp_path / "w.py"
    script.write_text(POOL_WORKER)
    with WorkerPool([sys.executable, str(script), "{wid}", str(tmp_path)], 3,
                    grace=10) as pool:
        wait_until(lambda: ["1", "2", "3"] == _marks(tmp_path, "started"))
        victim = pool.slots[1].process
        assert victim is not None
        os.kill(victim.pid, signal.SIGKILL)
        wait_until(lambda: ["1", "2", "2", "3"] == _marks(tmp_path, "started"))
        assert 4 == pool.starts
    # drained: every live worker got SIGTERM and exited by itself
    assert ["1", "2", "3"] == _marks(tmp_path, "stopped")


def test_pool_backs_off_a_crash_loop() -> None:
    """A worker that dies at once is restarted after 0.1, 0.2, 0.4 ... seconds."""
    pool = WorkerPool([sys.executable, "-c", "raise SystemExit(3)"], 1, backoff=0.1,
                      max_backoff=0.4, stable_after=60, grace=1)
    with pool:
        wait_until(lambda: pool.starts >= 5)
    assert [0.1, 0.2, 0.4, 0.4] == pool.delays[:4]


def test_pool_drains_on_sigterm(tmp_path: Path) -> None:
    """`pool.run()` in a process: SIGTERM reaches every worker, the pool exits 0."""
    script = tmp_path / "w.py"
    script.write_text(POOL_WORKER)
    runner = tmp_path / "pool.py"
    runner.write_text(textwrap.dedent(f"""
        import sys
        from corral.adapters.workers import WorkerPool
        WorkerPool([sys.executable, {str(script)!r}, "{{wid}}", {str(tmp_path)!r}],
                   2, grace=10).run()
    """))
    proc = subprocess.Popen([sys.executable, str(runner)])
    try:
        wait_until(lambda: ["1", "2"] == _marks(tmp_path, "started"))
        proc.send_signal(signal.SIGTERM)
        assert 0 == proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert ["1", "2"] == _marks(tmp_path, "stopped")


# -- RPC ------------------------------------------------------------------------------------


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def test_rpc_eight_clients_each_get_their_own_answer(where: Corral | str) -> None:
    """Four executors and eight concurrent clients on one queue."""
    answers: dict[int, list[int]] = {}

    def client_thread(i: int) -> None:
        with ExecutorClient("fibonacci", corral=where) as client:
            answers[i] = [client.call(n, timeout=30) for n in range(i, i + 8)]

    executors = [Executor("fibonacci", fib, corral=where).start() for _ in range(4)]
    try:
        threads = [start(client_thread, i) for i in range(8)]
        for thread in threads:
            thread.join(60)
    finally:
        for executor in executors:
            executor.stop()
    assert {i: [fib(n) for n in range(i, i + 8)] for i in range(8)} == answers
    assert 64 == sum(e.finished for e in executors)


def test_rpc_errors_and_timeouts(where: Corral | str, client: Corral) -> None:
    def divide(pair: list[int]) -> float:
        return pair[0] / pair[1]

    with pytest.raises(CallTimeout):  # nobody serves the queue yet
        call("divide", [1, 2], timeout=0.2, corral=where)
    assert 0 == client.jobs("divide").statistics().ready  # withdrawn, never run late
    with Executor("divide", divide, corral=where):
        assert 0.5 == call("divide", [1, 2], timeout=10, corral=where)
        with pytest.raises(CallFailed, match="ZeroDivisionError"):
            call("divide", [1, 0], timeout=10, corral=where)


# -- named tasks ----------------------------------------------------------------------------


def test_named_tasks(where: Corral | str, client: Corral) -> None:
    tasks = Tasks()

    @tasks.task
    def add(a: int, b: int) -> int:
        return a + b

    @tasks.task(name="greet")
    def hello(name: str, punctuation: str = ".") -> str:
        return f"hello {name}{punctuation}"

    with tasks.worker("tasks", corral=where):
        a = push_task("add", 2, 3, corral=where)
        b = push_task("greet", "corral", punctuation="!", corral=where)
        unknown = push_task("missing", corral=where)
        assert 5 == task_result(a, timeout=10, corral=where)
        assert "hello corral!" == task_result(b, timeout=10, corral=where)
        wait_until(lambda: client.jobs("tasks").state(unknown) is JobState.STALLED)
    with pytest.raises(InvalidArgument, match="JSON"):
        push_task("add", object(), corral=where)


def test_pool_of_workers_over_a_server_shares_the_work(tmp_path: Path) -> None:
    """Powerhose's shape: a pool of worker processes and a master putting jobs."""
    script = tmp_path / "square.py"
    script.write_text(textwrap.dedent("""
        import sys
        from corral.adapters.workers import Worker
        Worker("squares", lambda n: [sys.argv[2], n * n], corral=sys.argv[1]).run()
    """))
    with serving() as urls, connect(urls.tcp) as master:
        jobs = master.jobs("squares")
        with WorkerPool([sys.executable, str(script), urls.tcp, "{wid}"], 3, grace=10):
            ids = [jobs.put(n) for n in range(60)]
            results = [jobs.result(id, timeout=30) for id in ids]
        assert [n * n for n in range(60)] == [square for _, square in results]
        assert set(Counter(wid for wid, _ in results)) <= {"1", "2", "3"}


def test_a_worker_whose_server_goes_away_stops_and_says_so() -> None:
    """With reconnect=None, run() raises Closed when the connection is lost, so that a
    worker process exits and its pool starts a fresh one instead of idling forever."""
    errors: list[BaseException] = []
    with serving() as urls:
        worker = Worker("orphan", lambda item: item, corral=urls.tcp, concurrency=2,
                        reconnect=None)

        def run() -> None:
            try:
                worker.run()
            except Closed as error:
                errors.append(error)

        thread = start(run)
        with connect(urls.tcp) as watcher:
            wait_until(lambda: watcher.jobs("orphan").statistics().waiters == 2)
    thread.join(10)
    assert not thread.is_alive()
    assert 1 == len(errors) and "lost" in str(errors[0])


def test_a_command_that_cannot_start_backs_off_too(caplog: pytest.LogCaptureFixture
                                                   ) -> None:
    pool = WorkerPool(["/nonexistent/corral-worker", "{wid}"], 1, backoff=0.05,
                      max_backoff=0.1, grace=1)
    with pool:
        wait_until(lambda: len(pool.delays) >= 3)
    assert 0 == pool.starts
    assert [0.05, 0.1, 0.1] == pool.delays[:3]
    assert "could not start" in caplog.text
