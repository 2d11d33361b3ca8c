"""The blocking, thread-safe facade: ``Facade`` is its surface, ``Corral`` the embedded
one.

The handles (``_handles.py``) name each call by a method of the facade's ``_kernel``
and pass it to the facade's ``_run`` (a command) or ``_wait`` (one that may wait): an
embedded ``Corral`` applies it to its kernel, a client (``corral.adapters.client``)
sends it to a server.

Embedded, every call takes one lock around one kernel command and the routing of its
effects; a call that must wait parks its thread on a lock of its own, released by
whoever serves it. One alarm thread, started at the first timed wait, sleeps until the
kernel's next deadline. Nothing polls.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

import attrs

from corral.kernel import Closed, Empty, Event, Kind, Waiting
from corral.transports.journal import JournaledKernel

from ._facade import EffectRouter, journaled_kernel
from ._handles import (
    FeedHandle,
    Job,
    JobsHandle,
    ListHandle,
    MapHandle,
    QueueHandle,
    SortedFeedHandle,
)

if TYPE_CHECKING:
    from .web import StatusThread

__all__ = [
    "Corral",
    "Facade",
    "FeedHandle",
    "Job",
    "JobsHandle",
    "ListHandle",
    "MapHandle",
    "QueueHandle",
    "SortedFeedHandle",
    "Subscription",
]


@attrs.define(eq=False)
class _Parked:
    """A thread parked in a wait: ``lock`` is released once ``event`` or ``error`` is set."""

    lock: threading.Lock = attrs.Factory(threading.Lock)
    event: Event | None = None
    error: BaseException | None = None
    thread: int = attrs.Factory(threading.get_ident)


_END = object()  # queued on a subscription when it ends


class Subscription:
    """The events of one container, in order. Iterate it, or ``get()`` one at a time."""

    def __init__(self, corral: Facade, sid: int) -> None:
        self._corral = corral
        self._sid = sid
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._ended: str | None = None

    def get(self, timeout: float | None = None) -> Event:
        """The next event; waits up to ``timeout`` seconds (None: forever).

        Raises Empty on timeout and Closed once the subscription has ended and its
        buffered events are consumed.
        """
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise Empty(f"no event within {timeout} s") from None
        if item is _END:
            self._queue.put(_END)  # every later get sees the end too
            raise Closed(f"subscription ended: {self._ended}")
        event: Event = item
        return event

    def __iter__(self) -> Iterator[Event]:
        """Events until the subscription ends."""
        while True:
            try:
                yield self.get()
            except Closed:
                return

    def close(self) -> None:
        """Stop receiving events; buffered ones can still be read. Idempotent."""
        if self._ended is None:
            self._corral._unsubscribe(self)

    def _put(self, event: Event) -> None:
        self._queue.put(event)

    def _end(self, reason: str) -> None:
        self._ended = reason
        self._queue.put(_END)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Facade:
    """The thread facade's surface: what an embedded ``Corral`` and a connected client
    (``corral.adapters.client.connect``) share. Thread-safe; use it as a context
    manager.

    ``list(name)``, ``map(name)`` and the others create the container if needed and
    return a handle.
    """

    _kernel: Any  # whose methods name the commands the handles run

    def _run(self, command: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one command; return its result or raise its error."""
        raise NotImplementedError

    def _wait(self, command: Callable[..., Any], *args: Any, timeout: float | None,
              **kwargs: Any) -> Any:
        """Run one wait command: its immediate result, or what served it."""
        raise NotImplementedError

    def _nowait(self, command: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one wait command with timeout 0: its result, or its error (Empty)."""
        return self._wait(command, *args, timeout=0, **kwargs)

    def _len(self, name: str) -> int:
        count: int = self._run(self._kernel.count, name)
        return count

    def _clock(self) -> float:
        raise NotImplementedError

    def _subscribe(self, name: str, start: int | None) -> Subscription:
        raise NotImplementedError

    def _unsubscribe(self, subscription: Subscription) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Close: parked callers get Closed, subscriptions end. Idempotent."""
        raise NotImplementedError

    def interrupt(self, thread: threading.Thread) -> None:
        """End the wait ``thread`` is parked in with Empty, as if it had timed out; if
        it is not parked, its next wait that would park raises Empty instead. What was
        already handed to it stays its own. For stopping threads that wait without a
        timeout, such as workers (``Thread.interrupt`` in Java does the same)."""
        raise NotImplementedError

    _closed: bool

    @property
    def closed(self) -> bool:
        """Whether it is closed (over a connection: by ``close()``, or for good after
        the connection was lost with no reconnecting)."""
        return self._closed

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Wait until the corral can take calls: at once embedded; over a connection,
        until it is back after a loss. False after ``timeout`` seconds without it, or
        once the corral is closed."""
        return not self._closed

    def __enter__(self) -> Facade:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def list(self, name: str) -> ListHandle:
        """The list ``name``, created if needed. Raises WrongKind if it is not a list."""
        self._run(self._kernel.create, name, Kind.LIST)
        return ListHandle(self, name)

    def map(self, name: str) -> MapHandle:
        """The map ``name``, created if needed. Raises WrongKind if it is not a map."""
        self._run(self._kernel.create, name, Kind.MAP)
        return MapHandle(self, name)

    def feed(self, name: str, max_length: int | None = None) -> FeedHandle:
        """The feed ``name``, created if needed, keeping at most ``max_length`` items.

        Raises WrongKind if it is not a feed, InvalidArgument if it exists with
        another max_length.
        """
        self._run(self._kernel.create, name, Kind.FEED, max_length=max_length)
        return FeedHandle(self, name)

    def sorted_feed(self, name: str) -> SortedFeedHandle:
        """The sorted feed ``name``, created if needed."""
        self._run(self._kernel.create, name, Kind.SORTED_FEED)
        return SortedFeedHandle(self, name)

    def queue(self, name: str, max_length: int | None = None) -> QueueHandle:
        """The queue ``name``, created if needed, holding at most ``max_length`` items."""
        self._run(self._kernel.create, name, Kind.QUEUE, max_length=max_length)
        return QueueHandle(self, name)

    def jobs(self, name: str, lease: float | None = None, max_attempts: int | None = None,
             *, release_on_close: bool | None = None, result_ttl: float | None = None,
             backoff: float | None = None, backoff_factor: float | None = None,
             backoff_max: float | None = None) -> JobsHandle:
        """The job queue ``name``, created if needed.

        ``lease``: seconds a claim lasts unless touched (30). ``max_attempts``: claims
        after which a failing job stalls, the dead-letter state (5; 0: no limit).
        ``release_on_close``: whether closing this corral releases its claims at once
        (True) or lets them run out. ``result_ttl``: seconds a result is kept (300).
        ``backoff``, ``backoff_factor``, ``backoff_max``: a failed claim is retried
        after ``backoff * backoff_factor ** (failures - 1)`` seconds, at most
        ``backoff_max``, less up to half of it at random (1, 2, 300; ``backoff=0``
        retries at once). None keeps the existing container's setting, or the
        default; a different explicit value than the existing container's raises
        InvalidArgument.
        """
        self._run(self._kernel.create, name, Kind.JOBS, lease=lease,
                  max_attempts=max_attempts, release_on_close=release_on_close,
                  result_ttl=result_ttl, backoff=backoff,
                  backoff_factor=backoff_factor, backoff_max=backoff_max)
        return JobsHandle(self, name)

    def delete_container(self, name: str) -> None:
        """Delete a container: its waiters get NotFound, its subscriptions end."""
        self._run(self._kernel.delete_container, name)


class Corral(Facade, EffectRouter[_Parked, Subscription]):
    """An embedded corral for threads. Thread-safe; use it as a context manager."""

    def __init__(self, *, kernel: Any = None,
                 journal: str | os.PathLike[str] | None = None, fsync: str = "always"
                 ) -> None:
        """An embedded corral, on ``kernel`` if given. With ``journal`` (a directory)
        every container is durable: each command is in the journal (synced as
        ``fsync`` says) before it returns, and a corral opened on the same directory
        later starts where this one ended."""
        self._clock: Callable[[], float] = time.monotonic
        if journal is not None:
            self._clock = time.time  # deadlines outlive the process
            kernel = journaled_kernel(journal, fsync, self._clock())
        super().__init__(kernel)
        self._lock = threading.Lock()
        self._alarm_changed = threading.Condition(self._lock)
        self._alarm: threading.Thread | None = None
        self._alarm_at: float | None = None  # the deadline the alarm sleeps toward
        self._interrupted: set[int] = set()  # threads whose next wait ends at once

    def __enter__(self) -> Corral:
        return self

    def close(self) -> None:
        """Close: parked callers get Closed, subscriptions end. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._shut()
            self._alarm_changed.notify()
            alarm = self._alarm
        if alarm is not None and alarm is not threading.current_thread():
            alarm.join()
        if isinstance(self._kernel, JournaledKernel):
            self._kernel.journal.close()

    def serve_status(self, host: str = "127.0.0.1", port: int = 0, *,
                     token: str | None = None, max_clients: int = 16,
                     interval: float = 1.0) -> StatusThread:
        """Serve this corral's live status page, ``/metrics`` and ``/healthz`` over
        HTTP from a background thread; returns it running (``.url``; ``.close()`` or a
        ``with`` block stops it).

        Loopback only unless ``token`` is given; with it, the page's actions (retry,
        retract, purge) are offered to requests that carry it. Needs ``corral[web]``.
        """
        from .web import StatusThread

        return StatusThread(self, host, port, token=token, max_clients=max_clients,
                            interval=interval)

    # -- plumbing ---------------------------------------------------------------------

    def _run(self, command: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One kernel command under the lock; route its effects; re-arm the alarm if
        the command armed an earlier deadline."""
        kernel = self._kernel
        with self._lock:
            if self._closed:
                self._check_open()
            result = command(*args, **kwargs) if kwargs else command(*args)
            if kernel.effects:
                self._dispatch()
            if kernel.timers.first is not None:
                self._rearm()
            return result

    def _wait(self, command: Callable[..., Any], *args: Any, timeout: float | None,
              **kwargs: Any) -> Any:
        """A wait command for this session: its immediate result, or else (after
        parking) the Event that served it."""
        kernel = self._kernel
        with self._lock:
            if self._closed:
                self._check_open()
            if kwargs or len(args) != 1:
                result = command(self._session, *args, timeout=timeout, now=self._clock(),
                                 **kwargs)
            else:  # the common shape, spelt out: a call with neither * nor ** is cheaper
                result = command(self._session, args[0], timeout=timeout,
                                 now=self._clock())
            if kernel.effects:
                self._dispatch()
            if type(result) is not Waiting:
                if kernel.timers.first is not None:
                    self._rearm()
                return result
            parked = self._park(result.waiter, timeout)
        return self._unpark(parked, result.waiter)

    def interrupt(self, thread: threading.Thread) -> None:
        with self._lock:
            for waiter, parked in list(self._parked.items()):
                if parked.thread == thread.ident:
                    if self._closed or self._kernel.cancel_wait(self._session, waiter):
                        del self._parked[waiter]
                        self._wake(parked, None, Empty("interrupted"))
                    return
            if thread.ident is not None:
                self._interrupted.add(thread.ident)

    interrupt.__doc__ = Facade.interrupt.__doc__

    def _park(self, waiter: int, timeout: float | None) -> _Parked:
        """Prepare to park the calling thread for ``waiter`` (lock held)."""
        if self._interrupted and threading.get_ident() in self._interrupted:
            self._interrupted.discard(threading.get_ident())
            if self._kernel.cancel_wait(self._session, waiter):
                raise Empty("interrupted")
        parked = self._parked[waiter] = _Parked()
        parked.lock.acquire()
        if timeout is not None:
            self._rearm()
        return parked

    def _unpark(self, parked: _Parked, waiter: int) -> Event:
        """Park the calling thread until ``waiter`` is served or cancelled (lock free)."""
        try:
            parked.lock.acquire()
        except BaseException:  # a KeyboardInterrupt while parked: withdraw, lose nothing
            with self._lock:
                if self._closed or self._kernel.cancel_wait(self._session, waiter):
                    self._parked.pop(waiter, None)
                elif parked.event is not None:  # served meanwhile: give it back
                    self._give_back(parked.event, self._clock())
            raise
        if parked.error is not None:
            raise parked.error
        assert parked.event is not None
        return parked.event

    def _wake(self, parked: _Parked, event: Event | None, error: BaseException | None
              ) -> None:
        parked.event = event
        parked.error = error
        parked.lock.release()

    def _subscribe(self, name: str, start: int | None) -> Subscription:
        with self._lock:
            self._check_open()
            sid = self._kernel.subscribe(self._session, name, start=start)
            subscription = self._subscriptions[sid] = Subscription(self, sid)
            self._dispatch()
            return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription._ended is None:
                self._kernel.unsubscribe(self._session, subscription._sid)
                del self._subscriptions[subscription._sid]
                subscription._end("closed")

    def _rearm(self) -> None:
        """If the kernel's next deadline is earlier than the alarm's, wake the alarm
        (starting it the first time). Lock held."""
        deadline = self._kernel.next_deadline()
        if deadline is None or (self._alarm_at is not None and deadline >= self._alarm_at):
            return
        self._alarm_at = deadline
        if self._alarm is None:
            self._alarm = threading.Thread(target=self._sound_alarms, name="corral-alarm",
                                           daemon=True)
            self._alarm.start()
        else:
            self._alarm_changed.notify()

    def _sound_alarms(self) -> None:
        with self._lock:
            while not self._closed:
                deadline = self._alarm_at = self._kernel.next_deadline()
                if deadline is None:
                    self._alarm_changed.wait()
                    continue
                delay = deadline - self._clock()
                if delay > 0:
                    self._alarm_changed.wait(delay)
                    continue
                self._kernel.advance(self._clock())
                self._dispatch()
