"""Container kinds: the data, the operations on it, and the hand-off to waiters.

Every operation validates all its arguments before it mutates anything, so a command that
raises leaves the container as it was.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

import attrs

from ._core import Core, Subscription, check_timeout
from ._errors import AlreadyExists, Empty, InvalidArgument, NotFound, WrongKind
from ._model import ContainerMetrics, ContainerStatistics, Event, Kind, Popped, Record, Waiting
from ._sorted import SortedIndex
from ._waiters import Waiter, WaiterQueue

__all__ = ["Container", "ListContainer", "MapContainer", "check_int"]

Item = tuple[Any, Any]  # (value, metadata)


def check_int(op: str, name: str, what: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{op} on {name!r}: {what} must be an int, not {value!r}")
    return value


@attrs.define(eq=False)
class Container:
    """What every kind has: a name, string properties and subscribers."""

    name: str
    core: Core
    properties: dict[str, str] = attrs.Factory(dict)
    subscribers: dict[int, Subscription] = attrs.Factory(dict)
    added: int = 0  # records or items that came in (ContainerMetrics)
    taken: int = 0  # records or items that went out (popped, deleted...), less give-backs

    kind: Kind = attrs.field(init=False)

    def waiter_queues(self) -> Iterator[WaiterQueue]:
        """Every waiter queue of this container (for cancelling and checking)."""
        return iter(())

    def remove_waiter(self, waiter: Waiter) -> None:
        """Take a waiter out of its queue (its other index entries are the core's)."""
        raise NotImplementedError

    def fire(self, payload: Any) -> None:
        """A timer of this container is due: by default, a waiter timed out."""
        self.remove_waiter(payload)
        self.core.cancel(payload, self.core.timed_out(payload))

    def count(self) -> int:
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        """The container's configuration, as ``create`` takes it."""
        return {}

    def statistics(self) -> ContainerStatistics:
        return ContainerStatistics(
            kind=self.kind, records=self.count(),
            waiters=sum(len(queue) for queue in self.waiter_queues()),
            subscribers=len(self.subscribers))

    def metrics(self) -> ContainerMetrics:
        return ContainerMetrics(kind=self.kind, added=self.added, taken=self.taken)

    def configure(self, options: dict[str, Any]) -> None:
        """Set the configuration of a new container (``options`` are validated)."""

    def unsupported(self, op: str) -> WrongKind:
        return WrongKind(f"{op} on {self.name!r}: a {self.kind.value} has no {op}")

    # Generic record operations; each kind implements those it has.

    def get(self, key: Any) -> Record:
        raise self.unsupported("get")

    def set(self, key: Any, value: Any, metadata: Any) -> None:
        raise self.unsupported("set")

    def insert(self, key: Any, value: Any, metadata: Any) -> None:
        raise self.unsupported("insert")

    def delete(self, key: Any) -> None:
        raise self.unsupported("delete")

    def query(self, start: Any, end: Any) -> list[Record]:
        raise self.unsupported("query")

    def clear(self) -> None:
        raise self.unsupported("clear")

    def retract(self, id: Any) -> None:
        raise self.unsupported("retract")

    def ids(self) -> list[Any]:
        raise self.unsupported("ids")

    def items(self) -> list[tuple[Any, Any]]:
        raise self.unsupported("items")

    def give_back(self, session: int, delivery: Event, now: float) -> None:
        """Undo ``delivery``, a hand-off of this container's to ``session`` (the kernel
        has checked that its name is this kind's): put back what it took, silently,
        serving the oldest waiter if one is parked for it."""
        raise WrongKind(f"give_back on {self.name!r}: a {self.kind.value} makes no "
                        f"{delivery.name} deliveries")

    def close_session(self, session: int) -> None:
        """A session closed: release what it holds here (its waiters are gone already)."""

    def discard(self) -> None:
        """The container is being deleted: disarm its own timers, release its leases."""

    def check_timer(self, payload: Any) -> None:
        """Assert that a timer this container armed is still meant."""
        assert payload.id in self.core.waiters, f"{self.name}: timer of a gone waiter"

    def snapshot(self, start: int, end: int | None = None) -> list[tuple[str, Record]]:
        """The events a subscription starting at position ``start`` is sent first (up
        to ``end``, for ``Kernel.peek``)."""
        raise NotImplementedError

    def check(self) -> None:
        """Assert this container's own invariants."""


@attrs.define(eq=False)
class ListContainer(Container):
    """An ordered list of records; the key is the index. Waiters pop the front.

    Values and metadata sit in two parallel deques rather than one deque of pairs: a
    backlog of pairs is a backlog of garbage-collected tuples, and a producer that runs
    ahead of its consumers then pays for collections that traverse all of them.
    """

    values: deque[Any] = attrs.Factory(deque)
    metadata: deque[Any] = attrs.Factory(deque)
    waiters: WaiterQueue = attrs.Factory(WaiterQueue)
    kind: Kind = attrs.field(init=False, default=Kind.LIST)

    def _index(self, op: str, index: Any, *, end_ok: bool = False) -> int:
        """Normalise ``index`` (negative counts from the end) or raise NotFound."""
        n = len(self.values)
        i = check_int(op, self.name, "index", index)
        if i < 0:
            i += n
        if not 0 <= i < n + end_ok:
            raise NotFound(f"{op} on {self.name!r}: index {index} is out of range "
                           f"for {n} records")
        return i

    def _take(self) -> Event:
        """Pop the front record for a waiter (subscribers see pop_front)."""
        self.taken += 1
        value = self.values.popleft()
        metadata = self.metadata.popleft()
        if self.subscribers:
            self.core.notify(self, "pop_front", 0, value, metadata)
        return Event(self.name, "wnp_next", 0, value, metadata)

    def _feed(self) -> None:
        """Serve waiters while there are records: a list with waiters is always empty."""
        waiters, values = self.waiters, self.values
        while waiters and values:
            self.core.serve(waiters.popleft(), self._take())

    def push_back(self, value: Any, metadata: Any) -> None:
        self.added += 1
        values = self.values
        values.append(value)
        self.metadata.append(metadata)
        if self.subscribers:
            self.core.notify(self, "push_back", len(values) - 1, value, metadata)
        if self.waiters:
            self._feed()

    def push_front(self, value: Any, metadata: Any) -> None:
        self.added += 1
        self.values.appendleft(value)
        self.metadata.appendleft(metadata)
        if self.subscribers:
            self.core.notify(self, "push_front", 0, value, metadata)
        if self.waiters:
            self._feed()

    def _pop(self, op: str) -> Record:
        values = self.values
        if not values:
            raise Empty(f"{op} on {self.name!r}: the list is empty")
        if op == "pop_front":
            key = 0
            value, metadata = values.popleft(), self.metadata.popleft()
        else:
            value, metadata = values.pop(), self.metadata.pop()
            key = len(values)
        self.taken += 1
        if self.subscribers:
            self.core.notify(self, op, key, value, metadata)
        return Record(key, value, metadata)

    def pop_front(self) -> Record:
        return self._pop("pop_front")

    def pop_back(self) -> Record:
        return self._pop("pop_back")

    def get(self, index: Any) -> Record:
        i = self._index("get", index)
        return Record(i, self.values[i], self.metadata[i])

    def set(self, index: Any, value: Any, metadata: Any) -> None:
        i = self._index("set", index)
        self.values[i] = value
        self.metadata[i] = metadata
        if self.subscribers:
            self.core.notify(self, "set", i, value, metadata)

    def insert(self, index: Any, value: Any, metadata: Any) -> None:
        i = self._index("insert", index, end_ok=True)
        self.added += 1
        self.values.insert(i, value)
        self.metadata.insert(i, metadata)
        if self.subscribers:
            self.core.notify(self, "insert", i, value, metadata)
        if self.waiters:
            self._feed()

    def delete(self, index: Any) -> None:
        i = self._index("delete", index)
        value, metadata = self.values[i], self.metadata[i]
        del self.values[i], self.metadata[i]
        self.taken += 1
        if self.subscribers:
            self.core.notify(self, "delete", i, value, metadata)

    def count(self) -> int:
        return len(self.values)

    def query(self, start: Any, end: Any) -> list[Record]:
        check_int("query", self.name, "start", start)
        if end is not None:
            check_int("query", self.name, "end", end)
        first, stop, _ = slice(start, end).indices(len(self.values))
        values, metadata = self.values, self.metadata
        return [Record(i, values[i], metadata[i]) for i in range(first, stop)]

    def clear(self) -> None:
        self.taken += len(self.values)
        self.values.clear()
        self.metadata.clear()
        if self.subscribers:
            self.core.notify(self, "clear")

    def wait_pop_next(self, session: int, timeout: float | None, now: float
                      ) -> Popped | Waiting:
        if timeout is not None:
            check_timeout("wait_pop_next", self.name, timeout)
        if session not in self.core.sessions:
            self.core.session(session)  # raises NotFound
        values = self.values
        if values:  # a list with records has no waiters: nobody is ahead of us
            self.taken += 1
            value = values.popleft()
            metadata = self.metadata.popleft()
            if self.subscribers:
                self.core.notify(self, "pop_front", 0, value, metadata)
            return (value, metadata)
        if timeout == 0:
            raise Empty(f"wait_pop_next on {self.name!r}: the list is empty")
        return self.core.park(self.waiters, session, "wait_pop_next", self.name, None,
                              timeout, now)

    def give_back(self, session: int, delivery: Event, now: float) -> None:
        """Undo a ``wnp_next`` hand-off: the record goes back to the front, unseen by
        subscribers (they saw it leave once, and it leaves once: now or later)."""
        key = delivery.key
        if not (key is None or (type(key) is int and key == 0)):
            raise InvalidArgument(f"give_back on {self.name!r}: a wnp_next delivery has "
                                  f"key 0, not {key!r}")
        value, metadata = delivery.value, delivery.metadata
        if self.waiters:  # so the list is empty: the record is the one to hand over
            self.core.serve(self.waiters.popleft(),
                            Event(self.name, "wnp_next", 0, value, metadata))
            return
        self.taken -= 1
        self.values.appendleft(value)
        self.metadata.appendleft(metadata)

    def remove_waiter(self, waiter: Waiter) -> None:
        self.waiters.remove(waiter)

    def waiter_queues(self) -> Iterator[WaiterQueue]:
        yield self.waiters

    def snapshot(self, start: int, end: int | None = None) -> list[tuple[str, Record]]:
        return [("push_back", record) for record in self.query(start, end)]

    def check(self) -> None:
        assert len(self.values) == len(self.metadata), f"{self.name}: deques differ"
        assert not (self.waiters and self.values), f"{self.name}: waiters beside records"
        for waiter in self.waiters.values():
            assert waiter.op == "wait_pop_next" and waiter.key is None


def _check_key(op: str, name: str, key: Any) -> str:
    if not isinstance(key, str):
        raise InvalidArgument(f"{op} on {name!r}: a map key must be a str, not {key!r}")
    return key


@attrs.define(eq=False)
class MapContainer(Container):
    """Records by string key, kept in key order. Waiters pop one key."""

    records: SortedIndex[str, Item] = attrs.Factory(SortedIndex)
    waiters: dict[str, WaiterQueue] = attrs.Factory(dict)
    kind: Kind = attrs.field(init=False, default=Kind.MAP)

    def _store(self, op: str, key: str, value: Any, metadata: Any) -> None:
        records = self.records
        if key not in records:
            self.added += 1
        records[key] = (value, metadata)
        if self.subscribers:
            self.core.notify(self, op, key, value, metadata)
        queue = self.waiters.get(key)
        if queue:
            waiter = queue.popleft()
            if not queue:
                del self.waiters[key]
            self.core.serve(waiter, self._take(key))

    def _take(self, key: str) -> Event:
        """Pop ``key`` for a waiter (subscribers see delete)."""
        self.taken += 1
        value, metadata = self.records.pop(key)
        if self.subscribers:
            self.core.notify(self, "delete", key, value, metadata)
        return Event(self.name, "wnp_key", key, value, metadata)

    def set(self, key: Any, value: Any, metadata: Any) -> None:
        self._store("set", _check_key("set", self.name, key), value, metadata)

    def insert(self, key: Any, value: Any, metadata: Any) -> None:
        _check_key("insert", self.name, key)
        if key in self.records:
            raise AlreadyExists(f"insert on {self.name!r}: key {key!r} is present")
        self._store("insert", key, value, metadata)

    def get(self, key: Any) -> Record:
        """The record at ``key``; an int is a position in key order (as Tio's get)."""
        if isinstance(key, int) and not isinstance(key, bool):
            n = len(self.records)
            i = key + n if key < 0 else key
            if not 0 <= i < n:
                raise NotFound(f"get on {self.name!r}: position {key} is out of range "
                               f"for {n} records")
            key = self.records.key_at(i)
        _check_key("get", self.name, key)
        try:
            value, metadata = self.records[key]
        except KeyError:
            raise NotFound(f"get on {self.name!r}: no key {key!r}") from None
        return Record(key, value, metadata)

    def delete(self, key: Any) -> None:
        _check_key("delete", self.name, key)
        try:
            value, metadata = self.records.pop(key)
        except KeyError:
            raise NotFound(f"delete on {self.name!r}: no key {key!r}") from None
        self.taken += 1
        if self.subscribers:
            self.core.notify(self, "delete", key, value, metadata)

    def keys(self) -> list[str]:
        return list(self.records)

    def count(self) -> int:
        return len(self.records)

    def query(self, start: Any, end: Any) -> list[Record]:
        check_int("query", self.name, "start", start)
        if end is not None:
            check_int("query", self.name, "end", end)
        return [Record(key=k, value=v, metadata=m) for k, (v, m) in self.records.items(start, end)]

    def clear(self) -> None:
        self.taken += len(self.records)
        self.records.clear()
        if self.subscribers:
            self.core.notify(self, "clear")

    def wait_pop_key(self, session: int, key: Any, timeout: float | None, now: float
                     ) -> Popped | Waiting:
        _check_key("wait_pop_key", self.name, key)
        check_timeout("wait_pop_key", self.name, timeout)
        self.core.session(session)
        if key in self.records:  # a present key has no waiters: nobody is ahead of us
            self.taken += 1
            value, metadata = self.records.pop(key)
            if self.subscribers:
                self.core.notify(self, "delete", key, value, metadata)
            return (value, metadata)
        if timeout == 0:
            raise Empty(f"wait_pop_key on {self.name!r}: no key {key!r}")
        queue = self.waiters.get(key)
        if queue is None:
            queue = self.waiters[key] = WaiterQueue()
        try:
            return self.core.park(queue, session, "wait_pop_key", self.name, key, timeout,
                                  now)
        finally:
            if not queue:  # parking failed (unknown session): leave no empty queue behind
                del self.waiters[key]

    def give_back(self, session: int, delivery: Event, now: float) -> None:
        """Undo a ``wnp_key`` hand-off: the key comes back only if it is still absent
        (a newer value is never overwritten), unseen by subscribers."""
        key = _check_key("give_back", self.name, delivery.key)
        if key in self.records:
            return
        value, metadata = delivery.value, delivery.metadata
        queue = self.waiters.get(key)
        if queue:  # the key is absent and waited for: the oldest waiter has it
            waiter = queue.popleft()
            if not queue:
                del self.waiters[key]
            self.core.serve(waiter, Event(self.name, "wnp_key", key, value, metadata))
            return
        self.taken -= 1
        self.records[key] = (value, metadata)

    def remove_waiter(self, waiter: Waiter) -> None:
        queue = self.waiters[waiter.key]
        queue.remove(waiter)
        if not queue:
            del self.waiters[waiter.key]

    def waiter_queues(self) -> Iterator[WaiterQueue]:
        return iter(list(self.waiters.values()))

    def snapshot(self, start: int, end: int | None = None) -> list[tuple[str, Record]]:
        return [("set", record) for record in self.query(start, end)]

    def check(self) -> None:
        for key, queue in self.waiters.items():
            assert queue, f"{self.name}: empty waiter queue for {key!r} kept"
            assert key not in self.records, f"{self.name}: waiters on present key {key!r}"
            for waiter in queue.values():
                assert waiter.op == "wait_pop_key" and waiter.key == key
