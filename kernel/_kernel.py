"""The kernel: one deterministic state machine behind every corral adapter.

Theory of operation
-------------------
Callers are *sessions* (``open_session``); every container operation is a method here,
applied atomically: it validates all its arguments first, so one that raises has changed
nothing. A container has a name and one kind for its life (``create``); each kind's data
and rules live in its own module (``_containers`` for lists and maps, ``_feeds``,
``_queues``, ``_jobs``), and the bookkeeping they share in ``_core``.

A wait command (``wait_pop_next``, ``wait_pop_key``, ``queue_get``, a full queue's
``queue_put``, ``claim``, ``result``) either completes at once and returns its result,
or parks a *waiter* and returns ``Waiting(waiter=id)``. Waiters sit in strict FIFO
queues (per list, per map key, per queue, per job queue, per job's result). The invariant
that makes hand-off atomic and barging impossible: a queue of waiters is never beside
what they wait for (a list with waiters is empty, a map key with waiters is absent, a job
queue with claimers has no ready job). So whatever makes the thing available serves the
oldest waiter, inside the same command.

A job is claimed under a *lease*: a ``Job(id, item, attempt)`` token and a deadline.
Every later call about the claim carries the token, and one whose attempt is no longer
current raises LeaseLost; that fence is what makes "finished exactly once" hold through
expiry, cancels and closed sessions. Each job's state (``JobState``) says which one
deadline it has: its delay, its lease or its result TTL.

Nothing here talks to anyone. Whatever a command does to *other* parties is queued as an
effect addressed to a session: ``Delivered`` (a waiter was served), ``Cancelled`` (a
waiter timed out or lost its container), ``Notified`` (a subscriber's event, in mutation
order) and ``Unsubscribed``. The adapter drains them with ``take_effects()`` after each
command, in order. The order is a pure function of the command sequence.

Time is an argument. Commands that arm a timer take ``now``; every timer (waiter
timeouts, leases, delays, result TTLs) sits in one index ordered by ``(deadline, seq)``.
The adapter arms one real timer at ``next_deadline()`` and calls ``advance(now)`` when it
fires; the kernel never reads a clock and never goes back in time.

A served wait whose caller is truly gone (an interrupted thread, a closing client) is
undone by ``give_back``, the exact inverse of the delivery: the session hands back the
delivery's event as a receipt and the record returns where it was (a list's front, a
map key still absent, a queue item at its order key, a job ready again with its
attempt restored), or straight to the oldest waiter parked for it meanwhile. Neither
emits subscriber events: subscribers heard the record leave once, and it leaves once.

Closing a session withdraws its waiters and drops its subscriptions silently (nobody is
left to tell) and releases its leases as each job queue's policy says; a withdrawn waiter
is removed from every index at once and never held an item. ``_check()`` asserts every
cross-index invariant.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from . import _state
from ._containers import ListContainer, MapContainer, check_int
from ._core import Core, Session, Subscription
from ._errors import InvalidArgument, NotFound, WrongKind
from ._feeds import FeedContainer, SortedFeedContainer
from ._jobs import JobsContainer
from ._model import (
    ContainerMetrics,
    ContainerStatistics,
    Effect,
    Event,
    Job,
    JobInfo,
    JobState,
    Kind,
    Notified,
    Popped,
    Record,
    SessionInfo,
    Unsubscribed,
    WaiterInfo,
    Waiting,
)
from ._queues import QueueContainer
from ._timers import Timers
from ._values import check_items, check_reason, check_value
from ._waiters import Waiter

__all__ = ["GIVEN_BACK", "Kernel"]

C = TypeVar("C")

AnyContainer = (ListContainer | MapContainer | FeedContainer | SortedFeedContainer
                | QueueContainer | JobsContainer)

_KINDS: dict[Kind, type[AnyContainer]] = {
    Kind.LIST: ListContainer,
    Kind.MAP: MapContainer,
    Kind.FEED: FeedContainer,
    Kind.SORTED_FEED: SortedFeedContainer,
    Kind.QUEUE: QueueContainer,
    Kind.JOBS: JobsContainer,
}


#: The deliveries ``Kernel.give_back`` undoes, by event name, and the kind that makes
#: each (read only). A queue put that went in and a result that was read took nothing.
GIVEN_BACK: Mapping[str, Kind] = {
    "wnp_next": Kind.LIST, "wnp_key": Kind.MAP, "get": Kind.QUEUE, "claimed": Kind.JOBS}


class Kernel:
    """The coordination state machine. Not thread-safe: adapters serialise calls."""

    def __init__(self) -> None:
        self._core = Core()
        self._containers: dict[str, AnyContainer] = {}
        #: Effects queued and not yet taken, oldest first. Adapters test it after each
        #: command (a truth test costs no call) and drain it with take_effects();
        #: nobody else may change it.
        self.effects: Sequence[Effect] = self._core.effects
        #: The armed timers: ``timers.first`` is ``next_deadline()`` as an attribute,
        #: which adapters read after each command (an attribute costs no call);
        #: nobody else may change them.
        self.timers: Timers[Any] = self._core.timers

    # -- sessions ---------------------------------------------------------------------

    def open_session(self) -> int:
        """Open a session; returns its id."""
        core = self._core
        session = Session(core.next_id())
        core.sessions[session.id] = session
        return session.id

    @property
    def now(self) -> float:
        """The latest time any call has told the kernel (it never goes back). A call
        that fails may still have moved it forward."""
        return self._core.now

    def sessions(self) -> list[int]:
        """The open sessions' ids, oldest first."""
        return list(self._core.sessions)

    def close_session(self, session: int, *, now: float = 0.0) -> None:
        """Close a session: its waiters are cancelled and its subscriptions dropped,
        without effects; its job leases are released or left to run out, as each job
        queue's ``release_on_close`` says.

        Raises NotFound if the session is not open.
        """
        core = self._core
        owner = core.session(session)
        core.tick(now)
        for waiter in list(owner.waiters.values()):
            self._containers[waiter.container].remove_waiter(waiter)
            core.forget(waiter)
        for sub in owner.subscriptions.values():
            del self._containers[sub.container].subscribers[sub.id]
        owner.subscriptions.clear()
        for name in dict.fromkeys(name for name, _ in owner.leases):
            self._containers[name].close_session(session)
        del core.sessions[session]

    # -- containers -------------------------------------------------------------------

    def create(self, name: str, kind: Kind | str, *, max_length: int | None = None,
               lease: float | None = None, max_attempts: int | None = None,
               release_on_close: bool | None = None, result_ttl: float | None = None,
               backoff: float | None = None, backoff_factor: float | None = None,
               backoff_max: float | None = None) -> Kind:
        """Create container ``name`` of ``kind``, or open it if it exists with that kind.

        ``kind`` is a :class:`Kind` or its wire name (``"volatile_list"``). Options, for
        the kinds that have them (None: the default, or whatever the container has):
        ``max_length`` (feed, queue), and for jobs ``lease`` (seconds, 30),
        ``max_attempts`` (claims before a failing job stalls, 5; 0: no limit),
        ``release_on_close`` (True), ``result_ttl`` (seconds, 300) and the backoff
        between failed attempts: ``backoff`` (seconds, 1; 0: none), ``backoff_factor``
        (2) and ``backoff_max`` (seconds, 300).

        Returns the kind. Raises WrongKind if ``name`` exists with another kind,
        InvalidArgument for an empty or non-string name, an unknown kind, an option the
        kind does not have, a bad value, or a value that differs from the existing
        container's.
        """
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"create: a container name is a non-empty str, not {name!r}")
        try:
            kind = Kind(kind)
        except ValueError:
            raise InvalidArgument(f"create {name!r}: unknown kind {kind!r}") from None
        given = {key: value for key, value in (
            ("max_length", max_length), ("lease", lease), ("max_attempts", max_attempts),
            ("release_on_close", release_on_close), ("result_ttl", result_ttl),
            ("backoff", backoff), ("backoff_factor", backoff_factor),
            ("backoff_max", backoff_max),
        ) if value is not None}
        existing = self._containers.get(name)
        if existing is not None and existing.kind is not kind:
            raise WrongKind(f"create {name!r} as {kind.value}: it is a {existing.kind.value}")
        container = existing or _KINDS[kind](name, self._core)
        allowed = container.options()
        for key in given:
            if key not in allowed:
                raise InvalidArgument(f"create {name!r}: a {kind.value} has no option {key}")
        if existing is None:
            container.configure(given)
            self._containers[name] = container
            return kind
        differing = {k: v for k, v in given.items() if v != allowed[k]}
        if differing:
            raise InvalidArgument(f"create {name!r}: it exists with {allowed}, not "
                                  f"{differing}")
        return kind

    def options(self, name: str) -> dict[str, Any]:
        """The configuration container ``name`` was created with. Raises NotFound."""
        return self._get(name, "options").options()

    def open(self, name: str) -> Kind:
        """The kind of the existing container ``name``. Raises NotFound."""
        return self._get(name, "open").kind

    def containers(self) -> dict[str, Kind]:
        """Every container's name and kind, in creation order."""
        return {name: c.kind for name, c in self._containers.items()}

    def delete_container(self, name: str) -> None:
        """Delete container ``name`` with its records.

        Its waiters are cancelled with NotFound and its subscriptions end with an
        ``Unsubscribed`` effect. Raises NotFound if it does not exist.
        """
        container = self._get(name, "delete_container")
        core = self._core
        for queue in container.waiter_queues():
            while queue:
                core.cancel(queue.popleft(), NotFound(f"container {name!r} was deleted"))
        for sub in container.subscribers.values():
            del core.sessions[sub.session].subscriptions[sub.id]
            core.effects.append(Unsubscribed(session=sub.session, subscription=sub.id,
                                             reason=f"container {name!r} was deleted"))
        container.discard()
        del self._containers[name]

    def statistics(self, name: str) -> ContainerStatistics:
        """A snapshot of container ``name``: records, waiters and subscribers; for a job
        queue, a JobStatistics with the jobs in each state too. Raises NotFound."""
        return self._get(name, "statistics").statistics()

    def metrics(self, name: str) -> ContainerMetrics:
        """What container ``name`` has seen since it was made: records in and out and,
        for a job queue, how claims ended and how long jobs waited and ran (for
        monitoring; see ContainerMetrics). Raises NotFound."""
        return self._get(name, "metrics").metrics()

    def peek(self, name: str, start: int = 0, end: int | None = None) -> list[Record]:
        """Container ``name``'s records at positions ``[start:end]`` (slice rules), of
        any kind, in the order a subscription's snapshot sends them: a list's or map's
        records, a feed's items by id, a queue's items (key: the priority) in the
        order they will be taken, a job queue's jobs that have not ended (key: the id).
        For inspection; it changes nothing. Raises NotFound."""
        container = self._get(name, "peek")
        check_int("peek", name, "start", start)
        if end is not None:
            check_int("peek", name, "end", end)
        return [record for _, record in container.snapshot(start, end)]

    def waiters(self, name: str) -> list[WaiterInfo]:
        """The calls parked on container ``name``, each waiter queue in the order it is
        served (claimers before a job queue's result readers; a map's keys in the
        order they were first waited for). Raises NotFound."""
        container = self._get(name, "waiters")
        return [waiter.info() for queue in container.waiter_queues()
                for waiter in queue.values()]

    def session_info(self, session: int) -> SessionInfo:
        """What session ``session`` holds: parked calls, subscriptions and claims.
        Raises NotFound if it is not open."""
        owner = self._core.session(session)
        return SessionInfo(
            id=session, waiters=tuple(w.info() for w in owner.waiters.values()),
            subscriptions=tuple((s.id, s.container) for s in owner.subscriptions.values()),
            claims=tuple(owner.leases))

    def _get(self, name: str, op: str) -> AnyContainer:
        try:
            return self._containers[name]
        except (KeyError, TypeError):
            raise NotFound(f"{op}: no container {name!r}") from None

    def _of(self, cls: type[C], name: str, op: str) -> C:
        """Container ``name``, which must be of class ``cls``."""
        container = self._get(name, op)
        if type(container) is not cls:
            raise self._not_a(container, op)
        return container

    def _list(self, name: str, op: str) -> ListContainer:
        # The hand-off commands inline this lookup: a call is a fifth of their cost.
        return self._of(ListContainer, name, op)

    def _map(self, name: str, op: str) -> MapContainer:
        return self._of(MapContainer, name, op)

    def _not_a(self, container: AnyContainer | None, op: str, name: Any = None) -> Exception:
        """The error for ``op`` on a missing container or one of the wrong kind."""
        if container is None:
            return NotFound(f"{op}: no container {name!r}")
        return WrongKind(f"{op} on {container.name!r}: a {container.kind.value} has no {op}")

    # -- properties -------------------------------------------------------------------

    def set_property(self, name: str, key: str, value: str) -> None:
        """Set string property ``key`` of a container. Raises InvalidArgument for non-strings."""
        container = self._get(name, "set_property")
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidArgument(f"set_property on {name!r}: key and value must be str, "
                                  f"not {key!r} and {value!r}")
        container.properties[key] = value

    def get_property(self, name: str, key: str) -> str:
        """String property ``key`` of a container. Raises NotFound if it is not set."""
        container = self._get(name, "get_property")
        try:
            return container.properties[key]
        except (KeyError, TypeError):
            raise NotFound(f"get_property on {name!r}: no property {key!r}") from None

    # -- operations on lists and maps -------------------------------------------------

    def get(self, name: str, key: Any) -> Record:
        """The record at ``key``: a list index (negative counts from the end), or a map
        key (a str) or map position (an int). Raises NotFound."""
        return self._get(name, "get").get(key)

    def set(self, name: str, key: Any, value: Any, metadata: Any = None) -> None:
        """Replace the record at list index ``key`` (NotFound if out of range), or set
        map key ``key`` (insert or replace; serves a waiter on that key)."""
        value, metadata = _record(value, metadata, "set", name)
        self._get(name, "set").set(key, value, metadata)

    def insert(self, name: str, key: Any, value: Any, metadata: Any = None) -> None:
        """Insert before list index ``key`` (``count`` appends), or add map key ``key``
        (AlreadyExists if present). Serves waiters."""
        value, metadata = _record(value, metadata, "insert", name)
        self._get(name, "insert").insert(key, value, metadata)

    def delete(self, name: str, key: Any) -> None:
        """Remove the record at ``key``. Raises NotFound."""
        self._get(name, "delete").delete(key)

    def count(self, name: str) -> int:
        """How many records the container holds."""
        return self._get(name, "count").count()

    def query(self, name: str, start: int = 0, end: int | None = None) -> list[Record]:
        """The records at positions ``[start:end]`` (Python slice rules, clamped); a
        map's positions are in key order."""
        return self._get(name, "query").query(start, end)

    def clear(self, name: str) -> None:
        """Remove every record."""
        self._get(name, "clear").clear()

    # -- lists ------------------------------------------------------------------------

    def push_back(self, name: str, value: Any, metadata: Any = None) -> None:
        """Append a record to a list; serves the oldest waiter if any."""
        value, metadata = _record(value, metadata, "push_back", name)
        try:
            container = self._containers.get(name)
        except TypeError:  # an unhashable name
            container = None
        if type(container) is not ListContainer:
            raise self._not_a(container, "push_back", name)
        container.push_back(value, metadata)

    def push_front(self, name: str, value: Any, metadata: Any = None) -> None:
        """Prepend a record to a list; serves the oldest waiter if any."""
        value, metadata = _record(value, metadata, "push_front", name)
        self._list(name, "push_front").push_front(value, metadata)

    def pop_front(self, name: str) -> Record:
        """Remove and return a list's first record. Raises Empty."""
        return self._list(name, "pop_front").pop_front()

    def pop_back(self, name: str) -> Record:
        """Remove and return a list's last record. Raises Empty."""
        return self._list(name, "pop_back").pop_back()

    def wait_pop_next(self, session: int, name: str, *, timeout: float | None = None,
                      now: float = 0.0) -> Popped | Waiting:
        """Pop a list's first record for ``session``, now or when one arrives.

        Returns its ``(value, metadata)`` if a record was there (subscribers see
        pop_front). Otherwise parks a waiter and returns ``Waiting``; its outcome comes
        later as a ``Delivered`` effect carrying the ``wnp_next`` event, or a
        ``Cancelled`` one. ``timeout`` None waits forever; 0 raises Empty at once
        instead of parking. Raises NotFound for an unknown session or container.
        """
        try:
            container = self._containers.get(name)
        except TypeError:
            container = None
        if type(container) is not ListContainer:
            raise self._not_a(container, "wait_pop_next", name)
        return container.wait_pop_next(session, timeout, now)

    # -- maps -------------------------------------------------------------------------

    def keys(self, name: str) -> list[str]:
        """A map's keys, in order."""
        return self._map(name, "keys").keys()

    def wait_pop_key(self, session: int, name: str, key: str, *,
                     timeout: float | None = None, now: float = 0.0) -> Popped | Waiting:
        """Pop map key ``key`` for ``session``, now or when it is set.

        As :meth:`wait_pop_next`, with waiters queued per key.
        """
        return self._map(name, "wait_pop_key").wait_pop_key(session, key, timeout, now)

    # -- feeds and sorted feeds -------------------------------------------------------

    def publish(self, name: str, item: Any, id: str | None = None) -> str:
        """Publish ``item`` to a feed; returns its id (a fresh one if ``id`` is None).

        Publishing an existing id edits it and moves it to the end. With max_length, the
        oldest others are retracted first so the feed keeps at most max_length items.
        """
        item = check_value(item, "publish", name, "item")
        return self._of(FeedContainer, name, "publish").publish(item, id)

    def retract(self, name: str, id: Any) -> None:
        """Remove item or job ``id`` from a feed, sorted feed or job queue. A job is
        retracted from any live state and remembered as retracted for its result TTL;
        a finished or retracted job raises InvalidArgument. Raises NotFound."""
        self._get(name, "retract").retract(id)

    def ids(self, name: str, *, state: JobState | str | None = None, start: int = 0,
            end: int | None = None) -> list[Any]:
        """A feed's or sorted feed's ids in order; a job queue's ids in the order they
        were put: of the jobs in ``state``, or (None) of those that have not ended.
        ``[start:end]`` of them (slice rules), for paging through a long queue."""
        check_int("ids", name, "start", start)
        if end is not None:
            check_int("ids", name, "end", end)
        container = self._get(name, "ids")
        if isinstance(container, JobsContainer):
            return container.ids_in(state, start, end)
        if state is not None:
            raise InvalidArgument(f"ids on {name!r}: only jobs have states")
        return container.ids()[start:end]

    def items(self, name: str) -> list[tuple[Any, Any]]:
        """A feed's or sorted feed's ``(id, item)`` pairs, in order."""
        return self._get(name, "items").items()

    def append(self, name: str, item: Any) -> int:
        """Add ``item`` at the end of a sorted feed; returns its new id."""
        item = check_value(item, "append", name, "item")
        return self._of(SortedFeedContainer, name, "append").append(item)

    def prepend(self, name: str, item: Any) -> int:
        """Add ``item`` at the start of a sorted feed; returns its new id."""
        item = check_value(item, "prepend", name, "item")
        return self._of(SortedFeedContainer, name, "prepend").prepend(item)

    def insert_before(self, name: str, rel_id: int, item: Any) -> int:
        """Add ``item`` just before ``rel_id`` (NotFound if absent); returns its id."""
        item = check_value(item, "insert_before", name, "item")
        return self._of(SortedFeedContainer, name, "insert_before").insert_before(rel_id,
                                                                                  item)

    def insert_after(self, name: str, rel_id: int, item: Any) -> int:
        """Add ``item`` just after ``rel_id`` (NotFound if absent); returns its id."""
        item = check_value(item, "insert_after", name, "item")
        return self._of(SortedFeedContainer, name, "insert_after").insert_after(rel_id,
                                                                                item)

    def edit(self, name: str, id: int, item: Any) -> None:
        """Replace item ``id`` of a sorted feed in place. Raises NotFound."""
        item = check_value(item, "edit", name, "item")
        self._of(SortedFeedContainer, name, "edit").edit(id, item)

    def move_before(self, name: str, rel_id: int, id: int) -> None:
        """Move ``id`` just before ``rel_id``. NotFound for a missing id,
        InvalidArgument for moving an item relative to itself."""
        self._of(SortedFeedContainer, name, "move_before").move("move_before", id, rel_id)

    def move_after(self, name: str, rel_id: int, id: int) -> None:
        """Move ``id`` just after ``rel_id`` (as move_before)."""
        self._of(SortedFeedContainer, name, "move_after").move("move_after", id, rel_id)

    def move_first(self, name: str, id: int) -> None:
        """Move ``id`` to the start of a sorted feed. Raises NotFound."""
        self._of(SortedFeedContainer, name, "move_first").move("move_first", id)

    def move_last(self, name: str, id: int) -> None:
        """Move ``id`` to the end of a sorted feed. Raises NotFound."""
        self._of(SortedFeedContainer, name, "move_last").move("move_last", id)

    # -- queues -----------------------------------------------------------------------

    def queue_put(self, session: int, name: str, item: Any, *, priority: int = 0,
                  timeout: float | None = 0.0, now: float = 0.0) -> Waiting | None:
        """Put ``item`` on a queue; higher priorities are taken first.

        A full bounded queue raises LimitExceeded when ``timeout`` is 0 (the default);
        otherwise the put parks (``Waiting``) until a get makes room, and a timeout
        cancels it with LimitExceeded. A waiting getter receives the item at once.
        """
        item = check_value(item, "queue_put", name, "item")
        return self._of(QueueContainer, name, "put").put(session, item, priority, timeout,
                                                        now)

    def queue_get(self, session: int, name: str, *, timeout: float | None = None,
                  now: float = 0.0, receipt: bool = False) -> Popped | Waiting:
        """Take a queue's first item: ``(item, None)`` now, or ``Waiting`` (served in
        FIFO order as items arrive, with the event ``Event(name, "get", priority, item,
        (priority, seq))``). ``(priority, seq)`` is the item's order key, which
        :meth:`give_back` needs: with ``receipt`` an item taken at once comes with it
        too, ``(item, (priority, seq))``. ``timeout`` as for :meth:`wait_pop_next`."""
        return self._of(QueueContainer, name, "get").get_next(session, timeout, now,
                                                             receipt)

    # -- jobs -------------------------------------------------------------------------

    def put(self, name: str, item: Any, *, priority: int = 0, delay: float = 0.0,
            id: str | None = None, now: float = 0.0) -> str:
        """Add a job; returns its id (fresh if ``id`` is None; AlreadyExists if taken).

        It is ready at once, or after ``delay`` seconds; claims take the highest
        priority first, then the oldest. A waiting claimer is served at once.
        """
        item = check_value(item, "put", name, "item")
        return self._of(JobsContainer, name, "put").put(item, priority, delay, id, now)

    def claim(self, session: int, name: str, *, timeout: float | None = None,
              lease: float | None = None, now: float = 0.0) -> Job | Waiting:
        """Claim the next ready job for ``session`` under a lease of ``lease`` seconds
        (the queue's default if None).

        Returns the ``Job`` token now, or ``Waiting``: claimers are served in FIFO order
        and the ``Delivered`` event's value is the token. ``timeout`` as for
        :meth:`wait_pop_next`.
        """
        return self._of(JobsContainer, name, "claim").claim(session, timeout, lease, now)

    def put_many(self, name: str, items: Sequence[Any], *, priority: int = 0,
                 delay: float = 0.0, now: float = 0.0) -> list[str]:
        """Add a job for each of ``items`` (a list), in order, with fresh ids; returns
        the ids. All or none: every argument is checked before the first goes in."""
        items = check_items(items, "put_many", name)
        return self._of(JobsContainer, name, "put_many").put_many(items, priority, delay,
                                                                  now)

    def claim_many(self, session: int, name: str, n: int = 1, *,
                   timeout: float | None = None,
                   lease: float | None = None, now: float = 0.0) -> list[Job] | Waiting:
        """Claim up to ``n`` ready jobs for ``session`` at once, each under its own lease
        (a list of ``Job`` tokens, in the order ``claim`` would hand them out); with
        none ready, park as :meth:`claim` does, to be served with one."""
        return self._of(JobsContainer, name, "claim_many").claim_many(session, n, timeout,
                                                                      lease, now)

    def finish_claim(self, session: int, name: str, job: Job, result: Any = None, *,
                     result_ttl: float | None = None, timeout: float | None = None,
                     lease: float | None = None, now: float = 0.0) -> Job | Waiting:
        """Finish ``job`` with ``result`` and claim the next job for ``session``: a
        worker's loop in one command. Returns the next ``Job`` or ``Waiting`` (the
        finish stands). Raises LeaseLost (nothing done) if the claim is stale, and
        Empty (nothing done, not even the finish) if ``timeout`` is 0 and no job is
        ready."""
        result = check_value(result, "finish_claim", name, "result")
        return self._of(JobsContainer, name, "finish_claim").finish_claim(
            session, job, result, result_ttl, timeout, lease, now)

    def finish(self, name: str, job: Job, result: Any = None, *,
               result_ttl: float | None = None, now: float = 0.0) -> None:
        """Finish a claimed job with ``result``, kept for ``result_ttl`` seconds (the
        queue's default if None) and handed to ``result`` readers. Raises LeaseLost if
        the claim is stale."""
        result = check_value(result, "finish", name, "result")
        self._of(JobsContainer, name, "finish").finish(job, result, result_ttl, now)

    def cancel(self, name: str, job: Job, *, delay: float | None = None,
               reason: str | None = None, now: float = 0.0) -> None:
        """Give a claimed job back, as failed with ``reason`` (kept as its error, up to
        ``MAX_ERROR`` characters): ready again after ``delay`` seconds (None: the
        queue's backoff), or stalled once max_attempts claims have failed. Raises
        LeaseLost if the claim is stale."""
        check_reason(reason, "cancel", name)
        self._of(JobsContainer, name, "cancel").cancel(job, delay, reason, now)

    def stall(self, name: str, job: Job, reason: str | None = None) -> None:
        """Park a claimed job until someone retries it. Raises LeaseLost if stale."""
        check_reason(reason, "stall", name)
        self._of(JobsContainer, name, "stall").stall(job, reason)

    def retry(self, name: str, id: str, *, now: float = 0.0) -> None:
        """Make a stalled job ready again, with its attempts reset. Raises NotFound, or
        InvalidArgument if the job is not stalled."""
        self._of(JobsContainer, name, "retry").retry(id, now)

    def touch(self, name: str, job: Job, *, lease: float | None = None,
              now: float = 0.0) -> None:
        """Extend a claim: its deadline becomes ``now + lease``. Raises LeaseLost if the
        claim is stale."""
        self._of(JobsContainer, name, "touch").touch(job, lease, now)

    def result(self, session: int, name: str, id: str, *, timeout: float | None = None,
               now: float = 0.0) -> Popped | Waiting:
        """A finished job's ``(result, None)`` now, or ``Waiting`` for it to finish.

        Raises NotFound for an unknown, forgotten or retracted job and JobFailed for a
        stalled one (a parked reader hears it when the job stalls); ``timeout`` as for
        :meth:`wait_pop_next`.
        """
        return self._of(JobsContainer, name, "result").result(session, id, timeout, now)

    def retry_all(self, name: str, *, now: float = 0.0) -> int:
        """Retry every stalled job; returns how many."""
        return self._of(JobsContainer, name, "retry_all").retry_all(now)

    def state(self, name: str, id: str) -> JobState:
        """Job ``id``'s state. Raises NotFound once it is forgotten (or never existed)."""
        return self._of(JobsContainer, name, "state").state(id)

    def info(self, name: str, id: str) -> JobInfo:
        """Everything about job ``id`` (``JobInfo``). Raises NotFound once it is
        forgotten."""
        return self._of(JobsContainer, name, "info").info(id)

    # -- waiters, subscriptions, time and effects -------------------------------------

    def give_back(self, session: int, name: str, delivery: Event, *, now: float = 0.0
                  ) -> None:
        """Undo what a wait on container ``name`` handed to ``session``, whose caller is
        gone: afterwards it is as if the delivery had never been made.

        ``delivery`` is the served wait's event, from its ``Delivered`` effect or built
        from its immediate result: ``Event(name, "wnp_next", 0, value, metadata)``,
        ``Event(name, "wnp_key", key, value, metadata)``, ``Event(name, "get",
        priority, item, (priority, seq))`` or ``Event(name, "claimed", id, Job(id,
        item, attempt), None)`` (the key may be None where the result does not carry
        it). A list record goes back to the front; a map key is set back only if it is
        still absent (a newer value wins); a queue item goes back at its order key,
        past max_length if need be; a job claimed by ``session`` on that attempt is
        ready again at its old place with its attempt restored. If waiters are parked
        for it, the oldest is served it instead. No subscriber events are emitted.

        Raises InvalidArgument for another kind of delivery (a put, a result) or a
        malformed one, NotFound for an unknown container or session, WrongKind if the
        container is not of the delivery's kind, LeaseLost if the claim is no longer
        ``session``'s (its lease already came back: nothing is lost).
        """
        if not isinstance(delivery, Event):
            raise InvalidArgument(f"give_back on {name!r}: expected the delivery's Event, "
                                  f"not {delivery!r}")
        kind = GIVEN_BACK.get(delivery.name) if isinstance(delivery.name, str) else None
        if kind is None:
            raise InvalidArgument(f"give_back: a {delivery.name} delivery cannot be given "
                                  "back")
        container = self._get(name, "give_back")
        if container.kind is not kind:
            raise WrongKind(f"give_back on {name!r}: a {container.kind.value} makes no "
                            f"{delivery.name} deliveries")
        if delivery.container != name:
            raise InvalidArgument(f"give_back on {name!r}: the delivery is from "
                                  f"{delivery.container!r}")
        self._core.session(session)
        # A record comes back from the caller, so it is held to the rule for values
        # (a job's item never left the kernel; a queue's metadata is its order key).
        if kind is Kind.QUEUE:
            delivery = Event(name, delivery.name, delivery.key,
                             check_value(delivery.value, "give_back", name), delivery.metadata)
        elif kind is not Kind.JOBS:
            delivery = Event(name, delivery.name, delivery.key,
                             *_record(delivery.value, delivery.metadata, "give_back", name))
        container.give_back(session, delivery, now)

    def cancel_wait(self, session: int, waiter: int) -> bool:
        """Withdraw a parked waiter without effects.

        Returns False if it is no longer parked (already served, timed out or cancelled);
        raises NotFound if the session is not open.
        """
        core = self._core
        parked = core.session(session).waiters.get(waiter)
        if parked is None:
            return False
        self._containers[parked.container].remove_waiter(parked)
        core.forget(parked)
        return True

    def subscribe(self, session: int, name: str, *, start: int | None = None) -> int:
        """Subscribe ``session`` to a container's events; returns the subscription id.

        With ``start``, the records from that position on (negative counts from the end)
        are sent first, as push_back events (lists) or set events (maps, in key order),
        before any later change.
        """
        container = self._get(name, "subscribe")
        core = self._core
        owner = core.session(session)
        if start is not None:
            check_int("subscribe", name, "start", start)
        snapshot = container.snapshot(start) if start is not None else []
        sub = Subscription(core.next_id(), session, name)
        for event_name, record in snapshot:
            core.effects.append(Notified(
                session=session, subscription=sub.id,
                event=Event(name, event_name, record.key, record.value, record.metadata)))
        container.subscribers[sub.id] = sub
        owner.subscriptions[sub.id] = sub
        return sub.id

    def unsubscribe(self, session: int, subscription: int) -> None:
        """End a subscription without effects. Raises NotFound if the session has none
        with that id."""
        owner = self._core.session(session)
        sub = owner.subscriptions.pop(subscription, None)
        if sub is None:
            raise NotFound(f"unsubscribe: session {session} has no subscription "
                           f"{subscription!r}")
        del self._containers[sub.container].subscribers[sub.id]

    def next_deadline(self) -> float | None:
        """The earliest time at which ``advance`` has something to do, or None."""
        return self._core.timers.first

    def advance(self, now: float) -> None:
        """Fire every timer due at ``now``, in (deadline, arming) order: waiters time out
        with Empty, leases expire, delayed jobs become ready, results are forgotten."""
        core = self._core
        now = core.tick(now)
        while (due := core.timers.pop_due(now)) is not None:
            due.timer = None
            self._containers[due.container].fire(due)

    def take_effects(self) -> Sequence[Effect]:
        """Remove and return the queued effects, oldest first."""
        core = self._core
        effects = core.effects
        if not effects:
            return ()
        taken = effects.copy()
        effects.clear()
        return taken

    # -- the whole state --------------------------------------------------------------

    def dump_state(self, encode: Callable[[Any], Any] | None = None) -> dict[str, Any]:
        """The kernel's whole state as plain data in the versioned ``corral-state``
        format (docs/state-format.md), for snapshots and moving data between versions:
        a kernel given it by ``load_state`` behaves exactly as this one. The values
        callers stored (items, metadata, results) go through ``encode`` (None: as they
        are); the rest is JSON's types already. Pending effects are not included."""
        return _state.dump(self._core, self._containers, encode)

    def load_state(self, data: Any, decode: Callable[[Any], Any] | None = None) -> None:
        """Replace this kernel's whole state with ``data``, a ``dump_state`` of this
        format version or an older one (each migrated as it loads: there is none yet);
        ``decode`` undoes the dump's ``encode``.
        Pending effects are dropped. Raises InvalidArgument, leaving the kernel as it
        was, for data that is not a corral state, is of a newer version or does not
        hold together."""
        core, self._containers = _state.load(data, decode)
        self._core, self.effects, self.timers = core, core.effects, core.timers

    # -- invariants -------------------------------------------------------------------

    def _check(self) -> None:
        """Assert every cross-index invariant (for tests; O(size of the kernel))."""
        core = self._core
        parked: dict[int, Any] = {}
        for name, container in self._containers.items():
            assert container.name == name
            container.check()
            for queue in container.waiter_queues():
                for waiter in queue.values():
                    assert waiter.container == name
                    assert waiter.id not in parked, f"waiter {waiter.id} queued twice"
                    parked[waiter.id] = waiter
            for sub_id, sub in container.subscribers.items():
                assert sub_id == sub.id and sub.container == name
                assert core.sessions[sub.session].subscriptions[sub.id] is sub
        assert parked.keys() == core.waiters.keys(), "waiter index differs from queues"
        for waiter_id, waiter in core.waiters.items():
            assert parked[waiter_id] is waiter
            assert core.sessions[waiter.session].waiters[waiter_id] is waiter
        for session in core.sessions.values():
            for waiter_id in session.waiters:
                assert waiter_id in core.waiters
            for sub in session.subscriptions.values():
                assert self._containers[sub.container].subscribers[sub.id] is sub
        timed = {waiter.id for waiter in core.waiters.values() if waiter.timer is not None}
        armed_waiters = 0
        armed = core.timers.items()
        assert core.timers.first == (armed[0][0][0] if armed else None), "stale first timer"
        for key, payload in armed:
            assert payload.timer == key, "timer key differs from its payload's"
            if isinstance(payload, Waiter):
                assert payload.id in timed
                armed_waiters += 1
            self._containers[payload.container].check_timer(payload)
        assert armed_waiters == len(timed), "timer index differs from timed waiters"
        for session_id, session in core.sessions.items():
            for name, job_id in session.leases:
                jobs = self._containers[name]
                assert isinstance(jobs, JobsContainer)
                assert jobs.jobs[job_id].owner == session_id


def _record(value: Any, metadata: Any, op: str, name: str) -> tuple[Any, Any]:
    """A record's value and metadata as kept (``check_value``); None metadata is none."""
    return (check_value(value, op, name),
            None if metadata is None else check_value(metadata, op, name, "metadata"))
