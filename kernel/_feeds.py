"""Feeds (items by id in publish order) and sorted feeds (items in an order set by hand).

The semantics are Thoonk's, with its bugs fixed: a missing id is an error, never a silent
no-op, and moving an item relative to itself is refused instead of losing it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from itertools import islice
from typing import Any

import attrs

from ._containers import Container
from ._errors import InvalidArgument, NotFound
from ._model import Kind, Record

__all__ = ["FeedContainer", "SortedFeedContainer"]


def check_max_length(name: str, max_length: Any) -> int | None:
    if max_length is None:
        return None
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise InvalidArgument(f"{name!r}: max_length must be None or an int >= 1, "
                              f"not {max_length!r}")
    return max_length


@attrs.define(eq=False)
class FeedContainer(Container):
    """Items by string id, oldest first. Publishing an id again edits the item and moves it
    to the end; with ``max_length`` every publish first retracts the oldest items."""

    entries: OrderedDict[str, Any] = attrs.Factory(OrderedDict)
    max_length: int | None = None
    last_id: int = 0
    kind: Kind = attrs.field(init=False, default=Kind.FEED)

    def options(self) -> dict[str, Any]:
        return {"max_length": self.max_length}

    def configure(self, options: dict[str, Any]) -> None:
        self.max_length = check_max_length(self.name, options.get("max_length"))

    def _lookup(self, op: str, id: Any) -> Any:
        try:
            return self.entries[id]
        except (KeyError, TypeError):
            raise NotFound(f"{op} on {self.name!r}: no item {id!r}") from None

    def publish(self, item: Any, id: str | None) -> str:
        entries = self.entries
        if id is None:
            while True:  # deterministic fresh ids that never collide with given ones
                self.last_id += 1
                id = str(self.last_id)
                if id not in entries:
                    break
        elif not isinstance(id, str) or not id:
            raise InvalidArgument(f"publish on {self.name!r}: an id is a non-empty str, "
                                  f"not {id!r}")
        if self.max_length is not None:
            # Thoonk's rule: keep the newest max_length - 1 others; an edit trims too.
            excess = len(entries) - (self.max_length - 1)
            for old in [i for i in islice(entries, max(excess, 0)) if i != id]:
                self._remove(old)
        edit = id in entries
        if not edit:
            self.added += 1
        entries[id] = item
        if edit:
            entries.move_to_end(id)
        if self.subscribers:
            self.core.notify(self, "edit" if edit else "publish", id, item)
        return id

    def _remove(self, id: str) -> None:
        self.taken += 1
        item = self.entries.pop(id)
        if self.subscribers:
            self.core.notify(self, "retract", id, item)

    def retract(self, id: Any) -> None:
        self._lookup("retract", id)
        self._remove(id)

    def get(self, key: Any) -> Record:
        return Record(key, self._lookup("get", key))

    def ids(self) -> list[Any]:
        return list(self.entries)

    def items(self) -> list[tuple[Any, Any]]:
        return list(self.entries.items())

    def count(self) -> int:
        return len(self.entries)

    def snapshot(self, start: int, end: int | None = None) -> list[tuple[str, Record]]:
        return [("publish", Record(i, item)) for i, item in self.items()[start:end]]

    def check(self) -> None:
        if self.max_length is not None:
            assert len(self.entries) <= self.max_length, f"{self.name}: over max_length"


class _Order:
    """A doubly linked order of int ids: O(1) insert beside any id, move and remove."""

    __slots__ = ("_next", "_prev")

    _END = 0  # ids start at 1, so 0 is the sentinel at both ends

    def __init__(self) -> None:
        self._next: dict[int, int] = {self._END: self._END}
        self._prev: dict[int, int] = {self._END: self._END}

    def __contains__(self, id: object) -> bool:
        return id != self._END and id in self._next

    def __len__(self) -> int:
        return len(self._next) - 1

    def __iter__(self) -> Iterator[int]:
        id = self._next[self._END]
        while id != self._END:
            yield id
            id = self._next[id]

    def insert_after(self, rel: int, id: int) -> None:
        after = self._next[rel]
        self._next[rel], self._prev[id], self._next[id], self._prev[after] = id, rel, after, id

    def insert_before(self, rel: int, id: int) -> None:
        self.insert_after(self._prev[rel], id)

    def append(self, id: int) -> None:
        self.insert_before(self._END, id)

    def prepend(self, id: int) -> None:
        self.insert_after(self._END, id)

    def remove(self, id: int) -> None:
        before, after = self._prev.pop(id), self._next.pop(id)
        self._next[before], self._prev[after] = after, before

    def check(self) -> None:
        for id, after in self._next.items():
            assert self._prev[after] == id, "order links disagree"
        assert len(self._next) == len(self._prev)


@attrs.define(eq=False)
class SortedFeedContainer(Container):
    """Items by int id (1, 2, 3, ... as Thoonk's INCR gave them) in an order set by hand.

    Position events say where an item went, as Thoonk's did: ``":end"`` (last),
    ``"begin:"`` (first), ``":<id>"`` (just before that id), ``"<id>:"`` (just after).
    """

    entries: dict[int, Any] = attrs.Factory(dict)
    order: _Order = attrs.Factory(_Order)
    last_id: int = 0
    kind: Kind = attrs.field(init=False, default=Kind.SORTED_FEED)

    def _check_id(self, op: str, id: Any) -> int:
        try:
            known = id in self.order and not isinstance(id, bool)
        except TypeError:  # unhashable
            known = False
        if not known:
            raise NotFound(f"{op} on {self.name!r}: no item {id!r}")
        result: int = id
        return result

    def _publish(self, item: Any, place: str, rel: int | None) -> int:
        self.last_id += 1
        self.added += 1
        id = self.last_id
        self.entries[id] = item
        if place == "append":
            self.order.append(id)
            position = ":end"
        elif place == "prepend":
            self.order.prepend(id)
            position = "begin:"
        elif place == "before":
            assert rel is not None
            self.order.insert_before(rel, id)
            position = f":{rel}"
        else:
            assert rel is not None
            self.order.insert_after(rel, id)
            position = f"{rel}:"
        if self.subscribers:
            self.core.notify(self, "publish", id, item)
            self.core.notify(self, "position", id, position)
        return id

    def append(self, item: Any) -> int:
        return self._publish(item, "append", None)

    def prepend(self, item: Any) -> int:
        return self._publish(item, "prepend", None)

    def insert_before(self, rel_id: Any, item: Any) -> int:
        return self._publish(item, "before", self._check_id("insert_before", rel_id))

    def insert_after(self, rel_id: Any, item: Any) -> int:
        return self._publish(item, "after", self._check_id("insert_after", rel_id))

    def edit(self, id: Any, item: Any) -> None:
        self.entries[self._check_id("edit", id)] = item
        if self.subscribers:
            self.core.notify(self, "edit", id, item)

    def move(self, op: str, id: Any, rel_id: Any = None) -> None:
        """``op`` is move_before, move_after (relative to ``rel_id``), move_first or
        move_last."""
        id = self._check_id(op, id)
        if op in ("move_before", "move_after"):
            rel_id = self._check_id(op, rel_id)
            if rel_id == id:
                raise InvalidArgument(f"{op} on {self.name!r}: item {id} cannot move "
                                      "relative to itself")
        order = self.order
        order.remove(id)
        if op == "move_before":
            order.insert_before(rel_id, id)
            position = f":{rel_id}"
        elif op == "move_after":
            order.insert_after(rel_id, id)
            position = f"{rel_id}:"
        elif op == "move_first":
            order.prepend(id)
            position = "begin:"
        else:
            order.append(id)
            position = ":end"
        if self.subscribers:
            self.core.notify(self, "position", id, position)

    def retract(self, id: Any) -> None:
        id = self._check_id("retract", id)
        self.taken += 1
        self.order.remove(id)
        item = self.entries.pop(id)
        if self.subscribers:
            self.core.notify(self, "retract", id, item)

    def get(self, key: Any) -> Record:
        return Record(key, self.entries[self._check_id("get", key)])

    def ids(self) -> list[Any]:
        return list(self.order)

    def items(self) -> list[tuple[Any, Any]]:
        return [(id, self.entries[id]) for id in self.order]

    def count(self) -> int:
        return len(self.entries)

    def snapshot(self, start: int, end: int | None = None) -> list[tuple[str, Record]]:
        return [("publish", Record(i, item)) for i, item in self.items()[start:end]]

    def check(self) -> None:
        self.order.check()
        assert set(self.order) == set(self.entries), f"{self.name}: order and items differ"
