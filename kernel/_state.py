"""The kernel's whole state as plain data, in a versioned format, and back.

A dump is dicts, lists, str, int, float, bool and None (what JSON holds) with a header
``{"format": "corral-state", "version": 1}``; docs/state-format.md describes every key.
It holds what the calls after it may refer to: containers with their records in order,
options, properties and metrics, every job with its lease, deadline, result and error,
parked waiters, sessions with their claims, subscriptions, every armed timer with its
tie-breaking sequence number, the clock, the id counters and the jitter generator. So a
kernel loaded from a dump behaves exactly as the one dumped. Pending effects are not
state: they are output the adapter takes after each command.

The values callers stored (items, metadata, results) go through ``encode`` and
``decode``, which a journal uses to wrap bytes and JSON values; the kernel's own
fields are plain already. An older version would be migrated, one version at a time,
before it is loaded (there is none yet). What is loaded is checked: every value as a
call that stores it checks it, every reference, and the kernel's own invariants.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from ._containers import Container, ListContainer, MapContainer
from ._core import Core, Session, Subscription
from ._errors import InvalidArgument
from ._feeds import FeedContainer, SortedFeedContainer
from ._jobs import JobRecord, JobsContainer
from ._model import BUCKETS, JobState, Kind, Tally
from ._queues import QueueContainer
from ._values import check_value
from ._waiters import Waiter, WaiterQueue

__all__ = ["FORMAT", "MIGRATIONS", "VERSION", "dump", "load", "migrate"]

FORMAT = "corral-state"
VERSION = 1  # the version this corral writes; it reads this one and every older one

Codec = Callable[[Any], Any]
Timed = list[tuple[tuple[float, int], Any]]  # armed timers: (key, waiter or job)


def _same(value: Any) -> Any:
    return value


def _timer(key: Any) -> tuple[float, int] | None:
    return None if key is None else (key[0], key[1])


# -- dumping ----------------------------------------------------------------------------------


def dump(core: Core, containers: dict[str, Any], encode: Codec | None) -> dict[str, Any]:
    """The state of a kernel made of ``core`` and ``containers`` (see the module)."""
    enc = encode or _same
    # Ids are handed out in order, so by id is the order subscriptions were made (and
    # so each container's and each session's order).
    subscriptions = sorted((sub for c in containers.values()
                            for sub in c.subscribers.values()), key=lambda s: s.id)
    return {
        "format": FORMAT, "version": VERSION,
        "now": core.now, "last_id": core._last_id, "random": core._rng,
        "timer_seq": core.timers.seq,
        "sessions": [{"id": s.id, "leases": [list(lease) for lease in s.leases]}
                     for s in core.sessions.values()],
        "waiters": [_dump_waiter(w, enc) for w in core.waiters.values()],
        "subscriptions": [{"id": s.id, "session": s.session, "container": s.container}
                          for s in subscriptions],
        "containers": [_dump_container(c, enc) for c in containers.values()],
    }


def _dump_waiter(waiter: Waiter, enc: Codec) -> dict[str, Any]:
    payload = waiter.payload
    if waiter.op == "put":  # a queue's putter brings its item and priority
        payload = [enc(payload[0]), payload[1]]
    return {"id": waiter.id, "session": waiter.session, "op": waiter.op,
            "container": waiter.container, "key": waiter.key, "payload": payload,
            "since": waiter.since, "timer": _list(waiter.timer)}


def _list(key: tuple[float, int] | None) -> list[Any] | None:
    return None if key is None else list(key)


def _ids(queue: WaiterQueue | None) -> list[int]:
    return list(queue or ())


def _tally(tally: Tally) -> dict[str, Any]:
    return {"counts": list(tally.counts), "total": tally.total}


def _dump_container(c: Any, enc: Codec) -> dict[str, Any]:
    data: dict[str, Any] = {"name": c.name, "kind": c.kind.value, "options": c.options(),
                            "properties": dict(c.properties),
                            "metrics": {"added": c.added, "taken": c.taken}}
    if isinstance(c, ListContainer):
        data["records"] = [[enc(v), enc(m)] for v, m in zip(c.values, c.metadata,
                                                            strict=True)]
        data["waiters"] = _ids(c.waiters)
    elif isinstance(c, MapContainer):
        data["records"] = [[k, enc(v), enc(m)] for k, (v, m) in c.records.items()]
        data["waiters"] = [[key, _ids(queue)] for key, queue in c.waiters.items()]
    elif isinstance(c, FeedContainer):
        data["last_id"] = c.last_id
        data["records"] = [[id, enc(item)] for id, item in c.entries.items()]
    elif isinstance(c, SortedFeedContainer):
        data["last_id"] = c.last_id
        data["records"] = [[id, enc(c.entries[id])] for id in c.order]
    elif isinstance(c, QueueContainer):
        data["arrivals"] = c.arrivals
        data["records"] = [[-negative, seq, enc(item)]
                           for (negative, seq), item in c.entries.items()]
        data["getters"] = _ids(c.getters)
        data["putters"] = _ids(c.putters)
    else:
        assert isinstance(c, JobsContainer)
        data["last_id"] = c.last_id
        data["arrivals"] = c.arrivals
        data["metrics"].update(finished=c.finished, failed=c.failed, expired=c.expired,
                               stalled=c.stalled, waited=_tally(c.waited),
                               ran=_tally(c.ran))
        data["records"] = [  # rows, not objects: a long queue's dump is half as big
            [r.id, enc(r.item), r.priority, r.state.value, list(r.order), r.attempt,
             r.owner, r.reason, enc(r.result), r.created, r.claimed, r.ready_since,
             r.ended, _list(r.timer), _ids(r.result_waiters)] for r in c.jobs.values()]
        data["claimers"] = _ids(c.claimers)
    return data


# -- migrations -------------------------------------------------------------------------------


#: Each version's migration to the next: a chain, applied in turn up to VERSION. Empty
#: while version 1 is the only one there has been; a change to the format adds a
#: version, its migration here, and a fixture of the old version in tests/data/.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def migrate(data: Any) -> dict[str, Any]:
    """``data`` in the current version. Raises InvalidArgument if it is not a corral
    state or is of a version newer than this one."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InvalidArgument(f'not a corral state: it has no {{"format": "{FORMAT}"}} '
                              "header")
    version = data.get("version")
    if type(version) is not int or not 1 <= version:
        raise InvalidArgument(f"corral state: version {version!r} is not a version")
    if version > VERSION:
        raise InvalidArgument(f"corral state version {version} is newer than this corral "
                              f"reads (version {VERSION}): load it with a newer corral")
    state: dict[str, Any] = data
    while version < VERSION:
        state = MIGRATIONS[version](state)
        version += 1
    return state


# -- loading ----------------------------------------------------------------------------------


# What a document that does not hold together raises while it is loaded or checked.
_BROKEN = (KeyError, IndexError, TypeError, ValueError, AttributeError, ArithmeticError,
           AssertionError)


def load(data: Any, decode: Codec | None) -> tuple[Core, dict[str, Any]]:
    """A kernel's core and containers from a dump of any version this one reads.
    Raises InvalidArgument for one that is not a corral state, is newer, holds a value
    corral does not keep (``check_value``) or does not hold together: every id it
    refers to must be there (sessions, waiters, containers, jobs, leases), every
    waiter queued once where its call parked it, every timer armed once."""
    data = migrate(data)
    try:
        core, containers = _load(data, decode or _same)
        _check(core, containers)
    except _BROKEN as error:
        raise InvalidArgument(f"corral state version {data['version']} does not hold "
                              f"together: {type(error).__name__}: {error}") from None
    return core, containers


class _Loading:
    """What loading carries from container to container."""

    def __init__(self, core: Core, decode: Codec) -> None:
        self.core = core
        self.decode = decode
        self.timed: Timed = []  # armed timers: (key, waiter or job)
        self.queued: set[int] = set()  # the waiters put in a queue so far

    def value(self, value: Any, name: str, role: str = "value") -> Any:
        """A stored value, decoded and checked as a call that stores it checks it."""
        return check_value(self.decode(value), "load_state", name, role)

    def queue(self, ids: list[int], name: str, op: str, key: Any = None) -> WaiterQueue:
        """The waiters ``ids``, each parked by ``op`` on ``name`` (and ``key``)."""
        queue = WaiterQueue()
        for id in ids:
            waiter = self.core.waiters[id]
            if (waiter.container, waiter.op, waiter.key) != (name, op, key):
                raise ValueError(f"waiter {id} ({waiter.op} on {waiter.container!r}) is "
                                 f"queued for {op} on {name!r}")
            if id in self.queued:
                raise ValueError(f"waiter {id} is queued twice")
            self.queued.add(id)
            queue.append(waiter)
        return queue

    def arm(self, key: Any, payload: Any) -> tuple[float, int] | None:
        timer = _timer(key)
        if timer is not None:
            _number(timer[0], "a deadline")
            _int(timer[1], "a timer's seq")
            self.timed.append((timer, payload))
        return timer


def _int(value: Any, what: str) -> int:
    if type(value) is not int:
        raise TypeError(f"{what} is an int, not {value!r}")
    result: int = value
    return result


def _number(value: Any, what: str) -> Any:
    """A time or duration: an int or float, not NaN (endless ones are Infinity)."""
    if type(value) not in (int, float) or value != value:
        raise TypeError(f"{what} is a number, not {value!r}")
    return value


def _maybe(check: Callable[[Any, str], Any], value: Any, what: str) -> Any:
    return None if value is None else check(value, what)


def _str(value: Any, what: str) -> str:
    if type(value) is not str:
        raise TypeError(f"{what} is a str, not {value!r}")
    result: str = value
    return result


def _load(data: dict[str, Any], dec: Codec) -> tuple[Core, dict[str, Any]]:
    core = Core()
    core.now = _number(data["now"], "now")
    core._last_id = _int(data["last_id"], "last_id")
    core._rng = _int(data["random"], "random")
    if not 0 <= core._rng < 1 << 64:
        raise ValueError(f"random {core._rng} is not a 64-bit state")
    loading = _Loading(core, dec)
    for s in data["sessions"]:
        session = Session(_int(s["id"], "a session id"))
        if core.sessions.setdefault(session.id, session) is not session:
            raise ValueError(f"session {session.id} appears twice")
        session.leases = {(_str(name, "a lease's job queue"), _str(id, "a job id")): None
                          for name, id in s["leases"]}
    for w in data["waiters"]:
        op, name = _str(w["op"], "a waiter's op"), _str(w["container"], "a container")
        payload = w["payload"]
        if op == "put":  # a queue's putter: its item and priority
            payload = (loading.value(payload[0], name, "item"),
                       _int(payload[1], "a priority"))
        elif op == "claim":  # a claimer: its lease
            payload = _number(payload, "a lease")
        waiter = Waiter(_int(w["id"], "a waiter id"), w["session"], op, name, w["key"],
                        payload, None, _number(w["since"], "since"))
        if waiter.id in core.waiters:
            raise ValueError(f"waiter {waiter.id} appears twice")
        waiter.timer = loading.arm(w["timer"], waiter)
        core.waiters[waiter.id] = core.sessions[waiter.session].waiters[waiter.id] = waiter
    containers: dict[str, Any] = {}
    for c in data["containers"]:
        container = _LOADERS[Kind(c["kind"])](c, loading)
        if container.name in containers:
            raise ValueError(f"container {container.name!r} appears twice")
        container.properties = {_str(k, "a property"): _str(v, "a property")
                                for k, v in c["properties"].items()}
        container.added = _int(c["metrics"]["added"], "added")
        container.taken = _int(c["metrics"]["taken"], "taken")
        containers[container.name] = container
    if loading.queued != core.waiters.keys():
        raise ValueError(f"waiters {sorted(core.waiters.keys() - loading.queued)} are in "
                         "no container's queue")
    for s in data["subscriptions"]:
        sub = Subscription(_int(s["id"], "a subscription id"), s["session"], s["container"])
        subscribers = containers[sub.container].subscribers
        if sub.id in subscribers:
            raise ValueError(f"subscription {sub.id} appears twice")
        subscribers[sub.id] = core.sessions[sub.session].subscriptions[sub.id] = sub
    core.timers.restore(loading.timed, _int(data["timer_seq"], "timer_seq"))
    return core, containers


def _check(core: Core, containers: dict[str, Any]) -> None:
    """Raise ValueError unless the loaded kernel holds together: the cross-references
    ``_load`` did not already follow, checked without ``assert`` (which ``-O`` drops);
    then the kernel's own invariants (``Kernel._check``), where asserts are on."""
    ids = [*core.sessions, *core.waiters,
           *(id for c in containers.values() for id in c.subscribers)]
    if ids and max(ids) > core._last_id:
        raise ValueError(f"id {max(ids)} is past last_id {core._last_id}")
    for session in core.sessions.values():
        for name, id in session.leases:
            jobs = containers[name]
            if not isinstance(jobs, JobsContainer) or jobs.jobs[id].owner != session.id:
                raise ValueError(f"session {session.id} holds a lease on job {id} of "
                                 f"{name!r}, which it does not own")
    for container in containers.values():
        if isinstance(container, JobsContainer):
            for record in container.jobs.values():
                if record.owner is None:
                    continue
                if record.state is not JobState.CLAIMED:
                    raise ValueError(f"job {record.id} of {container.name!r} is "
                                     f"{record.state.value}, yet owned")
                if (container.name, record.id) not in core.sessions[record.owner].leases:
                    raise ValueError(f"job {record.id} of {container.name!r} is owned by "
                                     f"session {record.owner}, which holds no lease on it")
                if record.timer is None:
                    raise ValueError(f"claimed job {record.id} of {container.name!r} has "
                                     "no deadline")
    from ._kernel import Kernel  # which imports this module

    kernel = Kernel()
    kernel._core, kernel._containers = core, containers
    kernel._check()


def _new(cls: type[Any], c: dict[str, Any], core: Core) -> Any:
    container = cls(_str(c["name"], "a container name"), core)
    if not container.name:
        raise ValueError("a container name is empty")
    container.configure(c["options"])
    return container


def _load_list(c: dict[str, Any], loading: _Loading) -> Container:
    container: ListContainer = _new(ListContainer, c, loading.core)
    name = container.name
    container.values = deque(loading.value(v, name) for v, _ in c["records"])
    container.metadata = deque(loading.value(m, name, "metadata") for _, m in c["records"])
    container.waiters = loading.queue(c["waiters"], name, "wait_pop_next")
    return container


def _load_map(c: dict[str, Any], loading: _Loading) -> Container:
    container: MapContainer = _new(MapContainer, c, loading.core)
    name = container.name
    for key, value, metadata in c["records"]:
        container.records[_str(key, "a map key")] = (loading.value(value, name),
                                                    loading.value(metadata, name,
                                                                  "metadata"))
    container.waiters = {_str(key, "a map key"): loading.queue(ids, name, "wait_pop_key",
                                                               key)
                         for key, ids in c["waiters"]}
    return container


def _load_feed(c: dict[str, Any], loading: _Loading) -> Container:
    container: FeedContainer = _new(FeedContainer, c, loading.core)
    container.last_id = _int(c["last_id"], "last_id")
    container.entries = OrderedDict((_str(id, "a feed id"),
                                     loading.value(item, container.name, "item"))
                                    for id, item in c["records"])
    return container


def _load_sorted_feed(c: dict[str, Any], loading: _Loading) -> Container:
    container: SortedFeedContainer = _new(SortedFeedContainer, c, loading.core)
    container.last_id = _int(c["last_id"], "last_id")
    for id, item in c["records"]:
        if not 0 < _int(id, "a sorted feed id") <= container.last_id or \
                id in container.entries:
            raise ValueError(f"sorted feed id {id} is taken or past last_id")
        container.entries[id] = loading.value(item, container.name, "item")
        container.order.append(id)
    return container


def _load_queue(c: dict[str, Any], loading: _Loading) -> Container:
    container: QueueContainer = _new(QueueContainer, c, loading.core)
    container.arrivals = _int(c["arrivals"], "arrivals")
    for priority, seq, item in c["records"]:  # in order: each goes at its lane's end
        key = (-_int(priority, "a priority"), _int(seq, "a seq"))
        if key in container.entries:
            raise ValueError(f"queue item {key} appears twice")
        container.entries[key] = loading.value(item, container.name, "item")
    container.getters = loading.queue(c["getters"], container.name, "get")
    container.putters = loading.queue(c["putters"], container.name, "put")
    return container


def _load_jobs(c: dict[str, Any], loading: _Loading) -> Container:
    container: JobsContainer = _new(JobsContainer, c, loading.core)
    name = container.name
    container.last_id = _int(c["last_id"], "last_id")
    container.arrivals = _int(c["arrivals"], "arrivals")
    metrics = c["metrics"]
    for metric in ("finished", "failed", "expired", "stalled"):
        setattr(container, metric, _int(metrics[metric], metric))
    for metric in ("waited", "ran"):
        tally = getattr(container, metric)
        tally.counts = [_int(n, metric) for n in metrics[metric]["counts"]]
        tally.total = _number(metrics[metric]["total"], metric)
        if len(tally.counts) != len(BUCKETS) + 1:
            raise ValueError(f"{metric} has {len(tally.counts)} buckets, not "
                             f"{len(BUCKETS) + 1}")
    ready = []
    for (id, item, priority, state, order, attempt, owner, error, result, created,
         claimed, ready_since, ended, timer, readers) in c["records"]:
        record = JobRecord(
            _str(id, "a job id"), name, loading.value(item, name, "item"),
            _int(priority, "a priority"), JobState(state),
            (_int(order[0], "an order"), _int(order[1], "an order")),
            _int(attempt, "an attempt"), _maybe(_int, owner, "an owner"),
            _maybe(_str, error, "an error"), loading.value(result, name, "result"),
            _number(created, "created"), _maybe(_number, claimed, "claimed"),
            _number(ready_since, "ready_since"), _maybe(_number, ended, "ended"), None,
            loading.queue(readers, name, "result", id) if readers else None)
        if record.id in container.jobs:
            raise ValueError(f"job {record.id} appears twice")
        record.timer = loading.arm(timer, record)
        container.jobs[record.id] = record
        if record.state is JobState.READY:
            ready.append(record)
    for record in sorted(ready, key=lambda r: r.order):  # so each goes at a lane's end
        if record.order in container.ready:
            raise ValueError(f"two ready jobs have the order {list(record.order)}")
        container.ready[record.order] = record
    container.claimers = loading.queue(c["claimers"], name, "claim")
    return container


_LOADERS: dict[Kind, Callable[[dict[str, Any], _Loading], Container]] = {
    Kind.LIST: _load_list, Kind.MAP: _load_map, Kind.FEED: _load_feed,
    Kind.SORTED_FEED: _load_sorted_feed, Kind.QUEUE: _load_queue, Kind.JOBS: _load_jobs,
}
