"""corral's containers kept in Redis (>= 7.0) or Valkey: ``RedisKernel``.

A ``RedisKernel`` has the kernel's methods and answers as the kernel does, so the pure
kernel is its oracle (tests/test_redis.py drives both with the same clock and compares
every result, error and effect). Each command is one call of the ``corral`` Redis
Function (``lua/*.lua``), which the server applies atomically: due timers first, then
the command, then the hand-off to the oldest waiters, in the same call. All of a
container's keys share one hash tag, its escaped name, so Redis Cluster can hold them.

A wait that cannot complete parks a waiter in the container's FIFO; whoever later
serves it (any process) pushes its outcome to the waiting session's mailbox, a list
this object drains into ``Delivered``/``Cancelled`` effects (``take_effects``).

Every kind is here, with every command, FIFO waits with timeouts and withdrawal,
properties and statistics; job queues with leases, the failure policy and results;
subscriptions, read from each container's event stream (``subscribe``, ``events``);
session liveness (``heartbeat``: a session that stops beating ends as if closed).
acknowledgement by replicas (``require_replicas``). ``connect("redis://...")`` gives
the thread facade on it (``corral.adapters._redis_client``), ``open_client`` the trio
facade.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import redis
from redis.cluster import RedisCluster

from corral.kernel import (
    AlreadyExists,
    Cancelled,
    Closed,
    ContainerStatistics,
    CorralError,
    Delivered,
    Effect,
    Empty,
    Event,
    InvalidArgument,
    Job,
    JobFailed,
    JobInfo,
    JobState,
    JobStatistics,
    Kernel,
    Kind,
    LeaseLost,
    LimitExceeded,
    NotFound,
    Notified,
    Popped,
    Record,
    Unsubscribed,
    Waiting,
    WrongKind,
    check_value,
)
from corral.kernel._containers import check_int
from corral.kernel._core import check_timeout
from corral.kernel._jobs import bounded_error, check_seconds, claimed_token
from corral.kernel._values import check_items, check_reason

from . import _library

__all__ = ["NotReplicated", "RedisKernel", "mailbox_key", "unpack"]

# The corral library: its sources in order, one Lua chunk (each file's locals serve the
# files after it). lib.lua starts it with the library's header.
SOURCES = ("lib", "lists", "maps", "queues", "feeds", "sorted", "jobs", "main")
LIBRARY = "\n".join((Path(__file__).parent / "lua" / f"{name}.lua").read_text(
    encoding="utf-8") for name in SOURCES)
_ERRORS: dict[str, type[Exception]] = {cls.__name__: cls for cls in (
    AlreadyExists, Closed, Empty, InvalidArgument, JobFailed, LeaseLost, LimitExceeded, NotFound,
    WrongKind, AssertionError)}


# The commands that only read: they are not waited for (``acknowledge``).
_READS = frozenset({"count", "get", "query", "keys", "ids", "items", "statistics", "state",
                    "info", "kind", "get_property", "check", "tick"})


class NotReplicated(CorralError):
    """A command was applied on the primary, but fewer replicas than ``acknowledge``
    asks for confirmed it in time: a failover now could lose it."""


_MOST = 1 << 31  # claim_many's n on the wire: more than any queue holds ready

_JOB_COUNTS = ("ready", "delayed", "claimed", "stalled", "finished", "retracted",
               "result_waiters")  # a job queue's statistics after records and waiters


_SNAPSHOT_EVENTS = {Kind.LIST: "push_back", Kind.MAP: "set", Kind.FEED: "publish",
                    Kind.SORTED_FEED: "publish", Kind.QUEUE: "put", Kind.JOBS: "put"}


@attrs.define(eq=False)
class _Subscription:
    """A subscription of this object's: whose, to what, and how far it has read."""

    session: int
    container: str
    last_id: bytes  # the last stream entry read
    last_n: int  # and its event number


def _escape(name: str) -> str:
    """A container name as a hash tag's content: its braces can't end the tag early."""
    return name.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


def mailbox_key(prefix: str, name: str, session: int) -> str:
    """Where the outcomes of ``session``'s waits on container ``name`` arrive."""
    return f"{prefix}:{{{_escape(name)}}}:mb:{session}"


def _pack(op: str, name: str, value: Any, metadata: Any = None, role: str = "item"
          ) -> str:
    """The ``role`` argument of ``op`` on ``name`` and its metadata, checked as the kernel
    checks them (``check_value``), as Redis keeps them: the JSON pair, then (if any) the
    places in it that hold bytes, base64'd, since JSON has none."""
    pair = [check_value(value, op, name, role),
            None if metadata is None else check_value(metadata, op, name, "metadata")]
    raw = [i for i in (0, 1) if type(pair[i]) is bytes]
    for i in raw:
        pair[i] = base64.b64encode(pair[i]).decode()
    return json.dumps([*pair, raw] if raw else pair, separators=(",", ":"))


def _option_text(value: Any) -> str:
    """A container option as Redis keeps it: a bool as 1 or 0, None as "", a float
    exactly."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return repr(value) if isinstance(value, float) else str(value)


def _seconds(value: float) -> str:
    return "inf" if value == math.inf else repr(float(value))


def _reason(reason: str | None) -> str:
    """A failure's text for the wire: "" for none, else "=" and the text, bounded."""
    return "" if reason is None else "=" + (bounded_error(reason) or "")


def unpack(packed: bytes | str) -> tuple[Any, Any]:
    """A value and its metadata as ``_pack`` kept them."""
    pair = json.loads(packed)
    for i in pair[2] if len(pair) > 2 else ():
        pair[i] = base64.b64decode(pair[i])
    return pair[0], pair[1]


class RedisKernel:
    """The kernel's commands on Redis, for every kind (see the module docstring).

    ``client`` is a ``redis.Redis``; ``prefix`` starts every key (one per application,
    or per test); ``clock``: "caller" takes the ``now`` each command is given (the
    kernel's contract, for tests against the kernel), "server" reads the Redis
    server's clock, the one every process shares."""

    def __init__(self, client: redis.Redis | RedisCluster, *, prefix: str = "co",
                 clock: str = "server") -> None:
        if clock not in ("caller", "server"):
            raise InvalidArgument(f"clock is 'caller' or 'server', not {clock!r}")
        self._redis = client
        self._prefix = prefix
        self._caller_clock = clock == "caller"
        self._containers: dict[str, list[str]] = {}  # name -> its keys
        self._kinds: dict[str, Kind] = {}
        self._sessions: set[int] = set()
        self._waits: dict[int, tuple[str, str, int]] = {}  # waiter -> container, id, session
        self._waiters: dict[tuple[str, str], int] = {}  # (container, id) -> waiter
        self._last_waiter = 0
        self._served_keys: dict[int, str | None] = {}  # waiter -> the map key it waits on
        self.effects: list[Effect] = []
        self._subscriptions: dict[int, _Subscription] = {}
        #: (replicas, timeout): every command that may change a container waits until
        #: that many replicas have it (``WAITAOF``: in their append-only files, where
        #: the server has it; else ``WAIT``: received), or raises NotReplicated.
        self.acknowledge: tuple[int, float] | None = None
        self._waitaof = False
        #: Seconds a session that parks a waiter is kept alive, as ``heartbeat`` would
        #: (None: not at all), in the same call: a facade that heartbeats its waits
        #: sets it.
        self.alive: float | None = None
        self._last_subscription = 0
        _library.load(client)

    # -- plumbing ---------------------------------------------------------------------

    def _keys(self, name: str) -> list[str]:
        keys = self._containers.get(name)
        if keys is None:
            if not isinstance(name, str) or not name:
                raise InvalidArgument(f"a container name is a non-empty str, not {name!r}")
            keys = [f"{self._prefix}:{{{_escape(name)}}}:meta"]  # (the Lua names the rest)
            self._containers[name] = keys
        return keys

    def _call(self, name: str, op: str, *args: Any, now: float | None = None,
              parks: bool = False) -> Any:
        stamp = "server"  # the server's clock; the caller's, or the container's last
        if self._caller_clock:
            stamp = "" if now is None else repr(float(now))
        if parks and self.alive is not None:  # a session that parks beats at once
            stamp = f"{stamp}|{self.alive!r}"
        try:
            if self.acknowledge is None or op in _READS:
                return _library.fcall(self._redis, self._keys(name), op, stamp, *args)
            return self._acknowledged(name, op, stamp, *args)
        except redis.ResponseError as error:
            text = str(error)
            if text.startswith("corral:"):
                cls, _, message = text[7:].partition(" ")
                if message == f"{op}: no container":  # (or no longer): not ours to visit
                    self._containers.pop(name, None)
                    self._kinds.pop(name, None)
                raise _ERRORS.get(cls, CorralError)(message) from None
            raise

    def _acknowledged(self, name: str, *args: Any) -> Any:
        """A command that may change the container, then, on the same connection in
        the same write, the wait for its replicas (``acknowledge``)."""
        assert self.acknowledge is not None
        replicas, timeout = self.acknowledge
        wait = ("WAITAOF", 0, replicas) if self._waitaof else ("WAIT", replicas)
        pipe = self._redis.pipeline(transaction=False)
        pipe.fcall("corral", 1, *self._keys(name), *args)
        pipe.execute_command(*wait, max(1, int(timeout * 1000)))
        answer, acked = pipe.execute(raise_on_error=False)
        if isinstance(answer, redis.ResponseError) and str(answer).startswith(
                _library.MISSING):
            _library.load(self._redis)
            return self._acknowledged(name, *args)
        if isinstance(answer, Exception):
            raise answer
        got = acked[1] if isinstance(acked, list) else acked
        if isinstance(got, Exception) or int(got) < replicas:
            raise NotReplicated(f"{args[0]} on {name!r} was applied, but {got} of "
                                f"{replicas} replicas acknowledged it within {timeout} s")
        return answer

    def _collect(self) -> None:
        """Move the outcomes in this object's sessions' mailboxes into ``effects``
        (those of containers it still waits on too, though deleted meanwhile)."""
        names = dict.fromkeys([*self._containers, *(c for c, _, _ in self._waits.values())])
        for name in names:
            base = self._keys(name)[0][:-5]
            for session in sorted(self._sessions):
                messages: list[bytes] = self._redis.lpop(  # type: ignore[assignment]
                    f"{base}:mb:{session}", 1000) or []
                for message in messages:
                    self._effect(name, session, message.decode())

    def _effect(self, name: str, session: int, message: str) -> None:
        kind, id, rest = message.split("|", 2)
        waiter = self._waiters.pop((name, id))
        del self._waits[waiter]
        if kind in ("G", "P"):  # a queue's item to a getter, or a putter's admitted
            self._served_keys.pop(waiter)
            if kind == "G":
                priority, seq, packed = rest.split("|", 2)
                order: tuple[int, int] | None = (int(priority), int(seq))
            else:
                priority, packed = rest.split("|", 1)
                order = None
            item, _ = unpack(packed)
            self.effects.append(Delivered(session, waiter, Event(
                name, "get" if kind == "G" else "put", int(priority), item, order)))
        elif kind == "J":  # a job claimed: its attempt, its item, then its id
            attempt, _, rest = rest.partition("|")
            packed, _, id = rest.partition("\n")
            self._served_keys.pop(waiter)
            job = Job(id, unpack(packed)[0], int(attempt))
            self.effects.append(Delivered(session, waiter, Event(
                name, "claimed", id, job, None)))
        elif kind == "R":  # a job's result
            self.effects.append(Delivered(session, waiter, Event(
                name, "finished", self._served_keys.pop(waiter), unpack(rest)[0], None)))
        elif kind == "D":
            value, metadata = unpack(rest)
            key = self._served_keys.pop(waiter)
            self.effects.append(Delivered(session, waiter, Event(
                name, "wnp_next" if key is None else "wnp_key", 0 if key is None else key,
                value, metadata)))
        else:
            self._served_keys.pop(waiter)
            cls, _, text = rest.partition("|")
            self.effects.append(Cancelled(session=session, waiter=waiter,
                                          error=_ERRORS.get(cls, CorralError)(text)))

    # -- sessions and containers --------------------------------------------------------

    def open_session(self) -> int:
        session = int(self._redis.incr(f"{self._prefix}:sessions"))
        self._sessions.add(session)
        return session

    def close_session(self, session: int, *, now: float = 0.0) -> None:
        self.close_session_left(session, now=now)

    def close_session_left(self, session: int, *, now: float = 0.0) -> list[str]:
        """Close a session as ``close_session`` does; what its mailboxes held unread,
        the outcomes of waits its caller may not know of (a parking call whose answer
        was lost), as mailbox messages."""
        if session not in self._sessions:
            raise NotFound(f"no open session {session!r}")
        left: list[str] = []
        for name in list(self._containers):
            with contextlib.suppress(NotFound):  # deleted meanwhile
                left += [message.decode() for message in self._call(
                    name, "close_session", session, now=now)]
        for waiter, (_, _, owner) in list(self._waits.items()):
            if owner == session:
                container, id, _ = self._waits.pop(waiter)
                del self._waiters[container, id], self._served_keys[waiter]
        for sid, sub in list(self._subscriptions.items()):
            if sub.session == session:  # (Redis dropped them with the session)
                del self._subscriptions[sid]
        self._sessions.discard(session)
        return left

    def create(self, name: str, kind: Kind | str, **options: Any) -> Kind:
        try:
            kind = Kind(kind)
        except ValueError:
            raise InvalidArgument(f"create {name!r}: unknown kind {kind!r}") from None
        self._keys(name)  # InvalidArgument for a bad name
        given = {key: value for key, value in options.items() if value is not None}
        problem, config = "", {}
        try:  # the kernel's own checks, on a scratch kernel: Redis answers alike
            scratch = Kernel()
            scratch.create(name, kind, **given)
            config = scratch.options(name)
        except InvalidArgument as error:
            problem = str(error)
        texts = {key: _option_text(value) for key, value in config.items()}
        pairs = [text for key in given if key in texts for text in (key, texts[key])]
        made = Kind(self._call(name, "create", kind.value, name, problem, len(pairs) // 2,
                               *pairs, *(text for item in texts.items() for text in item)
                               ).decode())
        self._kinds[name] = made
        return made

    def _kind(self, name: str) -> Kind:
        kind = self._kinds.get(name)
        if kind is None:
            kind = self._kinds[name] = Kind(self._call(name, "kind").decode())
        return kind

    def statistics(self, name: str) -> ContainerStatistics:
        *counts, subscribers = self._call(name, "statistics")
        if self._kind(name) is Kind.JOBS:
            return JobStatistics(kind=Kind.JOBS, records=counts[0], waiters=counts[1],
                                 subscribers=subscribers, **dict(zip(
                                     _JOB_COUNTS, counts[2:], strict=True)))
        records, waiters = counts
        return ContainerStatistics(kind=self._kind(name), records=records, waiters=waiters,
                                   subscribers=subscribers)

    def set_property(self, name: str, key: str, value: str) -> None:
        if not isinstance(value, str):
            raise InvalidArgument(f"set_property on {name!r}: a property is a str")
        self._call(name, "set_property", key, value)

    def get_property(self, name: str, key: str) -> str:
        return str(self._call(name, "get_property", key).decode())

    # -- lists and maps -----------------------------------------------------------------

    def count(self, name: str) -> int:
        return int(self._call(name, "count"))

    def push_back(self, name: str, value: Any, metadata: Any = None) -> None:
        self._call(name, "push_back", _pack("push_back", name, value, metadata, "value"))

    def push_front(self, name: str, value: Any, metadata: Any = None) -> None:
        self._call(name, "push_front", _pack("push_front", name, value, metadata, "value"))

    @staticmethod
    def _record(answer: Sequence[Any], int_key: bool = False) -> Record:
        key, packed = answer
        value, metadata = unpack(packed)
        if isinstance(key, bytes) and not int_key:
            return Record(key.decode(), value, metadata)
        return Record(int(key), value, metadata)

    def pop_front(self, name: str) -> Record:
        return self._record(self._call(name, "pop_front"))

    def pop_back(self, name: str) -> Record:
        return self._record(self._call(name, "pop_back"))

    def _key(self, op: str, name: str, key: Any) -> Any:
        """A record's key as the kind takes it: a list's int index, a map's str key."""
        if self._kind(name) is Kind.MAP:
            if not isinstance(key, str):
                raise InvalidArgument(f"{op} on {name!r}: a map key must be a str, not "
                                      f"{key!r}")
            return key
        return self._index(op, name, key)

    def get(self, name: str, key: Any) -> Record:
        if self._kind(name) is Kind.JOBS:
            if not isinstance(key, str):
                raise NotFound(f"get on {name!r}: no job {key!r}")
            return self._record(self._call(name, "get", "k", key))
        if self._kind(name) is Kind.SORTED_FEED:
            return self._record(self._call(name, "get", "k", self._id("get", name, key)),
                                int_key=True)
        if self._kind(name) is Kind.FEED:
            if not isinstance(key, str):
                raise NotFound(f"get on {name!r}: no item {key!r}")
            return self._record(self._call(name, "get", "k", key))
        if self._kind(name) is Kind.MAP:
            if isinstance(key, int) and not isinstance(key, bool):
                return self._record(self._call(name, "get", "i", key))
            return self._record(self._call(name, "get", "k", self._key("get", name, key)))
        return self._record(self._call(name, "get", self._index("get", name, key)))

    def set(self, name: str, key: Any, value: Any, metadata: Any = None) -> None:
        packed = _pack("set", name, value, metadata, "value")
        self._call(name, "set", self._key("set", name, key), packed)

    def insert(self, name: str, key: Any, value: Any, metadata: Any = None) -> None:
        packed = _pack("insert", name, value, metadata, "value")
        self._call(name, "insert", self._key("insert", name, key), packed)

    def delete(self, name: str, key: Any) -> None:
        self._call(name, "delete", self._key("delete", name, key))

    def keys(self, name: str) -> list[str]:
        return [key.decode() for key in self._call(name, "keys")]

    def query(self, name: str, start: int = 0, end: int | None = None) -> list[Record]:
        start = self._index("query", name, start)
        flat = self._call(name, "query", start,
                          "" if end is None else self._index("query", name, end))
        return [self._record(flat[i:i + 2]) for i in range(0, len(flat), 2)]

    def clear(self, name: str) -> None:
        self._call(name, "clear")

    def wait_pop_key(self, session: int, name: str, key: str, *,
                     timeout: float | None = None, now: float = 0.0) -> Popped | Waiting:
        key = self._key("wait_pop_key", name, key)
        return self._wait("wait_pop_key", session, name, timeout, now, key)

    def wait_pop_next(self, session: int, name: str, *, timeout: float | None = None,
                      now: float = 0.0) -> Popped | Waiting:
        return self._wait("wait_pop_next", session, name, timeout, now)

    # -- feeds --------------------------------------------------------------------------

    def publish(self, name: str, item: Any, id: str | None = None) -> str:
        packed = _pack("publish", name, item)
        if id is not None and (not isinstance(id, str) or not id):
            raise InvalidArgument(f"publish on {name!r}: an id is a non-empty str, not "
                                  f"{id!r}")
        return str(self._call(name, "publish", packed, id or "").decode())

    def retract(self, name: str, id: Any) -> None:
        if self._kind(name) is Kind.SORTED_FEED:
            self._call(name, "retract", self._id("retract", name, id))
            return
        if not isinstance(id, str):
            raise NotFound(f"retract on {name!r}: no item {id!r}")
        self._call(name, "retract", id)

    def ids(self, name: str, *, state: Any = None, start: int = 0, end: int | None = None
            ) -> list[Any]:
        self._index("ids", name, start)
        if end is not None:
            self._index("ids", name, end)
        if self._kind(name) is Kind.JOBS:
            if state is not None:
                try:
                    state = JobState(state)
                except ValueError:
                    raise InvalidArgument(f"ids on {name!r}: no job state {state!r}"
                                          ) from None
            return [id.decode() for id in self._call(
                name, "ids", "" if state is None else state.value)][start:end]
        if state is not None:
            raise InvalidArgument(f"ids on {name!r}: only jobs have states")
        if self._kind(name) is Kind.SORTED_FEED:
            return [id for id, _ in self.items(name)][start:end]
        return [id.decode() for id in self._call(name, "ids")][start:end]

    def items(self, name: str) -> list[tuple[Any, Any]]:
        flat = self._call(name, "items")
        cast = int if self._kind(name) is Kind.SORTED_FEED else bytes.decode
        return [(cast(flat[i]), unpack(flat[i + 1])[0]) for i in range(0, len(flat), 2)]

    # -- sorted feeds -------------------------------------------------------------------

    @staticmethod
    def _id(op: str, name: str, id: Any) -> str:
        """A sorted feed's item id (an int) for the wire; NotFound for anything else,
        as the kernel's lookup finds nothing."""
        if isinstance(id, bool) or not isinstance(id, int):
            raise NotFound(f"{op} on {name!r}: no item {id!r}")
        return str(id)

    def _new(self, op: str, name: str, place: str, rel_id: Any, item: Any) -> int:
        packed = _pack(op, name, item)
        rel = "" if rel_id is None else self._id(op, name, rel_id)
        return int(self._call(name, "publish_at", place, rel, packed))

    def append(self, name: str, item: Any) -> int:
        return self._new("append", name, "append", None, item)

    def prepend(self, name: str, item: Any) -> int:
        return self._new("prepend", name, "prepend", None, item)

    def insert_before(self, name: str, rel_id: int, item: Any) -> int:
        return self._new("insert_before", name, "before", rel_id, item)

    def insert_after(self, name: str, rel_id: int, item: Any) -> int:
        return self._new("insert_after", name, "after", rel_id, item)

    def edit(self, name: str, id: int, item: Any) -> None:
        packed = _pack("edit", name, item)
        self._call(name, "edit", self._id("edit", name, id), packed)

    def _move(self, op: str, name: str, id: Any, rel_id: Any = None) -> None:
        rel = "" if op in ("move_first", "move_last") else self._id(op, name, rel_id)
        self._call(name, "move", op, self._id(op, name, id), rel)

    def move_before(self, name: str, rel_id: int, id: int) -> None:
        self._move("move_before", name, id, rel_id)

    def move_after(self, name: str, rel_id: int, id: int) -> None:
        self._move("move_after", name, id, rel_id)

    def move_first(self, name: str, id: int) -> None:
        self._move("move_first", name, id)

    def move_last(self, name: str, id: int) -> None:
        self._move("move_last", name, id)

    # -- queues -------------------------------------------------------------------------

    def queue_put(self, session: int, name: str, item: Any, *, priority: int = 0,
                  timeout: float | None = 0.0, now: float = 0.0) -> Waiting | None:
        packed = _pack("queue_put", name, item)
        check_int("put", name, "priority", priority)
        answer = self._wait("queue_put", session, name, timeout, now, priority, packed)
        return answer if isinstance(answer, Waiting) else None

    def queue_get(self, session: int, name: str, *, timeout: float | None = None,
                  now: float = 0.0, receipt: bool = False) -> Popped | Waiting:
        return self._wait("queue_get", session, name, timeout, now, receipt=receipt)

    def _wait(self, op: str, session: int, name: str, timeout: float | None, now: float,
              *args: Any, receipt: bool = False) -> Popped | Waiting:
        check_timeout(op, name, timeout)
        if session not in self._sessions:
            raise NotFound(f"no open session {session!r}")
        answer = self._parking(op, session, name, timeout, now, *args)
        if isinstance(answer, Waiting):
            return answer
        if op == "claim":
            return self._jobs(answer)[0]  # type: ignore[return-value]
        if op == "result":
            return unpack(answer[1])[0], None
        if op == "queue_put":
            return None  # type: ignore[return-value]  # in at once: queue_put says None
        if op == "queue_get":
            priority, seq, packed = answer
            item, _ = unpack(packed)
            return item, (int(priority), int(seq)) if receipt else None
        return unpack(answer[1])

    def _parking(self, op: str, session: int, name: str, timeout: float | None,
                 now: float, *args: Any) -> Any:
        """A command that may park a waiter for ``session`` (timeout checked): its
        answer, or the waiter's ``Waiting``, now known to this object."""
        answer = self._call(name, op, session,
                            "" if timeout is None else repr(float(timeout)), *args, now=now,
                            parks=True)
        if isinstance(answer, list) and answer[0] == b"waiting":
            self._last_waiter += 1
            id = answer[1].decode()
            self._waits[self._last_waiter] = (name, id, session)
            self._waiters[name, id] = self._last_waiter
            self._served_keys[self._last_waiter] = args[0] if op in ("wait_pop_key",
                                                                     "result") else None
            return Waiting(waiter=self._last_waiter)
        return answer

    @staticmethod
    def _jobs(answer: Sequence[Any]) -> list[Job]:
        """Claimed jobs, from ``["job", id, attempt, packed item, id, ...]``."""
        return [Job(answer[i].decode(), unpack(answer[i + 2])[0], int(answer[i + 1]))
                for i in range(1, len(answer), 3)]

    def give_back(self, session: int, name: str, delivery: Event, *, now: float = 0.0
                  ) -> None:
        """Undo what a wait handed to a caller that is gone, as ``Kernel.give_back``: a
        list's record back to the front (or to the oldest waiter), a map's key only if
        it is still absent, a queue's item back at its order key."""
        if session not in self._sessions:
            raise NotFound(f"no open session {session!r}")
        if delivery.name == "wnp_next":
            self._call(name, "give_back", _pack("give_back", name, delivery.value,
                                                delivery.metadata, "value"))
        elif delivery.name == "wnp_key":
            self._call(name, "give_back", self._key("give_back", name, delivery.key),
                       _pack("give_back", name, delivery.value, delivery.metadata, "value"))
        elif delivery.name == "get":
            order = delivery.metadata
            if not (isinstance(order, (tuple, list)) and len(order) == 2
                    and all(type(n) is int for n in order)):
                raise InvalidArgument(f"give_back on {name!r}: a get delivery's metadata is "
                                      f"its order key (priority, seq), not {order!r}")
            self._call(name, "give_back", order[0], order[1],
                       _pack("give_back", name, delivery.value))
        elif delivery.name == "claimed":
            job = claimed_token(name, delivery)
            self._call(name, "give_back", session, job.id, str(job.attempt), now=now)
        else:
            raise InvalidArgument(f"give_back on {name!r}: a {delivery.name} delivery "
                                  "cannot be given back")

    def cancel_wait(self, session: int, waiter: int) -> bool:
        """Withdraw a parked waiter: False once it was served or timed out (its outcome
        is then in the session's mailbox, and comes as an effect)."""
        if session not in self._sessions:
            raise NotFound(f"no open session {session!r}")
        where = self._waits.get(waiter)
        if where is None or where[2] != session:
            return False
        name, id, _ = where
        if not self._call(name, "withdraw", id):
            return False
        del self._waits[waiter], self._waiters[name, id], self._served_keys[waiter]
        return True

    # -- job queues ---------------------------------------------------------------------

    def put(self, name: str, item: Any, *, priority: int = 0, delay: float = 0.0,
            id: str | None = None, now: float = 0.0) -> str:
        packed = _pack("put", name, item)
        check_int("put", name, "priority", priority)
        delay = check_seconds(f"put on {name!r}", "delay", delay, positive=False)
        if id is not None and (not isinstance(id, str) or not id):
            raise InvalidArgument(f"put on {name!r}: a job id is a non-empty str, not "
                                  f"{id!r}")
        return str(self._call(name, "put", packed, priority, _seconds(delay),
                              id or "", now=now).decode())

    def claim(self, session: int, name: str, *, timeout: float | None = None,
              lease: float | None = None, now: float = 0.0, owner: int | None = None
              ) -> Job | Waiting:
        """As ``Kernel.claim``; on Redis the lease may be held by another session of
        this process, ``owner`` (a facade's one long-lived session, while each wait
        parks under a session of its own)."""
        if lease is not None:
            check_timeout("claim", name, timeout)
            lease = check_seconds(f"claim on {name!r}", "lease", lease, positive=True)
        return self._wait("claim", session, name, timeout, now,  # type: ignore[return-value]
                          "" if lease is None else _seconds(lease),
                          "" if owner is None else owner)

    def put_many(self, name: str, items: Sequence[Any], *, priority: int = 0,
                 delay: float = 0.0, now: float = 0.0) -> list[str]:
        """As ``Kernel.put_many``, in one call: all or none."""
        items = check_items(items, "put_many", name)
        check_int("put_many", name, "priority", priority)
        delay = check_seconds(f"put_many on {name!r}", "delay", delay, positive=False)
        packed = [_pack("put_many", name, item) for item in items]
        return [id.decode() for id in self._call(name, "put_many", priority, _seconds(delay),
                                                  *packed, now=now)]

    def claim_many(self, session: int, name: str, n: int = 1, *,
                   timeout: float | None = None, lease: float | None = None,
                   now: float = 0.0, owner: int | None = None) -> list[Job] | Waiting:
        """As ``Kernel.claim_many``, in one call; ``owner`` as ``claim`` takes it."""
        if check_int("claim_many", name, "n", n) < 1:
            raise InvalidArgument(f"claim_many on {name!r}: n must be >= 1, not {n}")
        check_timeout("claim", name, timeout)
        if lease is not None:
            lease = check_seconds(f"claim on {name!r}", "lease", lease, positive=True)
        if session not in self._sessions:
            raise NotFound(f"no open session {session!r}")
        answer = self._parking("claim_many", session, name, timeout, now,
                               "" if lease is None else _seconds(lease),
                               "" if owner is None else owner, min(n, _MOST))
        return answer if isinstance(answer, Waiting) else self._jobs(answer)

    def finish_claim(self, session: int, name: str, job: Job, result: Any = None, *,
                     result_ttl: float | None = None, timeout: float | None = None,
                     lease: float | None = None, now: float = 0.0, owner: int | None = None
                     ) -> Job | Waiting:
        """As ``Kernel.finish_claim``, in one call; ``owner`` as ``claim`` takes it."""
        id, attempt = self._token("finish", name, job)
        packed = _pack("finish_claim", name, result, role="result")
        ttl = length = problem = ""
        try:  # what is wrong is said after the lease check, in the kernel's order
            check_timeout("finish_claim", name, timeout)
            if result_ttl is not None:
                ttl = _seconds(check_seconds(f"finish on {name!r}", "result_ttl",
                                             result_ttl, positive=False))
            if lease is not None:
                length = _seconds(check_seconds(f"claim on {name!r}", "lease", lease,
                                                positive=True))
            if session not in self._sessions:
                raise NotFound(f"no open session {session!r}")
        except (InvalidArgument, NotFound) as error:
            problem, timeout = f"{type(error).__name__} {error}", None
        answer = self._parking("finish_claim", session, name, timeout, now, length,
                               "" if owner is None else owner, id, attempt, packed, ttl,
                               problem)
        return answer if isinstance(answer, Waiting) else self._jobs(answer)[0]

    def require_replicas(self, replicas: int, timeout: float = 1.0) -> None:
        """Make every command that may change a container wait until ``replicas``
        replicas have it, ``WAITAOF`` (their append-only files) where the server has
        it (Redis >= 7.2, Valkey), else ``WAIT`` (received), up to ``timeout`` seconds;
        fewer raises NotReplicated (the command was applied). 0 replicas: no wait."""
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise InvalidArgument(f"replicas is an int >= 0, not {replicas!r}")
        check_seconds("require_replicas", "timeout", timeout, positive=True)
        if not replicas:
            self.acknowledge = None
            return
        if isinstance(self._redis, RedisCluster):
            raise InvalidArgument("acknowledgement by replicas is for one primary, not "
                                  "a Redis Cluster")
        info: Any = self._redis.info("server")
        version = tuple(int(n) for n in str(info.get("redis_version", "0")).split(".")[:2])
        self._waitaof = "valkey_version" in info or version >= (7, 2)
        self.acknowledge = (replicas, float(timeout))

    def heartbeat(self, session: int, name: str, seconds: float) -> bool:
        """Keep ``session`` alive on container ``name`` for ``seconds`` more: if it
        does not beat again by then (its process died), it ends there as a close
        would end it (its claims released or left to run out, as the job queue's
        ``release_on_close`` says), its waiters withdrawn and told ``Closed``, its
        subscriptions there dropped. False if that happened since its last beat
        (then it is alive again, with none of that back)."""
        check_seconds(f"heartbeat on {name!r}", "seconds", seconds, positive=True)
        return bool(self._call(name, "heartbeat", session, repr(float(seconds))))

    @staticmethod
    def _token(op: str, name: str, job: Any) -> tuple[str, str]:
        if not isinstance(job, Job):
            raise InvalidArgument(f"{op} on {name!r}: expected a Job, not {job!r}")
        return job.id, str(job.attempt)

    @staticmethod
    def _deferred(op: str, name: str, what: str, value: Any, *, positive: bool) -> str:
        """An optional number of seconds for the wire, or "!" and why it is wrong (Redis
        says so after checking the lease, as the kernel does)."""
        if value is None:
            return ""
        try:
            return _seconds(check_seconds(f"{op} on {name!r}", what, value,
                                           positive=positive))
        except InvalidArgument as error:
            return f"!{error}"

    def finish(self, name: str, job: Job, result: Any = None, *,
               result_ttl: float | None = None, now: float = 0.0) -> None:
        packed = _pack("finish", name, result, role="result")
        self._call(name, "finish", *self._token("finish", name, job), packed,
                   self._deferred("finish", name, "result_ttl", result_ttl, positive=False),
                   now=now)

    def cancel(self, name: str, job: Job, *, delay: float | None = None,
               reason: str | None = None, now: float = 0.0) -> None:
        check_reason(reason, "cancel", name)
        self._call(name, "cancel", *self._token("cancel", name, job),
                   self._deferred("cancel", name, "delay", delay, positive=False),
                   _reason(reason), now=now)

    def stall(self, name: str, job: Job, reason: str | None = None) -> None:
        check_reason(reason, "stall", name)
        self._call(name, "stall", *self._token("stall", name, job), _reason(reason))

    def touch(self, name: str, job: Job, *, lease: float | None = None,
              now: float = 0.0) -> None:
        self._call(name, "touch", *self._token("touch", name, job),
                   self._deferred("touch", name, "lease", lease, positive=True), now=now)

    def retry(self, name: str, id: str, *, now: float = 0.0) -> None:
        if not isinstance(id, str):
            raise NotFound(f"retry on {name!r}: no job {id!r}")
        self._call(name, "retry", id, now=now)

    def retry_all(self, name: str, *, now: float = 0.0) -> int:
        return int(self._call(name, "retry_all", now=now))

    def result(self, session: int, name: str, id: str, *, timeout: float | None = None,
               now: float = 0.0) -> Popped | Waiting:
        if not isinstance(id, str):
            check_timeout("result", name, timeout)
            self._kind(name)
            raise NotFound(f"result on {name!r}: no job {id!r}")
        return self._wait("result", session, name, timeout, now, id)

    def state(self, name: str, id: str) -> JobState:
        if not isinstance(id, str):
            raise NotFound(f"state on {name!r}: no job {id!r}")
        return JobState(self._call(name, "state", id).decode())

    def info(self, name: str, id: str) -> JobInfo:
        if not isinstance(id, str):
            raise NotFound(f"info on {name!r}: no job {id!r}")
        flat = self._call(name, "info", id)
        fields = {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}
        state = JobState(fields["state"])

        def time(field: str) -> float | None:
            return float(fields[field]) if field in fields else None

        return JobInfo(
            id=id, item=unpack(fields["item"])[0], state=state,
            attempt=int(fields["attempt"]), priority=int(fields["priority"]),
            created=float(fields["created"]), claimed=time("claimed"), ended=time("ended"),
            deadline=time("deadline") if state in (JobState.CLAIMED, JobState.DELAYED)
            else None,
            error=fields.get("reason"),
            result=unpack(fields["result"])[0] if "result" in fields else None)

    def delete_container(self, name: str) -> None:
        """As ``Kernel.delete_container``: its waiters end with NotFound, its
        subscriptions with ``Unsubscribed``, its records go. Raises NotFound."""
        self._call(name, "delete_container")
        self._kinds.pop(name, None)

    # -- subscriptions ------------------------------------------------------------------

    def subscribe(self, session: int, name: str, *, start: int | None = None) -> int:
        """As ``Kernel.subscribe``: the snapshot from ``start`` comes first, then every
        event from the container's stream, in order (``take_effects`` reads them). A
        subscription that falls behind the stream's bound (10,000 events) ends with
        ``Unsubscribed(reason="lagged")``, never by silently missing events."""
        kind = self._kind(name)
        if session not in self._sessions:
            raise NotFound(f"no open session {session!r}")
        if start is not None:
            self._index("subscribe", name, start)
        last_id, last_n, *flat = self._call(name, "subscribe", session)
        self._last_subscription += 1
        sid = self._last_subscription
        self._subscriptions[sid] = _Subscription(session, name, last_id, int(last_n))
        if start is not None:
            event_name = _SNAPSHOT_EVENTS[kind]
            cast = int if kind in (Kind.LIST, Kind.SORTED_FEED, Kind.QUEUE) else bytes.decode
            pairs = [(cast(flat[i]), unpack(flat[i + 1])) for i in range(0, len(flat), 2)]
            for key, (value, metadata) in pairs[start:]:
                self.effects.append(Notified(session, sid, Event(
                    name, event_name, key, value, metadata)))
        return sid

    def subscription_container(self, subscription: int) -> str | None:
        """The container subscription ``subscription`` of this object's is to."""
        sub = self._subscriptions.get(subscription)
        return None if sub is None else sub.container

    def forget_subscription(self, subscription: int) -> None:
        """Drop a subscription Redis has dropped already (its session lapsed)."""
        self._subscriptions.pop(subscription, None)

    def unsubscribe(self, session: int, subscription: int) -> None:
        sub = self._subscriptions.get(subscription)
        if session not in self._sessions:
            raise NotFound(f"no open session {session!r}")
        if sub is None or sub.session != session:
            raise NotFound(f"unsubscribe: session {session} has no subscription "
                           f"{subscription!r}")
        del self._subscriptions[subscription]
        self._call(sub.container, "unsubscribe", session)

    def _read_events(self) -> None:
        """Move the new events of this object's subscriptions into ``effects``."""
        for sid in list(self._subscriptions):
            self.effects += self.events(sid)

    def events(self, subscription: int, *, block: float | None = None) -> list[Effect]:
        """The events subscription ``subscription`` has not had yet, as ``Notified``
        effects, oldest first; with ``block``, waiting up to that many seconds for one
        if there is none. Ends the subscription with ``Unsubscribed(reason="lagged")``
        if events it had not read were trimmed from the stream. [] once it has ended."""
        sub = self._subscriptions.get(subscription)
        if sub is None:
            return []
        key = f"{self._keys(sub.container)[0][:-5]}:ev"
        entries: list[tuple[bytes, dict[bytes, bytes]]]
        if block is None:
            entries = self._redis.xrange(  # type: ignore[assignment]
                key, f"({sub.last_id.decode()}")
        else:
            answer: Any = self._redis.xread({key: sub.last_id}, count=1000,
                                            block=max(1, int(block * 1000)))
            entries = answer[0][1] if answer else []
        effects: list[Effect] = []
        for stream_id, fields in entries:
            n = int(fields[b"n"])
            if not fields[b"e"]:  # the container was deleted
                self._subscriptions.pop(subscription, None)
                effects.append(Unsubscribed(session=sub.session, subscription=subscription,
                                            reason=json.loads(fields[b"v"])))
                break
            if n != sub.last_n + 1:  # what came between was trimmed away
                if self._subscriptions.pop(subscription, None) is not None:
                    with contextlib.suppress(redis.RedisError, NotFound):
                        self._call(sub.container, "unsubscribe", sub.session)
                effects.append(Unsubscribed(session=sub.session, subscription=subscription,
                                            reason="lagged"))
                break
            sub.last_id, sub.last_n = stream_id, n
            value, metadata = unpack(fields[b"v"])
            effects.append(Notified(sub.session, subscription, Event(
                sub.container, fields[b"e"].decode(), json.loads(fields[b"k"]), value,
                metadata)))
        return effects

    # -- time and effects ---------------------------------------------------------------

    def advance(self, now: float) -> None:
        """Apply what is due by ``now`` in every container this object has used."""
        for name in list(self._containers):
            with contextlib.suppress(NotFound):
                self._call(name, "tick", now=now)

    def take_effects(self) -> list[Effect]:
        self._collect()
        self._read_events()
        effects, self.effects = self.effects, []
        return effects

    def _check(self) -> None:
        for name in list(self._containers):
            with contextlib.suppress(NotFound):
                self._call(name, "check")

    @staticmethod
    def _index(op: str, name: str, index: Any) -> int:
        return check_int(op, name, "index", index)
