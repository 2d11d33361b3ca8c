"""Queues: each item is taken by exactly one getter, highest priority first, FIFO within
a priority. A bounded queue refuses a put when full, or parks the putter.

Every item has an order key, ``(priority, seq)``: its priority and the queue's count of
arrivals when it came in (or, handed straight to a parked getter, when it was handed
over). A getter is served the item with its order key as metadata, so that
``give_back`` can put the item back exactly where it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs

from ._containers import Container, check_int
from ._core import check_timeout
from ._errors import Empty, InvalidArgument, LimitExceeded
from ._feeds import check_max_length
from ._model import Event, Kind, Popped, Record, Waiting
from ._sorted import PriorityFifo
from ._waiters import Waiter, WaiterQueue

__all__ = ["QueueContainer"]


@attrs.define(eq=False)
class QueueContainer(Container):
    """Items ordered by ``(-priority, arrival)``.

    Invariants: getters wait only while the queue is empty, putters only while it is
    full; so a put serves the oldest getter and a get admits the oldest putter, inside the
    same command. Only ``give_back`` puts an item past ``max_length`` (it returns the
    item to where it was, whatever came in meanwhile): the queue is then full, and gets
    admit no putter until it is below max_length again.
    """

    entries: PriorityFifo[Any] = attrs.Factory(PriorityFifo)
    max_length: int | None = None
    arrivals: int = 0
    getters: WaiterQueue = attrs.Factory(WaiterQueue)
    putters: WaiterQueue = attrs.Factory(WaiterQueue)
    kind: Kind = attrs.field(init=False, default=Kind.QUEUE)

    def options(self) -> dict[str, Any]:
        return {"max_length": self.max_length}

    def configure(self, options: dict[str, Any]) -> None:
        self.max_length = check_max_length(self.name, options.get("max_length"))

    def _full(self) -> bool:
        return self.max_length is not None and len(self.entries) >= self.max_length

    def _add(self, item: Any, priority: int) -> None:
        self.added += 1
        if self.subscribers:
            self.core.notify(self, "put", priority, item)
        self.arrivals += 1
        if self.getters:  # so the queue is empty: hand the item straight over
            if self.subscribers:
                self.core.notify(self, "get", priority, item)
            self.taken += 1
            self.core.serve(self.getters.popleft(), Event(
                self.name, "get", priority, item, (priority, self.arrivals)))
            return
        self.entries[(-priority, self.arrivals)] = item

    def put(self, session: int, item: Any, priority: Any, timeout: float | None,
            now: float) -> Waiting | None:
        check_int("put", self.name, "priority", priority)
        check_timeout("put", self.name, timeout)
        self.core.session(session)
        if not self._full():
            self._add(item, priority)
            return None
        if timeout == 0:
            raise LimitExceeded(f"put on {self.name!r}: the queue is full "
                                f"({self.max_length} items)")
        return self.core.park(self.putters, session, "put", self.name, None, timeout, now,
                              payload=(item, priority))

    def get_next(self, session: int, timeout: float | None, now: float, receipt: bool
                 ) -> Popped | Waiting:
        """Take the first item now (``(item, None)``, or with ``receipt`` ``(item,
        (priority, seq))``) or park a getter."""
        check_timeout("get", self.name, timeout)
        self.core.session(session)
        if self.entries:
            (negative, seq), item = self.entries.pop_first()
            self.taken += 1
            if self.subscribers:
                self.core.notify(self, "get", -negative, item)
            if self.putters and not self._full():  # a slot opened: the oldest putter's
                putter = self.putters.popleft()    # item comes in
                item_in, priority = putter.payload
                self._add(item_in, priority)
                self.core.serve(putter, Event(self.name, "put", priority, item_in, None))
            return (item, (-negative, seq) if receipt else None)
        if timeout == 0:
            raise Empty(f"get on {self.name!r}: the queue is empty")
        return self.core.park(self.getters, session, "get", self.name, None, timeout, now)

    def give_back(self, session: int, delivery: Event, now: float) -> None:
        """Undo a ``get`` hand-off: the item goes back at its order key (the delivery's
        metadata), past max_length if need be, unseen by subscribers."""
        order = delivery.metadata
        if not (isinstance(order, (tuple, list)) and len(order) == 2
                and all(type(n) is int for n in order)):
            raise InvalidArgument(f"give_back on {self.name!r}: a get delivery's metadata "
                                  f"is its order key (priority, seq), not {order!r}")
        priority, seq = order
        if delivery.key is not None and delivery.key != priority:
            raise InvalidArgument(f"give_back on {self.name!r}: key {delivery.key!r} "
                                  f"differs from the order key's priority {priority}")
        if not 0 < seq <= self.arrivals:
            raise InvalidArgument(f"give_back on {self.name!r}: no item came in as "
                                  f"{seq} (there have been {self.arrivals})")
        if (-priority, seq) in self.entries:
            raise InvalidArgument(f"give_back on {self.name!r}: item ({priority}, "
                                  f"{seq}) is in the queue already")
        item = delivery.value
        if self.getters:  # so the queue is empty: the item is the one to hand over
            self.core.serve(self.getters.popleft(),
                            Event(self.name, "get", priority, item, (priority, seq)))
            return
        self.taken -= 1
        self.entries[(-priority, seq)] = item

    def fire(self, payload: Any) -> None:
        if payload.op == "put":
            self.remove_waiter(payload)
            self.core.cancel(payload, LimitExceeded(
                f"put on {self.name!r} timed out: the queue stayed full"))
        else:
            super().fire(payload)

    def remove_waiter(self, waiter: Waiter) -> None:
        (self.putters if waiter.op == "put" else self.getters).remove(waiter)

    def waiter_queues(self) -> Iterator[WaiterQueue]:
        yield self.getters
        yield self.putters

    def count(self) -> int:
        return len(self.entries)

    def snapshot(self, start: int, end: int | None = None) -> list[tuple[str, Record]]:
        return [("put", Record(-negative, item))
                for (negative, _), item in self.entries.items(start, end)]

    def check(self) -> None:
        assert not (self.getters and self.entries), f"{self.name}: getters beside items"
        assert not self.putters or self._full(), f"{self.name}: putters while not full"
        assert self.arrivals >= max((seq for _, seq in self.entries), default=0), (
            f"{self.name}: an order key from the future")
