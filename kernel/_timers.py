"""The kernel's one timer index: deadlines ordered by ``(deadline, seq)``."""

from __future__ import annotations

from typing import Generic, TypeVar

from ._sorted import SortedIndex

__all__ = ["TimerKey", "Timers"]

T = TypeVar("T")

TimerKey = tuple[float, int]


class Timers(Generic[T]):
    """Deadlines with payloads; O(log n) arm, cancel and fire.

    Ties on the deadline are broken by a sequence number counted here, so timers fire in
    the order they were armed and never in an order that depends on object identity.
    """

    __slots__ = ("_index", "_seq")

    def __init__(self) -> None:
        self._index: SortedIndex[TimerKey, T] = SortedIndex()
        self._seq = 0

    def __len__(self) -> int:
        return len(self._index)

    def add(self, deadline: float, payload: T) -> TimerKey:
        """Arm a timer; returns the key that cancels it."""
        self._seq += 1
        key = (deadline, self._seq)
        self._index[key] = payload
        return key

    def cancel(self, key: TimerKey) -> None:
        """Disarm the timer ``key`` (which must be armed)."""
        self._index.pop(key)

    def next_deadline(self) -> float | None:
        """The earliest armed deadline, or None when nothing is armed."""
        if not self._index:
            return None
        return self._index.first()[0][0]

    def pop_due(self, now: float) -> T | None:
        """Disarm and return the first payload whose deadline is <= now, if any."""
        if self._index and self._index.first()[0][0] <= now:
            return self._index.pop_first()[1]
        return None

    def items(self) -> list[tuple[TimerKey, T]]:
        """Every armed timer in firing order (for invariant checks)."""
        return self._index.items()
