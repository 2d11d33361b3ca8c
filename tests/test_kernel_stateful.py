"""The kernel against a naive model of lists, maps, waiters, timeouts and subscriptions."""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from corral.kernel import (
    AlreadyExists,
    Cancelled,
    CorralError,
    Delivered,
    Empty,
    Event,
    InvalidArgument,
    Kernel,
    Kind,
    NotFound,
    Notified,
    Record,
    Unsubscribed,
    Waiting,
    WrongKind,
)

NAMES = st.sampled_from(["a", "a", "b", "b", "c"])  # mostly the list and map made at start
KEYS = st.sampled_from(["k", "x", "y"])
VALUES = st.integers(0, 99)
METADATA = st.none() | st.sampled_from(["m", "n"])
INDEXES = st.integers(-4, 4)
TIMEOUTS = st.sampled_from([None, None, 0, 1.0, 2.5])


def normal(effect: Any) -> tuple[Any, ...]:
    """An effect as a comparable tuple (errors compare by type)."""
    if isinstance(effect, Delivered):
        return ("delivered", effect.session, effect.waiter, effect.event)
    if isinstance(effect, Cancelled):
        return ("cancelled", effect.session, effect.waiter, type(effect.error))
    if isinstance(effect, Notified):
        return ("notified", effect.session, effect.subscription, effect.event)
    assert isinstance(effect, Unsubscribed)
    return ("unsubscribed", effect.session, effect.subscription)


class KernelModel(RuleBasedStateMachine):
    """Each rule runs a command on the kernel and on plain lists and dicts, and compares."""

    sessions = Bundle("sessions")
    waiters = Bundle("waiters")
    subscriptions = Bundle("subscriptions")

    def __init__(self) -> None:
        super().__init__()
        self.kernel = Kernel()
        self.now = 0.0
        self.live_sessions: set[int] = set()
        self.kinds: dict[str, Kind] = {}
        self.records: dict[str, Any] = {}  # name -> list of (v, m) or dict key -> (v, m)
        self.properties: dict[str, dict[str, str]] = {}
        # (name, key) -> FIFO of [waiter id, session, deadline]; key None for lists.
        # Insertion order of the dict mirrors the kernel's per-key queues.
        self.queues: dict[tuple[str, Any], list[list[Any]]] = {}
        self.subs: dict[str, list[tuple[int, int]]] = {}  # name -> [(sub id, session)]
        self.expected: list[tuple[Any, ...]] = []

    # -- helpers ----------------------------------------------------------------------

    def call(self, error: type[CorralError] | None, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a kernel command expecting ``error`` (None: success)."""
        if error is None:
            return fn(*args, **kwargs)
        try:
            fn(*args, **kwargs)
        except error:
            return None
        raise AssertionError(f"{fn.__name__}{args} did not raise {error.__name__}")

    def kind_error(self, name: str, kind: Kind | None) -> type[CorralError] | None:
        if name not in self.kinds:
            return NotFound
        if kind is not None and self.kinds[name] is not kind:
            return WrongKind
        return None

    def notify(self, name: str, event: str, key: Any = None, value: Any = None,
               metadata: Any = None) -> None:
        ev = Event(container=name, name=event, key=key, value=value, metadata=metadata)
        for sid, session in self.subs.get(name, []):
            self.expected.append(("notified", session, sid, ev))

    def drop_waiter(self, waiter_id: int) -> list[Any] | None:
        for qkey, queue in list(self.queues.items()):
            for entry in queue:
                if entry[0] == waiter_id:
                    queue.remove(entry)
                    if not queue:
                        del self.queues[qkey]
                    return entry
        return None

    def serve_list(self, name: str) -> None:
        items = self.records[name]
        queue = self.queues.get((name, None))
        while queue and items:
            waiter_id, session, _ = queue.pop(0)
            value, metadata = items.pop(0)
            self.notify(name, "pop_front", 0, value, metadata)
            self.expected.append(("delivered", session, waiter_id, Event(
                container=name, name="wnp_next", key=0, value=value, metadata=metadata)))
        if queue is not None and not queue:
            del self.queues[(name, None)]

    def store_map(self, name: str, op: str, key: str, value: Any, metadata: Any) -> None:
        self.records[name][key] = (value, metadata)
        self.notify(name, op, key, value, metadata)
        queue = self.queues.get((name, key))
        if queue:
            waiter_id, session, _ = queue.pop(0)
            if not queue:
                del self.queues[(name, key)]
            del self.records[name][key]
            self.notify(name, "delete", key, value, metadata)
            self.expected.append(("delivered", session, waiter_id, Event(
                container=name, name="wnp_key", key=key, value=value, metadata=metadata)))

    def list_index(self, name: str, index: int, end_ok: bool = False) -> int | None:
        n = len(self.records[name])
        i = index + n if index < 0 else index
        return i if 0 <= i < n + end_ok else None

    # -- sessions and containers ------------------------------------------------------

    @initialize(target=sessions)
    def start(self) -> Any:
        """Two sessions, a list "a" and a map "b"; "c" is left for either kind."""
        self.create("a", Kind.LIST)
        self.create("b", Kind.MAP)
        return multiple(self.open_session(), self.open_session())

    @rule(target=sessions)
    def open_session(self) -> int:
        session = self.kernel.open_session()
        assert session not in self.live_sessions
        self.live_sessions.add(session)
        return session

    @rule(session=consumes(sessions))
    def close_session(self, session: int) -> None:
        if session not in self.live_sessions:
            self.call(NotFound, self.kernel.close_session, session)
            return
        self.kernel.close_session(session)
        self.live_sessions.discard(session)
        for qkey, queue in list(self.queues.items()):
            queue[:] = [entry for entry in queue if entry[1] != session]
            if not queue:
                del self.queues[qkey]
        for name in self.subs:
            self.subs[name] = [(sid, s) for sid, s in self.subs[name] if s != session]

    @rule(name=NAMES, kind=st.sampled_from([Kind.LIST, Kind.MAP]))
    def create(self, name: str, kind: Kind) -> None:
        if name in self.kinds and self.kinds[name] is not kind:
            self.call(WrongKind, self.kernel.create, name, kind)
            return
        assert kind == self.kernel.create(name, kind.value)
        if name not in self.kinds:
            self.kinds[name] = kind
            self.records[name] = [] if kind is Kind.LIST else {}
            self.properties[name] = {}

    @rule(name=NAMES)
    def delete_container(self, name: str) -> None:
        if name not in self.kinds:
            self.call(NotFound, self.kernel.delete_container, name)
            return
        self.kernel.delete_container(name)
        for qkey in [q for q in self.queues if q[0] == name]:
            for waiter_id, session, _ in self.queues.pop(qkey):
                self.expected.append(("cancelled", session, waiter_id, NotFound))
        for sid, session in self.subs.pop(name, []):
            self.expected.append(("unsubscribed", session, sid))
        del self.kinds[name], self.records[name], self.properties[name]

    @rule(name=NAMES, key=KEYS, value=st.sampled_from(["v", "w", 3]))
    def set_property(self, name: str, key: str, value: Any) -> None:
        error = self.kind_error(name, None) or (None if isinstance(value, str)
                                               else InvalidArgument)
        self.call(error, self.kernel.set_property, name, key, value)
        if error is None:
            self.properties[name][key] = value

    @rule(name=NAMES, key=KEYS)
    def get_property(self, name: str, key: str) -> None:
        error = self.kind_error(name, None)
        if error is None and key not in self.properties[name]:
            error = NotFound
        got = self.call(error, self.kernel.get_property, name, key)
        if error is None:
            assert self.properties[name][key] == got

    # -- lists ------------------------------------------------------------------------

    @rule(name=NAMES, values=st.lists(VALUES, min_size=1, max_size=3), metadata=METADATA,
          front=st.booleans())
    def push(self, name: str, values: list[int], metadata: Any, front: bool) -> None:
        """Push one to three values (so lists grow long enough for order to matter)."""
        op = "push_front" if front else "push_back"
        error = self.kind_error(name, Kind.LIST)
        for value in values:
            self.call(error, getattr(self.kernel, op), name, value, metadata)
            if error is None:
                items = self.records[name]
                if front:
                    items.insert(0, (value, metadata))
                else:
                    items.append((value, metadata))
                self.notify(name, op, 0 if front else len(items) - 1, value, metadata)
                self.serve_list(name)

    @rule(name=NAMES, front=st.booleans())
    def pop(self, name: str, front: bool) -> None:
        op = "pop_front" if front else "pop_back"
        error = self.kind_error(name, Kind.LIST)
        if error is None and not self.records[name]:
            error = Empty
        got = self.call(error, getattr(self.kernel, op), name)
        if error is None:
            items = self.records[name]
            value, metadata = items.pop(0 if front else -1)
            key = 0 if front else len(items)
            assert Record(key=key, value=value, metadata=metadata) == got
            self.notify(name, op, key, value, metadata)

    @rule(name=NAMES, index=INDEXES, value=VALUES, op=st.sampled_from(["set", "insert"]))
    def list_write(self, name: str, index: int, value: int, op: str) -> None:
        error = self.kind_error(name, Kind.LIST)
        if error is not None:
            if self.kinds.get(name) is Kind.MAP:
                error = InvalidArgument  # an int is not a map key
            self.call(error, getattr(self.kernel, op), name, index, value)
            return
        i = self.list_index(name, index, end_ok=(op == "insert"))
        if i is None:
            self.call(NotFound, getattr(self.kernel, op), name, index, value)
            return
        getattr(self.kernel, op)(name, index, value)
        if op == "set":
            self.records[name][i] = (value, None)
        else:
            self.records[name].insert(i, (value, None))
        self.notify(name, op, i, value, None)
        self.serve_list(name)

    @rule(name=NAMES, index=INDEXES)
    def list_get_delete(self, name: str, index: int) -> None:
        if self.kinds.get(name) is not Kind.LIST:
            return
        i = self.list_index(name, index)
        if i is None:
            self.call(NotFound, self.kernel.get, name, index)
            self.call(NotFound, self.kernel.delete, name, index)
            return
        value, metadata = self.records[name][i]
        assert Record(key=i, value=value, metadata=metadata) == self.kernel.get(name, index)
        self.kernel.delete(name, index)
        del self.records[name][i]
        self.notify(name, "delete", i, value, metadata)

    @rule(target=waiters, session=sessions, name=NAMES, timeout=TIMEOUTS)
    def wait_pop_next(self, session: int, name: str, timeout: float | None) -> int:
        error = self.kind_error(name, Kind.LIST)
        if error is None and session not in self.live_sessions:
            error = NotFound
        if error is None and not self.records[name] and timeout == 0:
            error = Empty
        if error is not None:
            self.call(error, self.kernel.wait_pop_next, session, name, timeout=timeout,
                      now=self.now)
            return -1
        got = self.kernel.wait_pop_next(session, name, timeout=timeout, now=self.now)
        items = self.records[name]
        if items:
            value, metadata = items.pop(0)
            self.notify(name, "pop_front", 0, value, metadata)
            assert (value, metadata) == got
            return -1
        assert isinstance(got, Waiting)
        deadline = None if timeout is None else self.now + timeout
        self.queues.setdefault((name, None), []).append([got.waiter, session, deadline])
        return got.waiter

    # -- maps -------------------------------------------------------------------------

    @rule(name=NAMES, key=KEYS, value=VALUES, metadata=METADATA,
          op=st.sampled_from(["set", "insert"]))
    def map_write(self, name: str, key: str, value: int, metadata: Any, op: str) -> None:
        if self.kinds.get(name) is not Kind.MAP:
            return
        if op == "insert" and key in self.records[name]:
            self.call(AlreadyExists, self.kernel.insert, name, key, value, metadata)
            return
        getattr(self.kernel, op)(name, key, value, metadata)
        self.store_map(name, op, key, value, metadata)

    @rule(name=NAMES, key=KEYS | st.integers(-4, 4))
    def map_get(self, name: str, key: Any) -> None:
        if self.kinds.get(name) is not Kind.MAP:
            return
        records = self.records[name]
        if isinstance(key, int):
            keys = sorted(records)
            i = key + len(keys) if key < 0 else key
            if not 0 <= i < len(keys):
                self.call(NotFound, self.kernel.get, name, key)
                return
            key = keys[i]
        if key not in records:
            self.call(NotFound, self.kernel.get, name, key)
            return
        value, metadata = records[key]
        assert Record(key=key, value=value, metadata=metadata) == self.kernel.get(name, key)

    @rule(name=NAMES, key=KEYS)
    def map_delete(self, name: str, key: str) -> None:
        if self.kinds.get(name) is not Kind.MAP:
            return
        if key not in self.records[name]:
            self.call(NotFound, self.kernel.delete, name, key)
            return
        self.kernel.delete(name, key)
        value, metadata = self.records[name].pop(key)
        self.notify(name, "delete", key, value, metadata)

    @rule(target=waiters, session=sessions, name=NAMES, key=KEYS, timeout=TIMEOUTS)
    def wait_pop_key(self, session: int, name: str, key: str, timeout: float | None) -> int:
        error = self.kind_error(name, Kind.MAP)
        if error is None and session not in self.live_sessions:
            error = NotFound
        if error is None and key not in self.records[name] and timeout == 0:
            error = Empty
        if error is not None:
            self.call(error, self.kernel.wait_pop_key, session, name, key, timeout=timeout,
                      now=self.now)
            return -1
        got = self.kernel.wait_pop_key(session, name, key, timeout=timeout, now=self.now)
        records = self.records[name]
        if key in records:
            value, metadata = records.pop(key)
            self.notify(name, "delete", key, value, metadata)
            assert (value, metadata) == got
            return -1
        assert isinstance(got, Waiting)
        deadline = None if timeout is None else self.now + timeout
        self.queues.setdefault((name, key), []).append([got.waiter, session, deadline])
        return got.waiter

    # -- both -------------------------------------------------------------------------

    @rule(name=NAMES)
    def clear(self, name: str) -> None:
        if name not in self.kinds:
            self.call(NotFound, self.kernel.clear, name)
            return
        self.kernel.clear(name)
        self.records[name].clear()
        self.notify(name, "clear")

    @rule(name=NAMES, start=INDEXES, end=st.none() | INDEXES)
    def query(self, name: str, start: int, end: int | None) -> None:
        if name not in self.kinds:
            self.call(NotFound, self.kernel.query, name, start, end)
            return
        got = self.kernel.query(name, start, end)
        if self.kinds[name] is Kind.LIST:
            items = self.records[name]
            positions = range(len(items))[start:end]
            expected = [Record(key=i, value=items[i][0], metadata=items[i][1])
                        for i in positions]
        else:
            records = self.records[name]
            expected = [Record(key=k, value=records[k][0], metadata=records[k][1])
                        for k in sorted(records)[start:end]]
        assert expected == got

    @rule(name=NAMES, bad=st.sampled_from([1.5, "1", None, True]))
    def bad_index_changes_nothing(self, name: str, bad: Any) -> None:
        """Malformed arguments are rejected with InvalidArgument (or NotFound/WrongKind)."""
        if name not in self.kinds:
            return
        kind = self.kinds[name]
        if kind is Kind.LIST:
            self.call(InvalidArgument, self.kernel.set, name, bad, 1)
            self.call(InvalidArgument, self.kernel.insert, name, bad, 1)
        elif not isinstance(bad, str):
            self.call(InvalidArgument, self.kernel.set, name, bad, 1)
        self.call(InvalidArgument, self.kernel.query, name, bad)

    # -- waiters, subscriptions and time ---------------------------------------------

    @rule(waiter=consumes(waiters), session=sessions)
    def cancel_wait(self, waiter: int, session: int) -> None:
        if session not in self.live_sessions:
            self.call(NotFound, self.kernel.cancel_wait, session, waiter)
            return
        owned = any(entry[0] == waiter and entry[1] == session
                    for queue in self.queues.values() for entry in queue)
        assert owned == self.kernel.cancel_wait(session, waiter)
        if owned:
            self.drop_waiter(waiter)

    @rule(target=subscriptions, session=sessions, name=NAMES,
          start=st.none() | st.integers(-3, 3))
    def subscribe(self, session: int, name: str, start: int | None) -> tuple[int, int]:
        error = self.kind_error(name, None)
        if error is None and session not in self.live_sessions:
            error = NotFound
        if error is not None:
            self.call(error, self.kernel.subscribe, session, name, start=start)
            return (session, -1)
        sid = self.kernel.subscribe(session, name, start=start)
        if start is not None:
            records = self.records[name]
            if self.kinds[name] is Kind.LIST:
                for i in range(len(records))[start:]:
                    self.expected.append(("notified", session, sid, Event(
                        container=name, name="push_back", key=i, value=records[i][0],
                        metadata=records[i][1])))
            else:
                for k in sorted(records)[start:]:
                    self.expected.append(("notified", session, sid, Event(
                        container=name, name="set", key=k, value=records[k][0],
                        metadata=records[k][1])))
        self.subs.setdefault(name, []).append((sid, session))
        return (session, sid)

    @rule(subscription=consumes(subscriptions))
    def unsubscribe(self, subscription: tuple[int, int]) -> None:
        session, sid = subscription
        live = any((sid, session) in subs for subs in self.subs.values())
        if not live:
            self.call(NotFound, self.kernel.unsubscribe, session, sid)
            return
        self.kernel.unsubscribe(session, sid)
        for subs in self.subs.values():
            if (sid, session) in subs:
                subs.remove((sid, session))

    @rule(dt=st.sampled_from([0.0, 0.5, 1.0, 3.0]))
    def advance(self, dt: float) -> None:
        self.now += dt
        due = sorted((entry[2], entry[0], entry[1]) for queue in self.queues.values()
                     for entry in queue if entry[2] is not None and entry[2] <= self.now)
        self.kernel.advance(self.now)
        for _, waiter_id, session in due:
            self.drop_waiter(waiter_id)
            self.expected.append(("cancelled", session, waiter_id, Empty))
        expected_deadline = min((entry[2] for queue in self.queues.values() for entry in queue
                                 if entry[2] is not None), default=None)
        assert expected_deadline == self.kernel.next_deadline()

    # -- invariants -------------------------------------------------------------------

    @invariant()
    def effects_match(self) -> None:
        got = [normal(effect) for effect in self.kernel.take_effects()]
        expected, self.expected = self.expected, []
        assert expected == got

    @invariant()
    def state_matches(self) -> None:
        self.kernel._check()
        assert dict(self.kinds) == self.kernel.containers()
        for name, kind in self.kinds.items():
            stats = self.kernel.statistics(name)
            waiting = sum(len(q) for (n, _), q in self.queues.items() if n == name)
            assert (len(self.records[name]), waiting, len(self.subs.get(name, []))) == (
                stats.records, stats.waiters, stats.subscribers)
            if kind is Kind.MAP:
                assert sorted(self.records[name]) == self.kernel.keys(name)

    @precondition(lambda self: bool(self.live_sessions))
    @invariant()
    def waiters_only_on_empty(self) -> None:
        for (name, key), queue in self.queues.items():
            assert queue
            if key is None:
                assert not self.records[name]
            else:
                assert key not in self.records[name]


KernelModel.TestCase.settings = settings(max_examples=400, stateful_step_count=50,
                                         deadline=None)
TestKernelModel = KernelModel.TestCase
