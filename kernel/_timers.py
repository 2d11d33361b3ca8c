"""The kernel's one timer index: deadlines ordered by ``(deadline, seq)``."""

from __future__ import annotations

from heapq import heapify, heappop, heappush
from typing import Generic, TypeVar

__all__ = ["TimerKey", "Timers"]

T = TypeVar("T")

TimerKey = tuple[float, int]


class Timers(Generic[T]):
    """Deadlines with payloads; O(log n) arm and fire, O(1) cancel.

    Ties on the deadline are broken by a sequence number counted here, so timers fire in
    the order they were armed and never in an order that depends on object identity.

    A binary heap of keys beside the armed payloads by sequence number: cancelling
    forgets the payload and leaves its key in the heap, skipped when it comes to the
    top (and swept out when the dead keys outnumber the armed ones). A job's lease is
    armed and cancelled on every claim, so cancel is the common case.
    """

    __slots__ = ("_heap", "_armed", "_seq", "first")

    def __init__(self) -> None:
        self._heap: list[TimerKey] = []  # its top is always armed
        self._armed: dict[int, T] = {}  # by seq
        self._seq = 0
        #: The earliest armed deadline, or None: kept as timers come and go, because
        #: adapters ask for it after every command.
        self.first: float | None = None

    def __len__(self) -> int:
        return len(self._armed)

    def add(self, deadline: float, payload: T) -> TimerKey:
        """Arm a timer; returns the key that cancels it."""
        self._seq += 1
        key = (deadline, self._seq)
        heappush(self._heap, key)
        self._armed[self._seq] = payload
        if self.first is None or deadline < self.first:
            self.first = deadline
        return key

    def cancel(self, key: TimerKey) -> None:
        """Disarm the timer ``key`` (which must be armed)."""
        del self._armed[key[1]]
        heap = self._heap
        if heap[0] == key:
            self._settle()
        elif len(heap) > 2 * len(self._armed) + 64:  # mostly dead: sweep
            self._heap = [k for k in heap if k[1] in self._armed]
            heapify(self._heap)

    def _settle(self) -> None:
        """Drop dead keys from the top; keep ``first``."""
        heap, armed = self._heap, self._armed
        while heap and heap[0][1] not in armed:
            heappop(heap)
        self.first = heap[0][0] if heap else None

    def next_deadline(self) -> float | None:
        """The earliest armed deadline, or None when nothing is armed."""
        return self.first

    def pop_due(self, now: float) -> T | None:
        """Disarm and return the first payload whose deadline is <= now, if any."""
        if self.first is not None and self.first <= now:
            payload = self._armed.pop(heappop(self._heap)[1])
            self._settle()
            return payload
        return None

    @property
    def seq(self) -> int:
        """The last sequence number handed out (the next timer gets the one after)."""
        return self._seq

    def restore(self, armed: list[tuple[TimerKey, T]], seq: int) -> None:
        """Replace every timer with ``armed`` (key and payload each), the last sequence
        number being ``seq``: a saved state loaded. Raises ValueError if two keys share
        a sequence number or one is past ``seq``."""
        by_seq = {key[1]: payload for key, payload in armed}
        if len(by_seq) != len(armed):
            raise ValueError("two timers have the same seq")
        if by_seq and max(by_seq) > seq:
            raise ValueError(f"a timer's seq {max(by_seq)} is past timer_seq {seq}")
        self._heap = sorted(key for key, _ in armed)  # a sorted list is a heap
        self._armed, self._seq = by_seq, seq
        self.first = self._heap[0][0] if self._heap else None

    def items(self) -> list[tuple[TimerKey, T]]:
        """Every armed timer in firing order (for invariant checks)."""
        return sorted((key, self._armed[key[1]]) for key in self._heap
                      if key[1] in self._armed)
