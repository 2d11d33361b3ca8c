"""The blocking, thread-safe facade: ``Facade`` is its surface, ``Corral`` the embedded
one.

The handles name each call by a method of the facade's ``_kernel`` and pass it to the
facade's ``_run`` (a command) or ``_wait`` (one that may wait): an embedded ``Corral``
applies it to its kernel, a client (``corral.adapters.client``) sends it to a server.

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
from typing import Any

import attrs

from corral import kernel
from corral.kernel import (
    Closed,
    ContainerStatistics,
    Empty,
    Event,
    JobState,
    JobStatistics,
    Kind,
    Record,
    Waiting,
)
from corral.transports.journal import JournaledKernel

from ._facade import EffectRouter, journaled_kernel, wait_value

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

    def _end(self, reason: str) -> None:
        self._ended = reason
        self._queue.put(_END)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Handle:
    """What lists and maps share: a name, properties, count, query, clear, subscribe."""

    def __init__(self, corral: Facade, name: str) -> None:
        self._corral = corral
        self._kernel = corral._kernel
        self.name = name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    def __len__(self) -> int:
        return self.count()

    def statistics(self) -> ContainerStatistics:
        """A snapshot: kind and how many records, waiters and subscribers it has."""
        result: ContainerStatistics = self._corral._run(self._kernel.statistics, self.name)
        return result

    def count(self) -> int:
        """How many records it holds."""
        result: int = self._corral._run(self._kernel.count, self.name)
        return result

    def query(self, start: int = 0, end: int | None = None) -> list[Record]:
        """The records at positions ``[start:end]`` (slice rules), with key and metadata."""
        result: list[Record] = self._corral._run(self._kernel.query, self.name, start, end)
        return result

    def clear(self) -> None:
        """Remove every record."""
        self._corral._run(self._kernel.clear, self.name)

    def delete(self, key: Any) -> None:
        """Remove the record at ``key``. Raises NotFound."""
        self._corral._run(self._kernel.delete, self.name, key)

    def set_property(self, key: str, value: str) -> None:
        """Set a string property."""
        self._corral._run(self._kernel.set_property, self.name, key, value)

    def get_property(self, key: str) -> str:
        """A string property. Raises NotFound if it is not set."""
        result: str = self._corral._run(self._kernel.get_property, self.name, key)
        return result

    def subscribe(self, start: int | None = None) -> Subscription:
        """Receive this container's events from now on.

        With ``start`` (a position; 0 for everything), the records from there on come
        first, as push_back events (lists) or set events (maps).
        """
        return self._corral._subscribe(self.name, start)


class ListHandle(_Handle):
    """A list: records by index; negative indexes count from the end."""

    def push_back(self, value: Any, metadata: Any = None) -> None:
        """Append; the oldest ``wait_pop_next`` caller, if any, receives it."""
        self._corral._run(self._kernel.push_back, self.name, value, metadata)

    def push_front(self, value: Any, metadata: Any = None) -> None:
        """Prepend; the oldest ``wait_pop_next`` caller, if any, receives it."""
        self._corral._run(self._kernel.push_front, self.name, value, metadata)

    def pop_front(self) -> Any:
        """Remove and return the first value. Raises Empty."""
        record: Record = self._corral._run(self._kernel.pop_front, self.name)
        return record.value

    def pop_back(self) -> Any:
        """Remove and return the last value. Raises Empty."""
        record: Record = self._corral._run(self._kernel.pop_back, self.name)
        return record.value

    def get(self, index: int) -> Any:
        """The value at ``index``. Raises NotFound."""
        record: Record = self._corral._run(self._kernel.get, self.name, index)
        return record.value

    def set(self, index: int, value: Any, metadata: Any = None) -> None:
        """Replace the record at ``index``. Raises NotFound."""
        self._corral._run(self._kernel.set, self.name, index, value, metadata)

    def insert(self, index: int, value: Any, metadata: Any = None) -> None:
        """Insert before ``index`` (``len`` appends). Raises NotFound."""
        self._corral._run(self._kernel.insert, self.name, index, value, metadata)

    def wait_pop_next(self, timeout: float | None = None) -> Any:
        """Pop the first value, waiting for one if the list is empty.

        Callers are served first come, first served. Raises Empty after ``timeout``
        seconds (None waits forever), Closed if the corral closes meanwhile.
        """
        return wait_value(self._corral._wait(self._kernel.wait_pop_next, self.name,
                                             timeout=timeout))


class MapHandle(_Handle):
    """A map: records by string key, in key order."""

    def set(self, key: str, value: Any, metadata: Any = None) -> None:
        """Insert or replace ``key``; the oldest ``wait_pop_key(key)`` caller receives it."""
        self._corral._run(self._kernel.set, self.name, key, value, metadata)

    def insert(self, key: str, value: Any, metadata: Any = None) -> None:
        """Add ``key``. Raises AlreadyExists if it is present."""
        self._corral._run(self._kernel.insert, self.name, key, value, metadata)

    def get(self, key: str) -> Any:
        """The value at ``key``. Raises NotFound."""
        record: Record = self._corral._run(self._kernel.get, self.name, key)
        return record.value

    def keys(self) -> list[str]:
        """Every key, in order."""
        result: list[str] = self._corral._run(self._kernel.keys, self.name)
        return result

    def wait_pop_key(self, key: str, timeout: float | None = None) -> Any:
        """Pop ``key``'s value, waiting until it is set if it is absent.

        Callers waiting on one key are served first come, first served. Raises Empty
        after ``timeout`` seconds (None waits forever), Closed if the corral closes.
        """
        return wait_value(self._corral._wait(self._kernel.wait_pop_key, self.name, key,
                                             timeout=timeout))


class _ByIdHandle(_Handle):
    """What feeds and sorted feeds share: items by id."""

    def get(self, id: Any) -> Any:
        """The item ``id``. Raises NotFound."""
        record: Record = self._corral._run(self._kernel.get, self.name, id)
        return record.value

    def retract(self, id: Any) -> None:
        """Remove item ``id``. Raises NotFound."""
        self._corral._run(self._kernel.retract, self.name, id)

    def ids(self) -> list[Any]:
        """Every id, in order."""
        result: list[Any] = self._corral._run(self._kernel.ids, self.name)
        return result

    def items(self) -> list[tuple[Any, Any]]:
        """Every ``(id, item)``, in order."""
        result: list[tuple[Any, Any]] = self._corral._run(self._kernel.items, self.name)
        return result


class FeedHandle(_ByIdHandle):
    """A feed: items by string id, oldest first; events publish, edit, retract."""

    def publish(self, item: Any, id: str | None = None) -> str:
        """Publish ``item``; returns its id. An existing id is edited and moves last;
        a bounded feed retracts its oldest items first."""
        result: str = self._corral._run(self._kernel.publish, self.name, item, id)
        return result


class SortedFeedHandle(_ByIdHandle):
    """A sorted feed: items by int id in an order set by hand; events publish, edit,
    position, retract."""

    def append(self, item: Any) -> int:
        """Add ``item`` last; returns its id."""
        result: int = self._corral._run(self._kernel.append, self.name, item)
        return result

    def prepend(self, item: Any) -> int:
        """Add ``item`` first; returns its id."""
        result: int = self._corral._run(self._kernel.prepend, self.name, item)
        return result

    def insert_before(self, rel_id: int, item: Any) -> int:
        """Add ``item`` just before ``rel_id``; returns its id. Raises NotFound."""
        result: int = self._corral._run(self._kernel.insert_before, self.name, rel_id, item)
        return result

    def insert_after(self, rel_id: int, item: Any) -> int:
        """Add ``item`` just after ``rel_id``; returns its id. Raises NotFound."""
        result: int = self._corral._run(self._kernel.insert_after, self.name, rel_id, item)
        return result

    def edit(self, id: int, item: Any) -> None:
        """Replace item ``id`` in place. Raises NotFound."""
        self._corral._run(self._kernel.edit, self.name, id, item)

    def move_before(self, rel_id: int, id: int) -> None:
        """Move ``id`` just before ``rel_id`` (InvalidArgument if they are the same)."""
        self._corral._run(self._kernel.move_before, self.name, rel_id, id)

    def move_after(self, rel_id: int, id: int) -> None:
        """Move ``id`` just after ``rel_id`` (InvalidArgument if they are the same)."""
        self._corral._run(self._kernel.move_after, self.name, rel_id, id)

    def move_first(self, id: int) -> None:
        """Move ``id`` to the start."""
        self._corral._run(self._kernel.move_first, self.name, id)

    def move_last(self, id: int) -> None:
        """Move ``id`` to the end."""
        self._corral._run(self._kernel.move_last, self.name, id)


class QueueHandle(_Handle):
    """A queue: each item taken once, highest priority first, FIFO within a priority."""

    def put(self, item: Any, priority: int = 0, timeout: float | None = 0.0) -> None:
        """Add ``item``. A full bounded queue raises LimitExceeded at once (timeout 0),
        or after waiting ``timeout`` seconds for room (None: as long as it takes)."""
        corral = self._corral
        served = corral._wait(self._kernel.queue_put, self.name, item, priority=priority,
                              timeout=timeout)
        assert served is None or type(served) is Event

    def get(self, timeout: float | None = None) -> Any:
        """Take the next item, waiting up to ``timeout`` seconds (None: forever).
        Raises Empty on timeout."""
        return wait_value(self._corral._wait(self._kernel.queue_get, self.name,
                                             timeout=timeout))

    def get_nowait(self) -> Any:
        """Take the next item. Raises Empty if there is none."""
        return self.get(timeout=0)


@attrs.frozen
class Job(kernel.Job):
    """A claimed job: ``id``, ``item``, ``attempt`` (1 for the first claim), and the
    calls that end or extend its claim."""

    _jobs: JobsHandle = attrs.field(eq=False, repr=False)

    def finish(self, result: Any = None, result_ttl: float | None = None) -> None:
        """Finish with ``result``. Raises LeaseLost if this claim is no longer current."""
        self._jobs.finish(self, result, result_ttl)

    def cancel(self, delay: float = 0.0, reason: str | None = None) -> None:
        """Give the job back (ready again after ``delay``). Raises LeaseLost if stale."""
        self._jobs.cancel(self, delay, reason)

    def stall(self, reason: str | None = None) -> None:
        """Park the job until retried. Raises LeaseLost if stale."""
        self._jobs.stall(self, reason)

    def touch(self, lease: float | None = None) -> None:
        """Extend the claim by ``lease`` seconds from now. Raises LeaseLost if stale."""
        self._jobs.touch(self, lease)


class JobsHandle(_Handle):
    """A job queue: jobs claimed under a lease until finished, exactly once."""

    def _bind(self, job: kernel.Job) -> Job:
        return Job(job.id, job.item, job.attempt, self)

    def put(self, item: Any, priority: int = 0, delay: float = 0.0, id: str | None = None
            ) -> str:
        """Add a job (ready after ``delay`` seconds); returns its id."""
        result: str = self._corral._run(self._kernel.put, self.name, item,
                                        priority=priority, delay=delay, id=id,
                                        now=self._corral._clock())
        return result

    def claim(self, timeout: float | None = None, lease: float | None = None) -> Job:
        """Claim the next job, waiting up to ``timeout`` seconds (None: forever), under
        a lease of ``lease`` seconds (the queue's default if None). Raises Empty."""
        got = self._corral._wait(self._kernel.claim, self.name, timeout=timeout,
                                 lease=lease)
        return self._bind(got.value if type(got) is Event else got)

    def finish(self, job: kernel.Job, result: Any = None, result_ttl: float | None = None
               ) -> None:
        """Finish a claimed job with ``result``. Raises LeaseLost if the claim is stale."""
        self._corral._run(self._kernel.finish, self.name, job, result,
                          result_ttl=result_ttl, now=self._corral._clock())

    def cancel(self, job: kernel.Job, delay: float = 0.0, reason: str | None = None
               ) -> None:
        """Give a claimed job back; it stalls once max_attempts claims have failed."""
        self._corral._run(self._kernel.cancel, self.name, job, delay=delay, reason=reason,
                          now=self._corral._clock())

    def stall(self, job: kernel.Job, reason: str | None = None) -> None:
        """Park a claimed job until it is retried."""
        self._corral._run(self._kernel.stall, self.name, job, reason)

    def touch(self, job: kernel.Job, lease: float | None = None) -> None:
        """Extend a claim to ``lease`` seconds from now."""
        self._corral._run(self._kernel.touch, self.name, job, lease=lease,
                          now=self._corral._clock())

    def retry(self, id: str) -> None:
        """Make a stalled job ready again. Raises InvalidArgument if it is not stalled."""
        self._corral._run(self._kernel.retry, self.name, id, now=self._corral._clock())

    def retract(self, id: str) -> None:
        """Withdraw a job that has not ended, whatever its state."""
        self._corral._run(self._kernel.retract, self.name, id)

    def result(self, id: str, timeout: float | None = None) -> Any:
        """Job ``id``'s result, waiting up to ``timeout`` seconds for it to finish.
        Raises Empty on timeout, NotFound for a retracted or forgotten job."""
        return wait_value(self._corral._wait(self._kernel.result, self.name, id,
                                             timeout=timeout))

    def state(self, id: str) -> JobState:
        """Job ``id``'s state. Raises NotFound once it is forgotten."""
        result: JobState = self._corral._run(self._kernel.state, self.name, id)
        return result

    def statistics(self) -> JobStatistics:
        """Jobs per state, parked claimers (``waiters``) and result readers."""
        result: JobStatistics = self._corral._run(self._kernel.statistics, self.name)
        return result

    def ids(self) -> list[str]:
        """The ids of the jobs that have not ended."""
        result: list[str] = self._corral._run(self._kernel.ids, self.name)
        return result


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
             *, release_on_close: bool | None = None, result_ttl: float | None = None
             ) -> JobsHandle:
        """The job queue ``name``, created if needed.

        ``lease``: seconds a claim lasts unless touched (30). ``max_attempts``: failed
        claims after which a job stalls (None: no limit). ``release_on_close``: whether
        closing this corral releases its claims at once (True) or lets them run out.
        ``result_ttl``: seconds a result is kept (300). None keeps the existing
        container's setting, or the default; a different explicit value than the
        existing container's raises InvalidArgument.
        """
        self._run(self._kernel.create, name, Kind.JOBS, lease=lease,
                  max_attempts=max_attempts, release_on_close=release_on_close,
                  result_ttl=result_ttl)
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

    def _publish(self, subscription: Subscription, event: Event) -> None:
        subscription._queue.put(event)

    def _end(self, subscription: Subscription, reason: str) -> None:
        subscription._end(reason)

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
