"""The trio facade on Redis: ``TrioRedisCorral``, what ``open_client("redis://...")``
yields.

redis-py has no trio client, so this is a thin shell over the thread facade on Redis
(``RedisCorral``): each call runs that facade's ``_run`` or ``_wait`` in a worker thread,
and the handles are the trio facade's own (``_trio_handles.py``). What a call does, and
what it returns or raises, is ``RedisCorral``'s; this module only decides which thread
runs it and how a cancelled wait ends.

Threads. A command runs in ``trio.to_thread.run_sync`` with ``abandon_on_cancel=False``:
once started it completes, cancelled or not, and the cancel is delivered at the next
checkpoint. A wait holds its thread while it is parked (blocked on its mailbox in
Redis). Two ``trio.CapacityLimiter``s bound them: ``max_commands`` commands and
``max_waits`` waits at once, so parked waits never hold up commands; a call beyond the
bound queues for a thread, first come, first served, and can be cancelled there with
nothing done. A wait being withdrawn borrows one more thread, briefly. No thread
outlives its call: the calling task stays parked until its thread has ended.

Cancelling a wait. The task stays parked (its abort answers ``Abort.FAILED``, trio's
way for an abort whose result comes later) while another thread withdraws the waiter
as ``RedisCorral.interrupt`` does. Withdrawn: the cancel stands. Served first: the
call returns what served it, as the trio facade over a connection does and as a
cancelled ``trio.to_thread.run_sync`` does (an operation that completed is not undone).

Ctrl-C. A KeyboardInterrupt that trio delivers to a parked wait means its caller is
gone: the wait is withdrawn, what served it first is given back with the kernel's
exact inverse (a list's record to the front, a map's key if still absent, a queue's
item to its place), and the KeyboardInterrupt is raised. What cannot be given back
(a queue item taken at once, before the wait parked: ``RedisCorral`` does not say
its order key) is returned to the caller, and the Ctrl-C is raised again, at the
caller's next checkpoint.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import outcome
import redis
import trio

from corral.kernel import Closed, Empty, Event

from . import threads
from . import trio as trio_facade
from ._redis_client import RedisCorral, open_redis

__all__ = ["MAX_COMMANDS", "MAX_WAITS", "TrioRedisCorral", "open_trio_redis"]

log = logging.getLogger("corral.redis")

MAX_WAITS = 256  # waits parked at once, each on a thread and a Redis connection
MAX_COMMANDS = 32  # commands running at once, each on a thread

_checkpoint_if_cancelled = trio.lowlevel.checkpoint_if_cancelled
_cancel_shielded_checkpoint = trio.lowlevel.cancel_shielded_checkpoint
_FAILED = trio.lowlevel.Abort.FAILED
_GIVEN_BACK = frozenset({"wnp_next", "wnp_key", "get"})  # what RedisKernel.give_back undoes


@attrs.define(eq=False)
class _Call:
    """One wait and its worker thread. ``lock`` orders the thread's start and end
    against its withdrawal: once ``finished``, nobody interrupts the thread (which goes
    on to other calls)."""

    task: trio.lowlevel.Task
    op: str  # the kernel command: wait_pop_next, wait_pop_key, queue_get, queue_put...
    args: tuple[Any, ...]  # (container, ...)
    lock: threading.Lock = attrs.Factory(threading.Lock)
    thread: threading.Thread | None = None  # the worker, once it began
    finished: bool = False  # the worker's wait has returned or raised
    withdrawn_early: bool = False  # withdrawn before the worker began: it does nothing
    reason: BaseException | None = None  # the Cancelled or KeyboardInterrupt that aborted it
    repend: bool = False  # return the value, then raise the Ctrl-C again


class TrioRedisCorral(trio_facade.Facade):
    """The trio facade over Redis (>= 7.0) or Valkey, for the tasks of one trio run:
    the containers of every process on the same Redis and prefix, as ``RedisCorral``
    has them. Get one from ``open_client("redis://host:port/db")`` (or any URL that
    ``connect`` takes for Redis), or ``open_trio_redis``."""

    def __init__(self, corral: RedisCorral, *, max_waits: int = MAX_WAITS,
                 max_commands: int = MAX_COMMANDS) -> None:
        """A trio facade on ``corral``, which it closes when closed. Make it inside the
        trio run that will use it."""
        self.url = corral.url
        self._threads = corral  # the thread facade whose calls the worker threads run
        self._sources: dict[int, threads.Subscription] = {}  # each subscription's
        self._kernel = corral._kernel
        self._closed = False
        self._commands = trio.CapacityLimiter(max_commands)
        self._waits = trio.CapacityLimiter(max_waits)
        self._token = trio.lowlevel.current_trio_token()
        self._shut = trio.Event()  # set once ``corral`` is closed

    def __repr__(self) -> str:
        return f"<corral TrioRedisCorral over {self._threads!r}>"

    # -- what the handles call ------------------------------------------------------------

    def _clock(self) -> float:
        return 0.0  # the Redis server keeps the time

    async def _run(self, command: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One command, in a worker thread, as a checkpoint."""
        return await self._call(self._threads._run, command, *args, **kwargs)

    async def _call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``function(*args, **kwargs)`` in a worker thread (at most ``max_commands``
        at once), as a checkpoint: cancelled before it starts, it does nothing; once
        started, it completes."""
        await _checkpoint_if_cancelled()
        if self._closed:
            await _cancel_shielded_checkpoint()
            raise Closed("this corral is closed")
        try:
            return await trio.to_thread.run_sync(
                functools.partial(function, *args, **kwargs), abandon_on_cancel=False,
                limiter=self._commands, thread_name="corral redis command")
        except redis.RedisError as error:
            if self._closed:  # its connection was closed under it
                raise Closed("the corral was closed during the call") from error
            raise

    @trio.lowlevel.enable_ki_protection  # a Ctrl-C comes at its checkpoints, by abort
    async def _wait(self, command: Callable[..., Any], *args: Any, timeout: float | None,
                    **kwargs: Any) -> Any:
        """A wait, in a worker thread of its own (at most ``max_waits`` at once): its
        immediate result, or what served it. Cancelling it withdraws it (module
        docstring)."""
        call = _Call(trio.lowlevel.current_task(), getattr(command, "__name__", ""), args)
        await self._waits.acquire_on_behalf_of(call)  # a checkpoint: nothing done yet
        try:
            if self._closed:
                raise Closed("this corral is closed")
            trio.lowlevel.start_thread_soon(
                functools.partial(self._work, call, command, args, timeout, kwargs),
                functools.partial(self._worked, call), name=f"corral redis {call.op}")
        except BaseException:
            self._waits.release_on_behalf_of(call)
            raise

        def abort(raise_cancel: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            try:
                raise_cancel()
            except BaseException as reason:  # Cancelled, or KeyboardInterrupt (taken)
                call.reason = reason
            with call.lock:  # only the worker can hold it now, for a moment, no I/O
                if call.finished:
                    return _FAILED  # its outcome is on its way
                if call.thread is None:
                    call.withdrawn_early = True
                    return _FAILED
            trio.lowlevel.start_thread_soon(functools.partial(self._withdraw, call),
                                            _logged, name="corral redis withdraw")
            return _FAILED

        got: outcome.Outcome[Any] = await trio.lowlevel.wait_task_rescheduled(abort)
        reason = call.reason
        if reason is not None and isinstance(got, outcome.Error) and (
                isinstance(reason, KeyboardInterrupt) or isinstance(got.error, Empty)):
            got = outcome.Error(reason)  # withdrawn (or timed out): the cancel stands
        if call.repend:
            signal.raise_signal(signal.SIGINT)  # here, KI-protected: trio defers it
        return got.unwrap()

    async def _subscribe(self, name: str, start: int | None) -> trio_facade.Subscription:
        """The thread facade's subscription, its events handed to trio as they come by
        a thread of its own."""
        source: threads.Subscription = await self._call(self._threads._subscribe, name,
                                                         start)
        subscription = trio_facade.Subscription(self, source._sid)
        self._sources[source._sid] = source
        token = trio.lowlevel.current_trio_token()

        def relay() -> None:
            with contextlib.suppress(trio.RunFinishedError):
                try:
                    for event in source:
                        token.run_sync_soon(subscription._put, event)
                finally:
                    token.run_sync_soon(subscription._end, source._ended or "closed")

        threading.Thread(target=relay, daemon=True, name=f"corral trio events of {name!r}"
                         ).start()
        return subscription

    def _unsubscribe(self, subscription: trio_facade.Subscription) -> None:
        source = self._sources.pop(subscription._sid, None)
        if source is not None:  # its Redis call in a thread: trio never blocks on it
            trio.lowlevel.start_thread_soon(source.close, _logged,
                                            name="corral redis unsubscribe")
        subscription._end("closed")

    async def delete_container(self, name: str) -> None:
        """As ``RedisCorral.delete_container``."""
        await self._call(self._threads.delete_container, name)

    # -- public extras ---------------------------------------------------------------------

    async def wait_connected(self) -> None:
        """At once (redis-py reconnects by itself, call by call). Raises Closed once
        this corral is closed."""
        await trio.lowlevel.checkpoint()
        if self._closed:
            raise Closed("this corral is closed")

    def close(self) -> None:
        """Close at once: parked callers get Closed (or what served them, if it came
        first). Idempotent. (``aclose()``, or leaving ``open_client``'s block, also
        waits until it is done.)"""
        if not self._closed:
            self._closed = True
            trio.lowlevel.start_thread_soon(self._threads.close, self._closed_threads,
                                            name="corral redis close")

    async def aclose(self) -> None:
        """Close, and wait until the parked waits have ended and Redis's connections
        are closed."""
        self.close()
        await self._shut.wait()

    # -- the worker threads ------------------------------------------------------------------

    def _work(self, call: _Call, command: Callable[..., Any], args: tuple[Any, ...],
              timeout: float | None, kwargs: dict[str, Any]) -> Any:
        """In the worker thread: the wait, unless it was withdrawn before it began."""
        with call.lock:
            if call.withdrawn_early:
                raise Empty("interrupted")
            call.thread = thread = threading.current_thread()
        try:
            return self._threads._wait(command, *args, timeout=timeout, **kwargs)
        finally:
            with call.lock:
                call.finished = True
            with self._threads._lock:  # an interrupt that came too late to end this wait
                self._threads._interrupted.discard(thread.ident or 0)  # must not end the next

    def _worked(self, call: _Call, result: outcome.Outcome[Any]) -> None:
        """In the worker thread, as it ends: back to trio with ``result``."""
        with contextlib.suppress(trio.RunFinishedError):  # never: the task waits for it
            self._token.run_sync_soon(self._settle, call, result)

    def _withdraw(self, call: _Call) -> None:
        """In a thread of its own: end ``call``'s wait, as ``RedisCorral.interrupt``
        does (withdrawn, or else served first, or else ended at once when it parks)."""
        threads = self._threads
        with call.lock:
            if call.finished:
                return
            assert call.thread is not None
            ident = call.thread.ident or 0
            with threads._lock:
                was_parked = ident in threads._parked
            threads.interrupt(call.thread)
            if was_parked:
                return
            # interrupt finds the thread not parked and marks it for its next wait under
            # two holds of its lock: a wait that parked between them is marked too late
            # and stays parked. Interrupt again if it is parked now.
            with threads._lock:
                parked = ident in threads._parked
            if parked:
                threads.interrupt(call.thread)

    def _give_back(self, delivery: Event) -> None:
        """In a thread: undo ``delivery``, whose caller is gone, under a session of its
        own (as ``RedisCorral`` does for a Ctrl-C)."""
        threads = self._threads
        waits = threads._waits_on(delivery.container)
        with waits.lock:
            session = waits.idle.pop() if waits.idle else waits.kernel.open_session()
            try:
                threads._give_back(waits.kernel, session, delivery)
            finally:
                threads._idle(waits, session)

    def _closed_threads(self, result: outcome.Outcome[None]) -> None:
        _logged(result)
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(self._shut.set)

    # -- back in trio ------------------------------------------------------------------------

    def _settle(self, call: _Call, result: outcome.Outcome[Any]) -> None:
        """``call``'s wait ended with ``result``: wake its task, unless what served it
        goes back first (its caller is gone)."""
        reason = call.reason
        if isinstance(reason, KeyboardInterrupt) and isinstance(result, outcome.Value):
            taken = self._taken(call, result.value)
            if taken is None:  # it took nothing (a put, which stays)
                result = outcome.Error(reason)
            elif taken.name in _GIVEN_BACK and (taken.name != "get" or taken.metadata):
                trio.lowlevel.start_thread_soon(
                    functools.partial(self._give_back, taken),
                    functools.partial(self._given_back, call, reason),
                    name="corral redis give back")
                return
            else:  # not to be given back exactly: the caller's, with the Ctrl-C after
                call.repend = True
        self._wake(call, result)

    def _given_back(self, call: _Call, reason: BaseException,
                    done: outcome.Outcome[None]) -> None:
        """In the give-back thread, as it ends: the task raises ``reason``."""
        _logged(done)
        with contextlib.suppress(trio.RunFinishedError):  # never: the task waits for it
            self._token.run_sync_soon(self._wake, call, outcome.Error(reason))

    def _wake(self, call: _Call, result: outcome.Outcome[Any]) -> None:
        self._waits.release_on_behalf_of(call)
        trio.lowlevel.reschedule(call.task, outcome.Value(result))

    @staticmethod
    def _taken(call: _Call, value: Any) -> Event | None:
        """What a wait's result took from its container, as the Event that
        ``give_back`` undoes (a queue item taken at once has no order key, its
        metadata); None if it took nothing."""
        if value is None or type(value) is Event:
            return None if value is None or value.name == "put" else value
        name = call.args[0]
        if call.op == "wait_pop_next":
            return Event(name, "wnp_next", 0, *value)
        if call.op == "wait_pop_key":
            return Event(name, "wnp_key", call.args[1], *value)
        if call.op == "queue_get":
            return Event(name, "get", None, value[0], None)
        return Event(name, call.op, None, value)


def _logged(result: outcome.Outcome[Any]) -> None:
    """What a helper thread ended with: only an error matters, and only to the log."""
    if isinstance(result, outcome.Error):
        log.error("corral: %s", result.error, exc_info=result.error)


@contextlib.asynccontextmanager
async def open_trio_redis(url: str, *, connect_timeout: float = 10.0,
                          max_waits: int = MAX_WAITS, max_commands: int = MAX_COMMANDS
                          ) -> AsyncIterator[TrioRedisCorral]:
    """A ``TrioRedisCorral`` on the Redis at ``url`` (as ``open_redis`` takes it),
    closed when the block exits. ``max_waits`` and ``max_commands`` bound its worker
    threads (module docstring). Raises ConnectionError (an OSError) if Redis cannot be
    reached."""
    threads = await trio.to_thread.run_sync(
        functools.partial(open_redis, url, connect_timeout=connect_timeout),
        abandon_on_cancel=False, thread_name="corral redis connect")
    corral = TrioRedisCorral(threads, max_waits=max_waits, max_commands=max_commands)
    try:
        yield corral
    finally:
        with trio.CancelScope(shield=True):
            await corral.aclose()
