"""Parked waiters and their FIFO queues."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import attrs

__all__ = ["Waiter", "WaiterQueue"]


@attrs.define(eq=False)
class Waiter:
    """A parked request: session ``session`` waits on ``container`` (and ``key``, for maps)."""

    id: int
    session: int
    op: str
    container: str
    key: Any = None
    timer: tuple[float, int] | None = None


class WaiterQueue:
    """Strict FIFO of waiters with O(1) append, pop-first and cancel by id.

    An ordered dict, as trio's ParkingLot: a plain dict would make pop-first degrade
    after many deletions at its front.
    """

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: OrderedDict[int, Waiter] = OrderedDict()

    def __len__(self) -> int:
        return len(self._waiters)

    def __iter__(self) -> Iterator[Waiter]:
        return iter(self._waiters.values())

    def append(self, waiter: Waiter) -> None:
        self._waiters[waiter.id] = waiter

    def popleft(self) -> Waiter:
        """Remove and return the first waiter (the queue must not be empty)."""
        return self._waiters.popitem(last=False)[1]

    def remove(self, waiter: Waiter) -> None:
        del self._waiters[waiter.id]
