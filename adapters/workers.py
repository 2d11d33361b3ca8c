"""Worker patterns on job queues: workers, worker pools, RPC and named tasks.

Everything here is built from a job queue's claim, finish, cancel and touch, so it
works the same embedded and remote:

- ``Worker(jobs, target)`` claims jobs and finishes each with ``target(item)``. An
  exception cancels the job with its traceback as the job's error: the queue retries
  it after a backoff and stalls it (the dead-letter state) after ``max_attempts``
  claims; a long job's lease is touched while it runs; ``stop()`` lets the jobs in
  hand finish first. Powerhose's worker and Thoonk's job worker.
- ``WorkerPool(command, count)`` runs worker processes (``{wid}`` in the command is each
  one's id), restarts one that dies, backs off when they crash in a loop, and drains on
  SIGTERM. Powerhose's ``Workers``, without Circus.
- ``Executor(queue, fn)`` serves calls and ``call(queue, payload, timeout)`` (or an
  ``ExecutorClient``) makes them: a request is a job, its answer the job's result, so
  any number of clients and executors share one queue and each answer reaches its own
  caller. The ALMA sandbox's RPC.
- ``Tasks`` is a registry of functions by name: ``push_task(name, *args)`` queues a call
  with JSON arguments and ``tasks.worker()`` runs them. ppyqueue's ``push_task``, without
  pickle or importing by path.

Where a ``corral`` argument is a URL, the object connects itself and closes the
connection when it stops; where it is a ``Corral`` (embedded or connected), it is used
as it is and left open.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import signal
import subprocess
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any, TypeVar, overload

import attrs

from corral.kernel import Closed, CorralError, Empty, InvalidArgument, JobFailed, NotFound
from corral.transports.connection import DEFAULT_RECONNECT

from .client import Reconnect, connect
from .threads import Facade, Job, JobsHandle

__all__ = [
    "CallFailed",
    "CallTimeout",
    "Executor",
    "ExecutorClient",
    "Stall",
    "Tasks",
    "Worker",
    "WorkerPool",
    "call",
    "push_task",
    "task_result",
]

_F = TypeVar("_F", bound=Callable[..., Any])

log = logging.getLogger("corral.workers")

DEFAULT_URL = "corral://127.0.0.1:2605"


@contextlib.contextmanager
def _using(corral: Facade | str, token: str | None,
           reconnect: Reconnect | None = DEFAULT_RECONNECT) -> Iterator[Facade]:
    """``corral`` itself, or a connection to that URL closed afterwards."""
    if isinstance(corral, Facade):
        yield corral
    else:
        with connect(corral, token=token, reconnect=reconnect) as connected:
            yield connected


@contextlib.contextmanager
def _stopped_by_signals(stop: Callable[[], None]) -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM call ``stop`` (in the main thread;
    elsewhere signals are not this thread's to take)."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: stop())
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _reason(error: BaseException) -> str:
    """A failure as the job's error: Python's traceback text, which ends in the
    exception's ``Type: message`` line (the kernel keeps its head and tail if long)."""
    return "".join(traceback.format_exception(error))


def _summary(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


class Stall(Exception):
    """Raised by a worker's target to stall its job instead of giving it back: for
    failures that another attempt would not mend. The message is the reason."""


class Worker:
    """Claims jobs from the job queue ``jobs`` and finishes each with ``target(item)``.

    ``concurrency`` threads claim and run jobs side by side. Each finishes a job and
    claims the next in one command (``finish_and_claim``), and with ``prefetch`` above
    1 claims up to that many ready jobs at once (``claim_many``), running them in
    order: fewer round trips per job, at a cost in fairness, since prefetched jobs
    wait in this worker's hands while another worker may be idle (and come back only
    by their leases if this one dies). The default, 1, keeps every waiting job
    available to every worker. ``lease`` is the claim's
    length; while a job runs its lease is touched every third of it, so a job may run
    longer than its lease, and a worker that dies loses its claims at the latest one
    lease later. ``target``'s exceptions cancel the job with the error as the reason
    (the queue's ``max_attempts`` stalls it); ``LeaseLost`` on finishing means the job
    was given to another worker meanwhile, and is logged.

    ``start()`` runs it in the background, ``run()`` in the calling thread until
    ``stop()`` or (in the main thread) SIGINT or SIGTERM.

    Given a URL, it connects itself and outlives a server restart: the client
    reconnects as ``reconnect`` says, the claims it held come back to the queue by
    release or lease, and their late finishes are fenced (logged). With
    ``reconnect=None`` a lost connection ends ``run()`` with Closed instead.
    """

    def __init__(self, jobs: str, target: Callable[[Any], Any], *,
                 corral: Facade | str = DEFAULT_URL, token: str | None = None,
                 lease: float = 30.0, concurrency: int = 1, prefetch: int = 1,
                 max_attempts: int | None = None, name: str | None = None,
                 reconnect: Reconnect | None = DEFAULT_RECONNECT) -> None:
        if concurrency < 1:
            raise InvalidArgument(f"concurrency must be at least 1, not {concurrency}")
        if prefetch < 1:
            raise InvalidArgument(f"prefetch must be at least 1, not {prefetch}")
        if not lease > 0:
            raise InvalidArgument(f"lease must be positive, not {lease}")
        self.jobs_name = jobs
        self.target = target
        self.lease = lease
        self.concurrency = concurrency
        self.prefetch = prefetch
        self.name = name or f"worker-{os.getpid()}"
        self.finished = 0  # jobs finished
        self.failed = 0  # jobs given back after an exception
        self.lost: str | None = None  # why the connection went, if it did
        self._corral_arg = corral
        self._token = token
        self._reconnect = reconnect
        self._max_attempts = max_attempts
        self._stack = contextlib.ExitStack()
        self._corral: Facade | None = None
        self._handle: JobsHandle | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._in_hand: dict[str, tuple[float, Job]] = {}  # job id -> (next touch, job)
        self._toucher = threading.Condition(self._lock)

    def start(self) -> Worker:
        """Connect (for a URL) and start the claiming threads."""
        corral = self._corral = self._stack.enter_context(
            _using(self._corral_arg, self._token, self._reconnect))
        self._handle = corral.jobs(self.jobs_name, max_attempts=self._max_attempts)
        self._threads = [threading.Thread(target=self._claim_loop, daemon=True,
                                          name=f"{self.name}-{i}")
                         for i in range(self.concurrency)]
        self._threads.append(threading.Thread(target=self._touch_loop, daemon=True,
                                              name=f"{self.name}-touch"))
        for thread in self._threads:
            thread.start()
        log.info("%s: claiming from %r with %d thread(s)", self.name, self.jobs_name,
                 self.concurrency)
        return self

    def run(self) -> None:
        """Start, and block until stopped; in the main thread SIGINT and SIGTERM stop
        it gracefully. A lost connection is waited out while the client reconnects;
        raises Closed if it never will (a client made with ``reconnect=None``), so
        that a worker process exits (and its pool starts a fresh one)."""
        with _stopped_by_signals(self._stopping.set):
            self.start()
            self._stopping.wait()
            self.stop()
        if self.lost is not None:
            raise Closed(f"{self.name}: {self.lost}")

    def stop(self, timeout: float | None = None) -> None:
        """Stop claiming; let the jobs in hand finish (up to ``timeout`` seconds), then
        disconnect. Idempotent."""
        self._stopping.set()
        give_up = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads[:self.concurrency]:
            if self._corral is not None:
                self._corral.interrupt(thread)  # ends an idle thread's claim
            thread.join(None if give_up is None else max(0.0, give_up - time.monotonic()))
        with self._lock:
            self._toucher.notify()
        if self._threads:
            self._threads[-1].join(1)
        self._stack.close()

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the threads ------------------------------------------------------------------

    def _claim_loop(self) -> None:
        handle = self._handle
        assert handle is not None
        following: Job | None = None  # claimed by the last finish
        while not self._stopping.is_set():
            try:
                jobs = [following] if following is not None else handle.claim_many(
                    self.prefetch, timeout=None, lease=self.lease)
            except Empty:
                continue  # interrupted by stop()
            except Closed as error:
                if self._stopping.is_set() or self._back(error):
                    continue
                self.lost = str(error)
                self._stopping.set()  # the others stop too; run() raises
                return
            self._hold(jobs)
            for job in jobs[:-1]:  # prefetched: run in order, every one (stop() waits)
                self._run(job, claim_next=False)
            following = self._run(jobs[-1], claim_next=not self._stopping.is_set())
        if following is not None:  # claimed as stop() came: it is in hand, so it runs
            self._hold([following])
            self._run(following, claim_next=False)

    def _hold(self, jobs: list[Job]) -> None:
        """Jobs in this worker's hands, their leases touched until they end."""
        with self._lock:
            for job in jobs:
                self._in_hand[job.id] = (time.monotonic() + self.lease / 3, job)
            self._toucher.notify()

    def _back(self, error: Closed) -> bool:
        """After a lost connection: wait until the client is connected again (it
        reconnects by itself; its own log says so) and say True; False if it never
        will (closed, or it does not reconnect) or the worker is stopping."""
        corral = self._corral
        assert corral is not None
        while not self._stopping.is_set():
            if corral.wait_connected(0.2):
                return True
            if corral.closed:
                return False
        return False

    def _run(self, job: Job, *, claim_next: bool) -> Job | None:
        """Run ``job`` and end it; after a success with ``claim_next``, claim the next
        job in the same command and return it."""
        failure = None
        end: Callable[[], Job | None]
        try:
            result = self.target(job.item)
        except Stall as error:
            failure, end = f"stalled: {error}", partial(job.stall, str(error))
        except Exception as error:  # the job's failure, not the worker's
            failure = f"failed on attempt {job.attempt}: {_summary(error)}"
            end = partial(job.cancel, reason=_reason(error))  # retried after a backoff
        else:
            end = (partial(job.finish_and_claim, result, timeout=None, lease=self.lease)
                   if claim_next else partial(job.finish, result))
        finally:
            with self._lock:
                self._in_hand.pop(job.id, None)
        if failure is not None:
            log.warning("%s: job %s %s", self.name, job.id, failure)
        try:
            following = end()
        except Closed:
            return None  # the connection went: the server releases the claim
        except CorralError as error:  # taken back (LeaseLost) or withdrawn meanwhile
            log.warning("%s: job %s could not be ended: %s", self.name, job.id, error)
            return None
        with self._lock:
            if failure is None:
                self.finished += 1
            else:
                self.failed += 1
        return following

    def _touch_loop(self) -> None:
        """Touch the leases of jobs that run long, each every third of a lease."""
        with self._lock:
            while not (self._stopping.is_set() and not any(t.is_alive() for t in
                                                          self._threads[:-1])):
                now = time.monotonic()
                due = [job for at, job in self._in_hand.values() if at <= now]
                if not due:
                    soonest = min((at for at, _ in self._in_hand.values()), default=None)
                    self._toucher.wait(None if soonest is None else soonest - now)
                    continue
                for job in due:
                    self._in_hand[job.id] = (now + self.lease / 3, job)
                self._lock.release()
                try:
                    for job in due:
                        with contextlib.suppress(CorralError):  # it may have just ended
                            job.touch(self.lease)
                finally:
                    self._lock.acquire()


# -- worker pools ---------------------------------------------------------------------------


@attrs.define
class _Slot:
    wid: int
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    crashes: int = 0  # quick deaths in a row
    due: float = 0.0  # when to start it next


class WorkerPool:
    """``count`` worker processes running ``command``, kept running.

    ``{wid}`` in the command becomes the worker's id, 1 to ``count`` (a replacement
    takes over its predecessor's id). A worker that exits is started again; one that
    lived less than ``stable_after`` seconds counts as a crash, and consecutive crashes
    wait ``backoff`` seconds, doubled each time up to ``max_backoff``. ``stop()`` (or
    SIGTERM/SIGINT to ``run()``) sends SIGTERM to every worker, waits ``grace``
    seconds for them to finish their jobs, then kills what is left.
    """

    def __init__(self, command: str | Sequence[str], count: int = 5, *,
                 backoff: float = 0.5, max_backoff: float = 30.0, stable_after: float = 5.0,
                 grace: float = 30.0, env: dict[str, str] | None = None) -> None:
        if count < 1:
            raise InvalidArgument(f"count must be at least 1, not {count}")
        self.command = shlex.split(command) if isinstance(command, str) else list(command)
        self.count = count
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.stable_after = stable_after
        self.grace = grace
        self.env = env
        self.slots = [_Slot(wid) for wid in range(1, count + 1)]
        self.starts = 0  # processes started, first ones included
        self.delays: list[float] = []  # the wait before each restart, in order
        self._changed = threading.Condition()
        self._stopping = False
        self._stop = threading.Event()  # run() returns when set
        self._thread: threading.Thread | None = None

    def _spawn(self, slot: _Slot) -> None:
        """Start a worker in ``slot`` (lock held); a command that cannot start counts
        as a crash."""
        argv = [word.replace("{wid}", str(slot.wid)) for word in self.command]
        slot.started = time.monotonic()
        try:
            slot.process = subprocess.Popen(argv, env=self.env)
        except OSError as error:
            self._ended(slot, f"could not start: {error}", lived=0.0)
            return
        self.starts += 1
        threading.Thread(target=self._reap, args=(slot, slot.process), daemon=True,
                         name=f"pool-wait-{slot.wid}").start()

    def _reap(self, slot: _Slot, process: subprocess.Popen[bytes]) -> None:
        """Wait for one worker process to exit, then schedule its replacement."""
        code = process.wait()
        with self._changed:
            if slot.process is not process:
                return
            slot.process = None
            lived = time.monotonic() - slot.started
            self._ended(slot, f"exited with {code} after {lived:.1f} s", lived)

    def _ended(self, slot: _Slot, what: str, lived: float) -> None:
        """Schedule the replacement of the worker in ``slot`` (lock held): at once after
        a stable life, after a doubling backoff after a crash."""
        slot.crashes = slot.crashes + 1 if lived < self.stable_after else 0
        delay = 0.0 if not slot.crashes else min(
            self.max_backoff, self.backoff * 2 ** (slot.crashes - 1))
        slot.due = time.monotonic() + delay
        self.delays.append(delay)
        if not self._stopping:
            log.warning("worker %d %s; restarting in %.1f s", slot.wid, what, delay)
        self._changed.notify_all()

    def _supervise(self) -> None:
        with self._changed:
            while not self._stopping:
                now = time.monotonic()
                for slot in self.slots:
                    if slot.process is None and slot.due <= now:
                        self._spawn(slot)
                waiting = [s.due for s in self.slots if s.process is None]
                self._changed.wait(max(0.0, min(waiting) - now) if waiting else None)

    def start(self) -> WorkerPool:
        """Start the workers and the thread that keeps them running."""
        self._thread = threading.Thread(target=self._supervise, daemon=True,
                                        name="worker-pool")
        self._thread.start()
        return self

    def run(self) -> None:
        """Start, and block until SIGINT or SIGTERM (main thread) or ``stop()``."""
        with _stopped_by_signals(self._stop.set):
            try:
                self.start()
                self._stop.wait()
            finally:
                self.stop()

    def alive(self) -> list[int]:
        """The pids of the running workers."""
        with self._changed:
            return [s.process.pid for s in self.slots if s.process is not None]

    def stop(self) -> None:
        """Drain: SIGTERM every worker, wait up to ``grace`` seconds, kill the rest."""
        self._stop.set()
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
            processes = [s.process for s in self.slots if s.process is not None]
        if self._thread is not None:
            self._thread.join()
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        give_up = time.monotonic() + self.grace
        for process in processes:
            try:
                process.wait(max(0.0, give_up - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d did not stop in %g s: killed", process.pid,
                            self.grace)
                process.kill()
                process.wait()

    def __enter__(self) -> WorkerPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- RPC ------------------------------------------------------------------------------------


class CallTimeout(Empty, TimeoutError):
    """No executor answered a call in time (the call was withdrawn)."""


class CallFailed(JobFailed):
    """The executor's function raised (or its call job stalled): the message is the
    remote traceback; ``remote_type`` and ``remote_message`` say what was raised."""


class Executor(Worker):
    """Serves calls on the job queue ``queue`` with ``fn(payload)``.

    What ``fn`` returns goes back to its caller; what it raises goes back as
    ``CallFailed`` (a failed call is answered, not retried).
    """

    def __init__(self, queue: str, fn: Callable[[Any], Any], **options: Any) -> None:
        def serve(payload: Any) -> Any:
            try:
                return {"ok": fn(payload)}
            except Exception as error:
                return {"error": _reason(error)}

        options.setdefault("name", f"executor-{os.getpid()}")
        super().__init__(queue, serve, **options)


class ExecutorClient:
    """Makes calls to the executors serving ``queue``."""

    def __init__(self, queue: str, *, corral: Facade | str = DEFAULT_URL,
                 token: str | None = None) -> None:
        self.queue = queue
        self._stack = contextlib.ExitStack()
        self._jobs = self._stack.enter_context(_using(corral, token)).jobs(queue)

    def call(self, payload: Any, timeout: float | None = None) -> Any:
        """Have an executor run ``fn(payload)`` and return its result.

        Raises CallTimeout after ``timeout`` seconds without an answer (the call is
        withdrawn, so no executor starts it later), CallFailed if ``fn`` raised.
        """
        id = self._jobs.put(payload)
        try:
            answer = self._jobs.result(id, timeout=timeout)
        except JobFailed as error:  # no executor could answer it: it stalled
            raise CallFailed(error.error) from None
        except Empty:
            with contextlib.suppress(NotFound, InvalidArgument):  # it may have just ended
                self._jobs.retract(id)
            raise CallTimeout(f"no answer from {self.queue!r} within {timeout} s"
                              ) from None
        if "error" in answer:
            raise CallFailed(answer["error"])
        return answer["ok"]

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> ExecutorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def call(queue: str, payload: Any, timeout: float | None = None, *,
         corral: Facade | str = DEFAULT_URL, token: str | None = None) -> Any:
    """One call through ``ExecutorClient(queue).call(payload, timeout)``."""
    with ExecutorClient(queue, corral=corral, token=token) as client:
        return client.call(payload, timeout)


# -- named tasks ----------------------------------------------------------------------------


class Tasks:
    """A registry of task functions by name, and the worker that runs them.

    >>> tasks = Tasks()
    >>> @tasks.task
    ... def add(a, b):
    ...     return a + b

    A job on the queue is ``{"task": name, "args": [...], "kwargs": {...}}``; its result
    is the function's return value. A task name the worker does not know stalls the job
    (retrying it would not help), with the reason saying so.
    """

    def __init__(self) -> None:
        self.functions: dict[str, Callable[..., Any]] = {}

    @overload
    def task(self, fn: _F, /) -> _F: ...
    @overload
    def task(self, *, name: str | None = None) -> Callable[[_F], _F]: ...

    def task(self, fn: _F | None = None, *, name: str | None = None
             ) -> _F | Callable[[_F], _F]:
        """Register ``fn`` under ``name`` (its ``__name__`` by default); a decorator,
        ``@tasks.task`` or ``@tasks.task(name=...)``, that returns ``fn`` as it was."""
        def register(fn: _F) -> _F:
            self.functions[name or fn.__name__] = fn
            return fn
        return register(fn) if fn is not None else register

    def run(self, job: dict[str, Any]) -> Any:
        """Run one task job."""
        fn = self.functions.get(job.get("task", ""))
        if fn is None:
            raise Stall(f"no task named {job.get('task')!r} "
                               f"(known: {', '.join(sorted(self.functions)) or 'none'})")
        return fn(*job.get("args", ()), **job.get("kwargs", {}))

    def worker(self, queue: str = "tasks", **options: Any) -> Worker:
        """A Worker running this registry's tasks from ``queue``."""
        return Worker(queue, self.run, **options)


def push_task(name: str, *args: Any, queue: str = "tasks", corral: Facade | str = DEFAULT_URL,
              token: str | None = None, delay: float = 0.0, priority: int = 0,
              **kwargs: Any) -> str:
    """Queue a call of task ``name`` with JSON-able arguments; returns the job id, for
    ``task_result``. Raises InvalidArgument if the arguments are not JSON-able."""
    job = {"task": name, "args": list(args), "kwargs": kwargs}
    try:
        json.dumps(job)
    except (TypeError, ValueError) as error:
        raise InvalidArgument(f"push_task {name!r}: arguments must be JSON-able: {error}"
                              ) from None
    with _using(corral, token) as connected:
        return connected.jobs(queue).put(job, priority=priority, delay=delay)


def task_result(id: str, *, queue: str = "tasks", timeout: float | None = None,
                corral: Facade | str = DEFAULT_URL, token: str | None = None) -> Any:
    """The result of the task job ``id``, waiting up to ``timeout`` seconds. Raises
    Empty on timeout, and JobFailed (with the task's traceback: ``remote_type``,
    ``remote_message``, ``error``) as soon as the job stalls, its attempts spent."""
    with _using(corral, token) as connected:
        return connected.jobs(queue).result(id, timeout=timeout)

