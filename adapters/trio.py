"""The trio facade: the thread facade's surface with async methods. ``Facade`` is the
surface, shared with the native trio client (``corral.adapters.client.open_client``);
``Corral`` is the embedded one. Its handles (``_trio_handles.py``) are generated from
the thread facade's.

trio runs one task at a time, so no lock is needed: each call is one kernel command and
the routing of its effects. Calls that complete at once are checkpoints as trio's own
are (cancellation is checked before the command, so a cancelled call has done nothing).
A call that must wait parks its task; cancelling it withdraws the waiter from the
kernel. One alarm task sleeps until the kernel's next deadline. ``len(handle)`` and
``queue.get_nowait()`` are sync, as trio's own ``_nowait`` calls, and embedded only.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import outcome
import trio

from corral.kernel import Closed, Empty, Event, Kind, Waiting
from corral.transports.alarm import Alarm
from corral.transports.journal import JournaledKernel

from ._facade import EffectRouter, journaled_kernel
from ._trio_handles import (
    FeedHandle,
    Job,
    JobsHandle,
    ListHandle,
    MapHandle,
    QueueHandle,
    SortedFeedHandle,
)

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

    def _put(self, event: Event) -> None:
        self._send.send_nowait(event)

    def _end(self, reason: str) -> None:
        self._ended = reason
        self._send.close()


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

    def _clock(self) -> float:
        raise NotImplementedError

    async def _subscribe(self, name: str, start: int | None) -> Subscription:
        raise NotImplementedError

    def _unsubscribe(self, subscription: Subscription) -> None:
        raise NotImplementedError

    def _len(self, name: str) -> int:
        raise TypeError("len() of a handle needs a round trip over a connection: "
                        "use await handle.count()")

    def _nowait(self, command: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one wait command with timeout 0, at once and with no checkpoint (as
        trio's own ``_nowait`` calls): its result, or its error."""
        raise TypeError("get_nowait() needs a round trip over a connection: "
                        "use await queue.get(timeout=0)")

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
        """The feed ``name``, created if needed, keeping at most ``max_length`` items.

        Raises WrongKind if it is not a feed, InvalidArgument if it exists with
        another max_length.
        """
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
                   result_ttl: float | None = None, backoff: float | None = None,
                   backoff_factor: float | None = None, backoff_max: float | None = None
                   ) -> JobsHandle:
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
        await self._run(self._kernel.create, name, Kind.JOBS, lease=lease,
                        max_attempts=max_attempts, release_on_close=release_on_close,
                        result_ttl=result_ttl, backoff=backoff,
                        backoff_factor=backoff_factor, backoff_max=backoff_max)
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

    def _clock(self) -> float:
        return trio.current_time() + self._offset

    def _len(self, name: str) -> int:
        self._check_open()
        count: int = self._kernel.count(name)
        return count

    def _nowait(self, command: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A wait command with timeout 0, run as ``_run`` runs a command but with no
        checkpoint: its result, or its error (Empty)."""
        self._check_open()
        kernel = self._kernel
        result = command(self._session, *args, timeout=0, now=self._clock(), **kwargs)
        assert type(result) is not Waiting
        if kernel.effects:
            self._dispatch()
        if kernel.timers.first is not None:
            self._alarm.rearm()
        return result

    def close(self) -> None:
        """Close: parked callers get Closed, subscriptions end. Idempotent."""
        if not self._closed:
            self._shut()
            self._alarm.stop()

    async def serve_status(self, host: str = "127.0.0.1", port: int = 0, *,
                           token: str | None = None, max_clients: int = 16,
                           interval: float = 1.0,
                           task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
                           ) -> None:
        """Serve this corral's live status page, ``/metrics`` and ``/healthz`` over
        HTTP until cancelled: ``url = await nursery.start(corral.serve_status)``.

        Loopback only unless ``token`` is given; with it, the page's actions (retry,
        retract, purge) are offered to requests that carry it. Needs ``corral[web]``.
        """
        from .web import serve_status

        await serve_status(self, host, port, token=token, max_clients=max_clients,
                           interval=interval, task_status=task_status)

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
            result = command(self._session, *args, timeout=timeout, now=self._clock(),
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
