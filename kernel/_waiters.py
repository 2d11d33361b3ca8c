"""Parked waiters and their FIFO queues."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import attrs

from ._model import WaiterInfo

__all__ = ["Waiter", "WaiterQueue"]


@attrs.define(eq=False)
class Waiter:
    """A parked request: session ``session`` waits on ``container`` (and ``key``, for maps)."""

    id: int
    session: int
    op: str
    container: str
    key: Any = None
    payload: Any = None  # what a waiting writer brings (a queue put's item and priority)
    timer: tuple[float, int] | None = None
    since: float = 0.0  # when it parked, on the kernel's clock

    def info(self) -> WaiterInfo:
        return WaiterInfo(id=self.id, session=self.session, op=self.op,
                          container=self.container, key=self.key, since=self.since,
                          deadline=None if self.timer is None else self.timer[0])


class WaiterQueue(OrderedDict[int, Waiter]):
    """Strict FIFO of waiters by id, with O(1) append, pop-first and cancel.

    An ordered dict, as trio's ParkingLot: a plain dict would make pop-first degrade after
    many deletions at its front. Subclassing keeps ``len`` and truth tests in C; they run
    on every push.
    """

    __slots__ = ()

    def append(self, waiter: Waiter) -> None:
        self[waiter.id] = waiter

    def popleft(self) -> Waiter:
        """Remove and return the first waiter (the queue must not be empty)."""
        return self.popitem(last=False)[1]

    def remove(self, waiter: Waiter) -> None:
        del self[waiter.id]
