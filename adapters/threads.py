"""The blocking, thread-safe facade over one embedded kernel.

Every call takes one lock around one kernel command and the routing of its effects; a
call that must wait parks its thread on a lock of its own, released by whoever serves
it. One alarm thread, started at the first timed wait, sleeps until the kernel's next
deadline. Nothing polls.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

import attrs
from corral.kernel import Closed, ContainerStatistics, Empty, Event, Kind, Record, Waiting

from ._facade import EffectRouter

__all__ = ["Corral", "ListHandle", "MapHandle", "Subscription"]


@attrs.define(eq=False)
class _Parked:
    """A thread parked in a wait: ``lock`` is released once ``event`` or ``error`` is set."""

    lock: threading.Lock = attrs.Factory(threading.Lock)
    event: Event | None = None
    error: BaseException | None = None


_END = object()  # queued on a subscription when it ends


class Subscription:
    """The events of one container, in order. Iterate it, or ``get()`` one at a time."""

    def __init__(self, corral: Corral, sid: int) -> None:
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
        with self._corral._lock:
            if self._ended is None:
                self._corral._kernel.unsubscribe(self._corral._session, self._sid)
                del self._corral._subscriptions[self._sid]
                self._end("closed")

    def _end(self, reason: str) -> None:
        self._ended = reason
        self._queue.put(_END)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Handle:
    """What lists and maps share: a name, properties, count, query, clear, subscribe."""

    _kind: Kind

    def __init__(self, corral: Corral, name: str) -> None:
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

    _kind = Kind.LIST

    def push_back(self, value: Any, metadata: Any = None) -> None:
        """Append; the oldest ``wait_pop_next`` caller, if any, receives it."""
        # The hand-off methods spell out what _run does: the call is a fifth of their cost.
        corral = self._corral
        with corral._lock:
            if corral._closed:
                corral._check_open()
            self._kernel.push_back(self.name, value, metadata)
            if self._kernel.effects:
                corral._dispatch()

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
        corral = self._corral
        with corral._lock:
            if corral._closed:
                corral._check_open()
            result = self._kernel.wait_pop_next(
                corral._session, self.name, timeout=timeout,
                now=corral._clock() if timeout else 0.0)
            if type(result) is tuple:
                if self._kernel.effects:
                    corral._dispatch()
                return result[0]
            assert type(result) is Waiting
            parked = corral._park(result.waiter, timeout)
        return corral._unpark(parked, result.waiter).value


class MapHandle(_Handle):
    """A map: records by string key, in key order."""

    _kind = Kind.MAP

    def set(self, key: str, value: Any, metadata: Any = None) -> None:
        """Insert or replace ``key``; the oldest ``wait_pop_key(key)`` caller receives it."""
        corral = self._corral
        with corral._lock:
            if corral._closed:
                corral._check_open()
            self._kernel.set(self.name, key, value, metadata)
            if self._kernel.effects:
                corral._dispatch()

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
        corral = self._corral
        with corral._lock:
            if corral._closed:
                corral._check_open()
            result = self._kernel.wait_pop_key(
                corral._session, self.name, key, timeout=timeout,
                now=corral._clock() if timeout else 0.0)
            if type(result) is tuple:
                if self._kernel.effects:
                    corral._dispatch()
                return result[0]
            assert type(result) is Waiting
            parked = corral._park(result.waiter, timeout)
        return corral._unpark(parked, result.waiter).value


class Corral(EffectRouter[_Parked, Subscription]):
    """An embedded corral for threads. Thread-safe; use it as a context manager.

    ``list(name)`` and ``map(name)`` create the container if needed and return a handle.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._alarm_changed = threading.Condition(self._lock)
        self._alarm: threading.Thread | None = None
        self._clock: Callable[[], float] = time.monotonic

    def __enter__(self) -> Corral:
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

    def delete_container(self, name: str) -> None:
        """Delete a container: its waiters get NotFound, its subscriptions end."""
        self._run(self._kernel.delete_container, name)

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

    # -- plumbing ---------------------------------------------------------------------

    def _run(self, command: Callable[..., Any], *args: Any) -> Any:
        with self._lock:
            if self._closed:
                self._check_open()
            result = command(*args)
            if self._kernel.effects:
                self._dispatch()
            return result

    def _park(self, waiter: int, timeout: float | None) -> _Parked:
        """Prepare to park the calling thread for ``waiter`` (lock held)."""
        parked = self._parked[waiter] = _Parked()
        parked.lock.acquire()
        if timeout is not None:
            self._arm()
        return parked

    def _unpark(self, parked: _Parked, waiter: int) -> Event:
        """Park the calling thread until ``waiter`` is served or cancelled (lock free)."""
        try:
            parked.lock.acquire()
        except BaseException:  # a KeyboardInterrupt while parked: withdraw, lose nothing
            with self._lock:
                if not self._closed and not self._kernel.cancel_wait(self._session, waiter):
                    if parked.event is not None:
                        self._give_back(parked.event)
                else:
                    self._parked.pop(waiter, None)
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

    def _arm(self) -> None:
        """Make the alarm thread look at the kernel's next deadline (lock held)."""
        if self._alarm is None:
            self._alarm = threading.Thread(target=self._sound_alarms, name="corral-alarm",
                                           daemon=True)
            self._alarm.start()
        else:
            self._alarm_changed.notify()

    def _sound_alarms(self) -> None:
        with self._lock:
            while not self._closed:
                deadline = self._kernel.next_deadline()
                if deadline is None:
                    self._alarm_changed.wait()
                    continue
                delay = deadline - self._clock()
                if delay > 0:
                    self._alarm_changed.wait(delay)
                    continue
                self._kernel.advance(self._clock())
                self._dispatch()
