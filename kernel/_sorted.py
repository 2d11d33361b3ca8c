"""Ordered indexes: the one typed wrapper around the untyped sortedcontainers, and the
priority FIFO that queues and job queues take from."""

from __future__ import annotations

from bisect import insort
from collections import deque
from collections.abc import Iterator
from itertools import islice
from typing import Any, Generic, TypeVar

from sortedcontainers import SortedDict

__all__ = ["PriorityFifo", "SortedIndex"]

K = TypeVar("K")
V = TypeVar("V")


class SortedIndex(Generic[K, V]):
    """A mapping kept in key order: O(log n) insert and delete, O(1) lookup by key,
    O(log n) lookup by position."""

    __slots__ = ("_d",)

    def __init__(self) -> None:
        self._d: Any = SortedDict()

    def __len__(self) -> int:
        return len(self._d)

    def __contains__(self, key: K) -> bool:
        return key in self._d

    def __getitem__(self, key: K) -> V:
        value: V = self._d[key]
        return value

    def __setitem__(self, key: K, value: V) -> None:
        self._d[key] = value

    def __iter__(self) -> Iterator[K]:
        return iter(self._d)

    def pop(self, key: K) -> V:
        value: V = self._d.pop(key)
        return value

    def first(self) -> tuple[K, V]:
        """The smallest key and its value (the index must not be empty)."""
        item: tuple[K, V] = self._d.peekitem(0)
        return item

    def pop_first(self) -> tuple[K, V]:
        item: tuple[K, V] = self._d.popitem(0)
        return item

    def key_at(self, position: int) -> K:
        key: K = self._d.keys()[position]
        return key

    def items(self, start: int = 0, end: int | None = None) -> list[tuple[K, V]]:
        """The items whose positions fall in ``[start:end]`` (slice rules, clamped)."""
        keys = self._d.keys()[start:end]
        d = self._d
        return [(k, d[k]) for k in keys]

    def clear(self) -> None:
        self._d.clear()


Key = tuple[int, int]  # (-priority, sequence): the smaller comes out first


class PriorityFifo(Generic[V]):
    """Values by ``(-priority, sequence)`` key, taken smallest key first: a queue's
    items and a job queue's ready jobs.

    One deque per priority in use, and the priorities in order: putting at the back of
    a priority and taking from the front of the best one are O(1) (and O(log p) when
    a priority comes or goes), which a sorted map does in O(log n) with a far larger
    constant. A key that goes in behind a later one of its priority (a give-back,
    restoring an item's old place) and removing one from the middle (retracting a ready
    job) cost O(log n) deque lookups.
    """

    __slots__ = ("_lanes", "_order", "_len")

    def __init__(self) -> None:
        self._lanes: dict[int, deque[tuple[int, V]]] = {}
        self._order: list[int] = []  # the lanes' -priorities, ascending
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def __setitem__(self, key: Key, value: V) -> None:
        negative, seq = key
        lane = self._lanes.get(negative)
        if lane is None:
            lane = self._lanes[negative] = deque()
            insort(self._order, negative)
        if not lane or lane[-1][0] < seq:
            lane.append((seq, value))
        else:
            i = _find(lane, seq)
            if i < len(lane) and lane[i][0] == seq:
                raise KeyError(key)
            lane.insert(i, (seq, value))
        self._len += 1

    def pop_first(self) -> tuple[Key, V]:
        """The smallest key and its value, removed (it must not be empty)."""
        negative = self._order[0]
        lane = self._lanes[negative]
        seq, value = lane.popleft()
        if not lane:
            del self._lanes[negative]
            self._order.pop(0)
        self._len -= 1
        return (negative, seq), value

    def _at(self, key: Key) -> tuple[deque[tuple[int, V]], int]:
        lane = self._lanes.get(key[0])
        if lane is not None:
            i = _find(lane, key[1])
            if i < len(lane) and lane[i][0] == key[1]:
                return lane, i
        raise KeyError(key)

    def __contains__(self, key: Key) -> bool:
        try:
            self._at(key)
        except KeyError:
            return False
        return True

    def __getitem__(self, key: Key) -> V:
        lane, i = self._at(key)
        return lane[i][1]

    def pop(self, key: Key) -> V:
        lane, i = self._at(key)
        value = lane[i][1]
        del lane[i]
        if not lane:
            del self._lanes[key[0]]
            self._order.remove(key[0])
        self._len -= 1
        return value

    def __iter__(self) -> Iterator[Key]:
        return (key for key, _ in self._all())

    def _all(self) -> Iterator[tuple[Key, V]]:
        for negative in self._order:
            for seq, value in self._lanes[negative]:
                yield (negative, seq), value

    def items(self, start: int = 0, end: int | None = None) -> list[tuple[Key, V]]:
        """The items whose positions fall in ``[start:end]`` (slice rules, clamped)."""
        first, stop, _ = slice(start, end).indices(self._len)
        return list(islice(self._all(), first, max(first, stop)))

    def clear(self) -> None:
        self._lanes.clear()
        self._order.clear()
        self._len = 0


def _find(lane: deque[tuple[int, Any]], seq: int) -> int:
    """Where ``seq`` is, or goes, in a lane ordered by sequence (binary search)."""
    low, high = 0, len(lane)
    while low < high:
        middle = (low + high) // 2
        if lane[middle][0] < seq:
            low = middle + 1
        else:
            high = middle
    return low
