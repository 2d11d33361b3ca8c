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

    __slots__ = ("_index", "_seq", "first")

    def __init__(self) -> None:
        self._index: SortedIndex[TimerKey, T] = SortedIndex()
        self._seq = 0
        #: The earliest armed deadline, or None: kept as timers come and go, because
        #: adapters ask for it after every command.
        self.first: float | None = None

    def __len__(self) -> int:
        return len(self._index)

    def add(self, deadline: float, payload: T) -> TimerKey:
        """Arm a timer; returns the key that cancels it."""
        self._seq += 1
        key = (deadline, self._seq)
        self._index[key] = payload
        if self.first is None or deadline < self.first:
            self.first = deadline
        return key

    def cancel(self, key: TimerKey) -> None:
        """Disarm the timer ``key`` (which must be armed)."""
        self._index.pop(key)
        if key[0] == self.first:
            self._find_first()

    def next_deadline(self) -> float | None:
        """The earliest armed deadline, or None when nothing is armed."""
        return self.first

    def pop_due(self, now: float) -> T | None:
        """Disarm and return the first payload whose deadline is <= now, if any."""
        if self.first is not None and self.first <= now:
            payload = self._index.pop_first()[1]
            self._find_first()
            return payload
        return None

    def _find_first(self) -> None:
        self.first = self._index.first()[0][0] if self._index else None

    def items(self) -> list[tuple[TimerKey, T]]:
        """Every armed timer in firing order (for invariant checks)."""
        return self._index.items()
