"""The trio facade: the thread facade's surface with async methods. ``Facade`` is the
surface, shared with the native trio client (``corral.adapters.client.open_client``);
``Corral`` is the embedded one.

trio runs one task at a time, so no lock is needed: each call is one kernel command and
the routing of its effects. Calls that complete at once are checkpoints as trio's own
are (cancellation is checked before the command, so a cancelled call has done nothing).
A call that must wait parks its task; cancelling it withdraws the waiter from the
kernel. One alarm task sleeps until the kernel's next deadline.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import outcome
import trio

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
from corral.transports.alarm import Alarm
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
    "open_corral",
]

_checkpoint_if_cancelled = trio.lowlevel.checkpoint_if_cancelled
_cancel_shielded_checkpoint = trio.lowlevel.cancel_shielded_checkpoint


class Subscription:
    """The events of one container, in order. ``async for`` it, or ``await get()``."""

    def __init__(self, corral: Facade, sid: int) -> None:
        self._corral = corral
        self._sid = sid
        self._send, self._receive = trio.open_memory_channel[Event](math.inf)
        self._ended: str | None = None

    async def get(self, timeout: float | None = None) -> Event:
        """The next event; waits up to ``timeout`` seconds (None: forever).

        Raises Empty on timeout and Closed once the subscription has ended and its
        buffered events are consumed.
        """
        with trio.move_on_after(math.inf if timeout is None else timeout):
            try:
                return await self._receive.receive()
            except trio.EndOfChannel:
                raise Closed(f"subscription ended: {self._ended}") from None
        raise Empty(f"no event within {timeout} s")

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self.get()
        except Closed:
            raise StopAsyncIteration from None

    async def close(self) -> None:
        """Stop receiving events; buffered ones can still be read. Idempotent."""
        await _checkpoint_if_cancelled()
        if self._ended is None:
            self._corral._unsubscribe(self)
        await _cancel_shielded_checkpoint()

    def _end(self, reason: str) -> None:
        self._ended = reason
        self._send.close()


class _Handle:
    """What lists and maps share: a name, properties, count, query, clear, subscribe."""

    def __init__(self, corral: Facade, name: str) -> None:
        self._corral = corral
        self._kernel = corral._kernel
        self.name = name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    def __len__(self) -> int:
        """How many records it holds, embedded (a connection needs ``await count()``)."""
        return self._corral._len(self.name)

    async def statistics(self) -> ContainerStatistics:
        """A snapshot: kind and how many records, waiters and subscribers it has."""
        result: ContainerStatistics = await self._corral._run(self._kernel.statistics,
                                                              self.name)
        return result

    async def count(self) -> int:
        """How many records it holds."""
        result: int = await self._corral._run(self._kernel.count, self.name)
        return result

    async def query(self, start: int = 0, end: int | None = None) -> list[Record]:
        """The records at positions ``[start:end]`` (slice rules), with key and metadata."""
        result: list[Record] = await self._corral._run(self._kernel.query, self.name,
                                                       start, end)
        return result

    async def clear(self) -> None:
        """Remove every record."""
        await self._corral._run(self._kernel.clear, self.name)

    async def delete(self, key: Any) -> None:
        """Remove the record at ``key``. Raises NotFound."""
        await self._corral._run(self._kernel.delete, self.name, key)

    async def set_property(self, key: str, value: str) -> None:
        """Set a string property."""
        await self._corral._run(self._kernel.set_property, self.name, key, value)

    async def get_property(self, key: str) -> str:
        """A string property. Raises NotFound if it is not set."""
        result: str = await self._corral._run(self._kernel.get_property, self.name, key)
        return result

    async def subscribe(self, start: int | None = None) -> Subscription:
        """Receive this container's events from now on.

        With ``start`` (a position; 0 for everything), the records from there on come
        first, as push_back events (lists) or set events (maps).
        """
        return await self._corral._subscribe(self.name, start)


class ListHandle(_Handle):
    """A list: records by index; negative indexes count from the end."""

    async def push_back(self, value: Any, metadata: Any = None) -> None:
        """Append; the oldest ``wait_pop_next`` caller, if any, receives it."""
        await self._corral._run(self._kernel.push_back, self.name, value, metadata)

    async def push_front(self, value: Any, metadata: Any = None) -> None:
        """Prepend; the oldest ``wait_pop_next`` caller, if any, receives it."""
        await self._corral._run(self._kernel.push_front, self.name, value, metadata)

    async def pop_front(self) -> Any:
        """Remove and return the first value. Raises Empty."""
        record: Record = await self._corral._run(self._kernel.pop_front, self.name)
        return record.value

    async def pop_back(self) -> Any:
        """Remove and return the last value. Raises Empty."""
        record: Record = await self._corral._run(self._kernel.pop_back, self.name)
        return record.value

    async def get(self, index: int) -> Any:
        """The value at ``index``. Raises NotFound."""
        record: Record = await self._corral._run(self._kernel.get, self.name, index)
        return record.value

    async def set(self, index: int, value: Any, metadata: Any = None) -> None:
        """Replace the record at ``index``. Raises NotFound."""
        await self._corral._run(self._kernel.set, self.name, index, value, metadata)

    async def insert(self, index: int, value: Any, metadata: Any = None) -> None:
        """Insert before ``index`` (``len`` appends). Raises NotFound."""
        await self._corral._run(self._kernel.insert, self.name, index, value, metadata)

    async def wait_pop_next(self, timeout: float | None = None) -> Any:
        """Pop the first value, waiting for one if the list is empty.

        Callers are served first come, first served. Raises Empty after ``timeout``
        seconds (None waits forever), Closed if the corral closes meanwhile. Cancelling
        the call withdraws it without losing an item.
        """
        return wait_value(await self._corral._wait(self._kernel.wait_pop_next, self.name,
                                                   timeout=timeout))


class MapHandle(_Handle):
    """A map: records by string key, in key order."""

    async def set(self, key: str, value: Any, metadata: Any = None) -> None:
        """Insert or replace ``key``; the oldest ``wait_pop_key(key)`` caller receives it."""
        await self._corral._run(self._kernel.set, self.name, key, value, metadata)

    async def insert(self, key: str, value: Any, metadata: Any = None) -> None:
        """Add ``key``. Raises AlreadyExists if it is present."""
        await self._corral._run(self._kernel.insert, self.name, key, value, metadata)

    async def get(self, key: str) -> Any:
        """The value at ``key``. Raises NotFound."""
        record: Record = await self._corral._run(self._kernel.get, self.name, key)
        return record.value

    async def keys(self) -> list[str]:
        """Every key, in order."""
        result: list[str] = await self._corral._run(self._kernel.keys, self.name)
        return result

    async def wait_pop_key(self, key: str, timeout: float | None = None) -> Any:
        """Pop ``key``'s value, waiting until it is set if it is absent.

        As :meth:`ListHandle.wait_pop_next`, with callers queued per key.
        """
        return wait_value(await self._corral._wait(self._kernel.wait_pop_key, self.name,
                                                   key, timeout=timeout))


class _ByIdHandle(_Handle):
    """What feeds and sorted feeds share: items by id."""

    async def get(self, id: Any) -> Any:
        """The item ``id``. Raises NotFound."""
        record: Record = await self._corral._run(self._kernel.get, self.name, id)
        return record.value

    async def retract(self, id: Any) -> None:
        """Remove item ``id``. Raises NotFound."""
        await self._corral._run(self._kernel.retract, self.name, id)

    async def ids(self) -> list[Any]:
        """Every id, in order."""
        result: list[Any] = await self._corral._run(self._kernel.ids, self.name)
        return result

    async def items(self) -> list[tuple[Any, Any]]:
        """Every ``(id, item)``, in order."""
        result: list[tuple[Any, Any]] = await self._corral._run(self._kernel.items,
                                                                self.name)
        return result


class FeedHandle(_ByIdHandle):
    """A feed: items by string id, oldest first; events publish, edit, retract."""

    async def publish(self, item: Any, id: str | None = None) -> str:
        """Publish ``item``; returns its id (see the thread facade)."""
        result: str = await self._corral._run(self._kernel.publish, self.name, item, id)
        return result


class SortedFeedHandle(_ByIdHandle):
    """A sorted feed: items by int id in an order set by hand."""

    async def append(self, item: Any) -> int:
        """Add ``item`` last; returns its id."""
        result: int = await self._corral._run(self._kernel.append, self.name, item)
        return result

    async def prepend(self, item: Any) -> int:
        """Add ``item`` first; returns its id."""
        result: int = await self._corral._run(self._kernel.prepend, self.name, item)
        return result

    async def insert_before(self, rel_id: int, item: Any) -> int:
        """Add ``item`` just before ``rel_id``; returns its id."""
        result: int = await self._corral._run(self._kernel.insert_before, self.name,
                                              rel_id, item)
        return result

    async def insert_after(self, rel_id: int, item: Any) -> int:
        """Add ``item`` just after ``rel_id``; returns its id."""
        result: int = await self._corral._run(self._kernel.insert_after, self.name,
                                              rel_id, item)
        return result

    async def edit(self, id: int, item: Any) -> None:
        """Replace item ``id`` in place."""
        await self._corral._run(self._kernel.edit, self.name, id, item)

    async def move_before(self, rel_id: int, id: int) -> None:
        """Move ``id`` just before ``rel_id``."""
        await self._corral._run(self._kernel.move_before, self.name, rel_id, id)

    async def move_after(self, rel_id: int, id: int) -> None:
        """Move ``id`` just after ``rel_id``."""
        await self._corral._run(self._kernel.move_after, self.name, rel_id, id)

    async def move_first(self, id: int) -> None:
        """Move ``id`` to the start."""
        await self._corral._run(self._kernel.move_first, self.name, id)

    async def move_last(self, id: int) -> None:
        """Move ``id`` to the end."""
        await self._corral._run(self._kernel.move_last, self.name, id)


class QueueHandle(_Handle):
    """A queue: each item taken once, highest priority first, FIFO within a priority."""

    async def put(self, item: Any, priority: int = 0, timeout: float | None = 0.0) -> None:
        """Add ``item``; a full bounded queue raises LimitExceeded, at once (timeout 0)
        or after waiting ``timeout`` seconds for room (None: as long as it takes)."""
        await self._corral._wait(self._kernel.queue_put, self.name, item, priority=priority,
                                 timeout=timeout)

    async def get(self, timeout: float | None = None) -> Any:
        """Take the next item, waiting up to ``timeout`` seconds. Raises Empty."""
        return wait_value(await self._corral._wait(self._kernel.queue_get, self.name,
                                               timeout=timeout))

    async def get_nowait(self) -> Any:
        """Take the next item. Raises Empty if there is none."""
        return await self.get(timeout=0)


@attrs.frozen
class Job(kernel.Job):
    """A claimed job: ``id``, ``item``, ``attempt``, and the calls that end or extend
    its claim."""

    _jobs: JobsHandle = attrs.field(eq=False, repr=False)

    async def finish(self, result: Any = None, result_ttl: float | None = None) -> None:
        """Finish with ``result``. Raises LeaseLost if this claim is no longer current."""
        await self._jobs.finish(self, result, result_ttl)

    async def cancel(self, delay: float = 0.0, reason: str | None = None) -> None:
        """Give the job back (ready again after ``delay``). Raises LeaseLost if stale."""
        await self._jobs.cancel(self, delay, reason)

    async def stall(self, reason: str | None = None) -> None:
        """Park the job until retried. Raises LeaseLost if stale."""
        await self._jobs.stall(self, reason)

    async def touch(self, lease: float | None = None) -> None:
        """Extend the claim by ``lease`` seconds from now. Raises LeaseLost if stale."""
        await self._jobs.touch(self, lease)


class JobsHandle(_Handle):
    """A job queue: jobs claimed under a lease until finished, exactly once."""

    async def put(self, item: Any, priority: int = 0, delay: float = 0.0,
                  id: str | None = None) -> str:
        """Add a job (ready after ``delay`` seconds); returns its id."""
        result: str = await self._corral._run(self._kernel.put, self.name, item,
                                              priority=priority, delay=delay, id=id,
                                              now=self._corral._now())
        return result

    async def claim(self, timeout: float | None = None, lease: float | None = None) -> Job:
        """Claim the next job, waiting up to ``timeout`` seconds, under a lease of
        ``lease`` seconds. Raises Empty. Cancelling the call withdraws the claim."""
        got = await self._corral._wait(self._kernel.claim, self.name, timeout=timeout,
                                       lease=lease)
        job = got.value if type(got) is Event else got
        return Job(job.id, job.item, job.attempt, self)

    async def finish(self, job: kernel.Job, result: Any = None,
                     result_ttl: float | None = None) -> None:
        """Finish a claimed job with ``result``. Raises LeaseLost if the claim is stale."""
        await self._corral._run(self._kernel.finish, self.name, job, result,
                                result_ttl=result_ttl, now=self._corral._now())

    async def cancel(self, job: kernel.Job, delay: float = 0.0, reason: str | None = None
                     ) -> None:
        """Give a claimed job back; it stalls once max_attempts claims have failed."""
        await self._corral._run(self._kernel.cancel, self.name, job, delay=delay,
                                reason=reason, now=self._corral._now())

    async def stall(self, job: kernel.Job, reason: str | None = None) -> None:
        """Park a claimed job until it is retried."""
        await self._corral._run(self._kernel.stall, self.name, job, reason)

    async def touch(self, job: kernel.Job, lease: float | None = None) -> None:
        """Extend a claim to ``lease`` seconds from now."""
        await self._corral._run(self._kernel.touch, self.name, job, lease=lease,
                                now=self._corral._now())

    async def retry(self, id: str) -> None:
        """Make a stalled job ready again."""
        await self._corral._run(self._kernel.retry, self.name, id, now=self._corral._now())

    async def retract(self, id: str) -> None:
        """Withdraw a job that has not ended."""
        await self._corral._run(self._kernel.retract, self.name, id)

    async def result(self, id: str, timeout: float | None = None) -> Any:
        """Job ``id``'s result, waiting up to ``timeout`` seconds for it to finish."""
        return wait_value(await self._corral._wait(self._kernel.result, self.name, id,
                                               timeout=timeout))

    async def state(self, id: str) -> JobState:
        """Job ``id``'s state. Raises NotFound once it is forgotten."""
        result: JobState = await self._corral._run(self._kernel.state, self.name, id)
        return result

    async def statistics(self) -> JobStatistics:
        """Jobs per state, parked claimers (``waiters``) and result readers."""
        result: JobStatistics = await self._corral._run(self._kernel.statistics, self.name)
        return result

    async def ids(self) -> list[str]:
        """The ids of the jobs that have not ended."""
        result: list[str] = await self._corral._run(self._kernel.ids, self.name)
        return result


class Facade:
    """The trio facade's surface: what an embedded ``Corral`` and a connected client
    (``corral.adapters.client.open_client``) share. Use it from the trio run it was
    made in."""

    _kernel: Any  # whose methods name the commands the handles run
    _closed: bool

    @property
    def closed(self) -> bool:
        """Whether it is closed (over a connection: by ``close()``, or for good after
        the connection was lost with no reconnecting)."""
        return self._closed

    async def _run(self, command: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one command as a checkpoint; return its result or raise its error."""
        raise NotImplementedError

    async def _wait(self, command: Callable[..., Any], *args: Any, timeout: float | None,
                    **kwargs: Any) -> Any:
        """Run one wait command: its immediate result, or what served it."""
        raise NotImplementedError

    def _now(self) -> float:
        raise NotImplementedError

    async def _subscribe(self, name: str, start: int | None) -> Subscription:
        raise NotImplementedError

    def _unsubscribe(self, subscription: Subscription) -> None:
        raise NotImplementedError

    def _len(self, name: str) -> int:
        raise TypeError("len() of a handle needs a round trip over a connection: "
                        "use await handle.count()")

    def close(self) -> None:
        """Close: parked callers get Closed, subscriptions end. Idempotent."""
        raise NotImplementedError

    async def list(self, name: str) -> ListHandle:
        """The list ``name``, created if needed. Raises WrongKind if it is not a list."""
        await self._run(self._kernel.create, name, Kind.LIST)
        return ListHandle(self, name)

    async def map(self, name: str) -> MapHandle:
        """The map ``name``, created if needed. Raises WrongKind if it is not a map."""
        await self._run(self._kernel.create, name, Kind.MAP)
        return MapHandle(self, name)

    async def feed(self, name: str, max_length: int | None = None) -> FeedHandle:
        """The feed ``name``, created if needed, keeping at most ``max_length`` items."""
        await self._run(self._kernel.create, name, Kind.FEED, max_length=max_length)
        return FeedHandle(self, name)

    async def sorted_feed(self, name: str) -> SortedFeedHandle:
        """The sorted feed ``name``, created if needed."""
        await self._run(self._kernel.create, name, Kind.SORTED_FEED)
        return SortedFeedHandle(self, name)

    async def queue(self, name: str, max_length: int | None = None) -> QueueHandle:
        """The queue ``name``, created if needed, holding at most ``max_length`` items."""
        await self._run(self._kernel.create, name, Kind.QUEUE, max_length=max_length)
        return QueueHandle(self, name)

    async def jobs(self, name: str, lease: float | None = None,
                   max_attempts: int | None = None, *, release_on_close: bool | None = None,
                   result_ttl: float | None = None) -> JobsHandle:
        """The job queue ``name``, created if needed (options as the thread facade's)."""
        await self._run(self._kernel.create, name, Kind.JOBS, lease=lease,
                        max_attempts=max_attempts, release_on_close=release_on_close,
                        result_ttl=result_ttl)
        return JobsHandle(self, name)

    async def delete_container(self, name: str) -> None:
        """Delete a container: its waiters get NotFound, its subscriptions end."""
        await self._run(self._kernel.delete_container, name)


class Corral(Facade, EffectRouter[trio.lowlevel.Task, Subscription]):
    """An embedded corral for the tasks of one trio run; get one from ``open_corral()``."""

    def __init__(self, *, kernel: Any = None) -> None:
        """An embedded corral, on ``kernel`` if given. Make it inside the trio run that
        will use it."""
        super().__init__(kernel)
        self._alarm = Alarm(self._kernel, self._dispatch)
        self._offset = 0.0  # the kernel's time minus trio's (the wall clock's, journaled)

    def _now(self) -> float:
        return trio.current_time() + self._offset

    def _len(self, name: str) -> int:
        self._check_open()
        count: int = self._kernel.count(name)
        return count

    def close(self) -> None:
        """Close: parked callers get Closed, subscriptions end. Idempotent."""
        if not self._closed:
            self._shut()
            self._alarm.stop()

    # -- plumbing ---------------------------------------------------------------------

    async def _run(self, command: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One kernel command as a checkpoint; route its effects; re-arm the alarm if
        the command armed an earlier deadline."""
        await _checkpoint_if_cancelled()
        kernel = self._kernel
        try:
            if self._closed:
                self._check_open()
            result = command(*args, **kwargs)
        except BaseException:
            await _cancel_shielded_checkpoint()  # a call that fails is a checkpoint too
            raise
        if kernel.effects:
            self._dispatch()
        if kernel.timers.first is not None:
            self._alarm.rearm()
        await _cancel_shielded_checkpoint()
        return result

    async def _wait(self, command: Callable[..., Any], *args: Any, timeout: float | None,
                    **kwargs: Any) -> Any:
        """A wait command for this session: its immediate result, or else (after
        parking) the Event that served it."""
        await _checkpoint_if_cancelled()
        try:
            if self._closed:
                self._check_open()
            result = command(self._session, *args, timeout=timeout, now=self._now(),
                             **kwargs)
        except BaseException:
            await _cancel_shielded_checkpoint()
            raise
        kernel = self._kernel
        if kernel.effects:
            self._dispatch()
        if type(result) is Waiting:
            return await self._park(result.waiter, timeout)
        if kernel.timers.first is not None:
            self._alarm.rearm()
        await _cancel_shielded_checkpoint()
        return result

    async def _park(self, waiter: int, timeout: float | None) -> Event:
        """Park the calling task until ``waiter`` is served or cancelled; cancelling the
        task withdraws the waiter (a served one has been rescheduled already, so it is
        never aborted)."""
        self._parked[waiter] = trio.lowlevel.current_task()
        if timeout is not None:
            self._alarm.rearm()

        def abort(raise_cancel: Any) -> trio.lowlevel.Abort:
            if not self._closed:
                self._kernel.cancel_wait(self._session, waiter)
            self._parked.pop(waiter, None)
            return trio.lowlevel.Abort.SUCCEEDED

        served: Event = await trio.lowlevel.wait_task_rescheduled(abort)
        return served

    def _wake(self, parked: trio.lowlevel.Task, event: Event | None,
              error: BaseException | None) -> None:
        trio.lowlevel.reschedule(
            parked, outcome.Value(event) if error is None else outcome.Error(error))

    def _publish(self, subscription: Subscription, event: Event) -> None:
        subscription._send.send_nowait(event)

    def _end(self, subscription: Subscription, reason: str) -> None:
        subscription._end(reason)

    async def _subscribe(self, name: str, start: int | None) -> Subscription:
        await _checkpoint_if_cancelled()
        try:
            self._check_open()
            sid = self._kernel.subscribe(self._session, name, start=start)
            subscription = self._subscriptions[sid] = Subscription(self, sid)
            self._dispatch()
        finally:
            await _cancel_shielded_checkpoint()
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        if subscription._ended is None:
            self._kernel.unsubscribe(self._session, subscription._sid)
            del self._subscriptions[subscription._sid]
            subscription._end("closed")


@asynccontextmanager
async def open_corral(*, kernel: Any = None,
                      journal: str | os.PathLike[str] | None = None,
                      fsync: str = "always") -> AsyncIterator[Corral]:
    """An embedded corral for this trio run, closed when the block exits.

    With ``journal`` (a directory) every container is durable: each command is in the
    journal (synced as ``fsync`` says, in this thread: with ``always`` each command
    waits for its fsync) before it returns.
    """
    offset = 0.0
    if journal is not None:
        offset = time.time() - trio.current_time()  # deadlines outlive the process
        kernel = journaled_kernel(journal, fsync, trio.current_time() + offset)
    corral = Corral(kernel=kernel)
    corral._offset = corral._alarm.offset = offset
    async with trio.open_nursery() as nursery:
        nursery.start_soon(corral._alarm.run)
        try:
            yield corral
        finally:
            corral.close()
            nursery.cancel_scope.cancel()
            if isinstance(corral._kernel, JournaledKernel):
                corral._kernel.journal.close()
