"""The trio facade: the thread facade's surface with async methods.

trio runs one task at a time, so no lock is needed: each call is one kernel command and
the routing of its effects. Calls that complete at once are checkpoints as trio's own
are (cancellation is checked before the command, so a cancelled call has done nothing).
A call that must wait parks its task; cancelling it withdraws the waiter from the
kernel. One alarm task sleeps until the kernel's next deadline.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import outcome
import trio
from corral.kernel import Closed, ContainerStatistics, Empty, Event, Kind, Record, Waiting

from ._facade import EffectRouter

__all__ = ["Corral", "ListHandle", "MapHandle", "Subscription", "open_corral"]

_checkpoint_if_cancelled = trio.lowlevel.checkpoint_if_cancelled
_cancel_shielded_checkpoint = trio.lowlevel.cancel_shielded_checkpoint


class Subscription:
    """The events of one container, in order. ``async for`` it, or ``await get()``."""

    def __init__(self, corral: Corral, sid: int) -> None:
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
            self._corral._kernel.unsubscribe(self._corral._session, self._sid)
            del self._corral._subscriptions[self._sid]
            self._end("closed")
        await _cancel_shielded_checkpoint()

    def _end(self, reason: str) -> None:
        self._ended = reason
        self._send.close()


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
        self._corral._check_open()
        return self._kernel.count(self.name)

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
        subscription: Subscription = await self._corral._run(self._corral._subscribe,
                                                             self.name, start)
        return subscription


class ListHandle(_Handle):
    """A list: records by index; negative indexes count from the end."""

    _kind = Kind.LIST

    async def push_back(self, value: Any, metadata: Any = None) -> None:
        """Append; the oldest ``wait_pop_next`` caller, if any, receives it."""
        # The hand-off methods spell out what _run does: the call is a fifth of their cost.
        await _checkpoint_if_cancelled()
        corral = self._corral
        if corral._closed:
            corral._check_open()
        self._kernel.push_back(self.name, value, metadata)
        if self._kernel.effects:
            corral._dispatch()
        await _cancel_shielded_checkpoint()

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
        await _checkpoint_if_cancelled()
        corral = self._corral
        if corral._closed:
            corral._check_open()
        result = self._kernel.wait_pop_next(
            corral._session, self.name, timeout=timeout,
            now=trio.current_time() if timeout else 0.0)
        if type(result) is tuple:
            if self._kernel.effects:
                corral._dispatch()
            await _cancel_shielded_checkpoint()
            return result[0]
        assert type(result) is Waiting
        return (await corral._park(result.waiter, timeout)).value


class MapHandle(_Handle):
    """A map: records by string key, in key order."""

    _kind = Kind.MAP

    async def set(self, key: str, value: Any, metadata: Any = None) -> None:
        """Insert or replace ``key``; the oldest ``wait_pop_key(key)`` caller receives it."""
        await _checkpoint_if_cancelled()
        corral = self._corral
        if corral._closed:
            corral._check_open()
        self._kernel.set(self.name, key, value, metadata)
        if self._kernel.effects:
            corral._dispatch()
        await _cancel_shielded_checkpoint()

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
        await _checkpoint_if_cancelled()
        corral = self._corral
        if corral._closed:
            corral._check_open()
        result = self._kernel.wait_pop_key(
            corral._session, self.name, key, timeout=timeout,
            now=trio.current_time() if timeout else 0.0)
        if type(result) is tuple:
            if self._kernel.effects:
                corral._dispatch()
            await _cancel_shielded_checkpoint()
            return result[0]
        assert type(result) is Waiting
        return (await corral._park(result.waiter, timeout)).value


class Corral(EffectRouter[trio.lowlevel.Task, Subscription]):
    """An embedded corral for the tasks of one trio run; get one from ``open_corral()``."""

    def __init__(self) -> None:
        super().__init__()
        self._alarm_changed = trio.lowlevel.ParkingLot()

    async def list(self, name: str) -> ListHandle:
        """The list ``name``, created if needed. Raises WrongKind if it is not a list."""
        await self._run(self._kernel.create, name, Kind.LIST)
        return ListHandle(self, name)

    async def map(self, name: str) -> MapHandle:
        """The map ``name``, created if needed. Raises WrongKind if it is not a map."""
        await self._run(self._kernel.create, name, Kind.MAP)
        return MapHandle(self, name)

    async def delete_container(self, name: str) -> None:
        """Delete a container: its waiters get NotFound, its subscriptions end."""
        await self._run(self._kernel.delete_container, name)

    def close(self) -> None:
        """Close: parked callers get Closed, subscriptions end. Idempotent."""
        if not self._closed:
            self._shut()
            self._alarm_changed.unpark_all()

    # -- plumbing ---------------------------------------------------------------------

    async def _run(self, command: Callable[..., Any], *args: Any) -> Any:
        await _checkpoint_if_cancelled()
        if self._closed:
            self._check_open()
        result = command(*args)
        if self._kernel.effects:
            self._dispatch()
        await _cancel_shielded_checkpoint()
        return result

    async def _park(self, waiter: int, timeout: float | None) -> Event:
        """Park the calling task until ``waiter`` is served or cancelled; cancelling the
        task withdraws the waiter."""
        self._parked[waiter] = trio.lowlevel.current_task()
        if timeout is not None:
            self._alarm_changed.unpark_all()

        def abort(raise_cancel: Any) -> trio.lowlevel.Abort:
            # A served waiter has been rescheduled already, so it is still parked here.
            self._kernel.cancel_wait(self._session, waiter)
            del self._parked[waiter]
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

    def _subscribe(self, name: str, start: int | None) -> Subscription:
        sid = self._kernel.subscribe(self._session, name, start=start)
        subscription = self._subscriptions[sid] = Subscription(self, sid)
        return subscription

    async def _sound_alarms(self) -> None:
        while not self._closed:
            deadline = self._kernel.next_deadline()
            with trio.move_on_at(math.inf if deadline is None else deadline):
                await self._alarm_changed.park()
                continue
            self._kernel.advance(trio.current_time())
            self._dispatch()


@asynccontextmanager
async def open_corral() -> AsyncIterator[Corral]:
    """An embedded corral for this trio run, closed when the block exits."""
    corral = Corral()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(corral._sound_alarms)
        try:
            yield corral
        finally:
            corral.close()
            nursery.cancel_scope.cancel()
