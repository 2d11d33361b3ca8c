"""The one typed wrapper around the untyped sortedcontainers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from sortedcontainers import SortedDict

__all__ = ["SortedIndex"]

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
