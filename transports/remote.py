"""A kernel across a socket: the embedded kernel's command surface, spoken to a server.

``RemoteKernel`` has the methods the facades call on a ``Kernel``, with the same
arguments, results and errors; each is one request over the wire protocol. A connection
is one kernel session. Waits carry a tag (the waiter id the facade parks under), so a
parked wait's outcome, and every subscription event, arrive from the reader thread as the
same effects an embedded kernel queues: the facade built on it cannot tell the
difference. Timers run on the server: ``next_deadline()`` is always None here.

A lost connection is final: outstanding requests and parked waits fail with ``Closed``,
and so does every later call. There is no automatic reconnection (a new client is a new
session: the server released the old one's leases and waits when it went).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

import attrs

from corral.kernel import (
    Cancelled,
    Closed,
    ContainerStatistics,
    CorralError,
    Delivered,
    Effect,
    Event,
    InvalidArgument,
    Job,
    JobState,
    JobStatistics,
    Kind,
    Notified,
    Popped,
    Record,
    Unsubscribed,
    Waiting,
)

from .codec import (
    FIELDS,
    Broken,
    Malformed,
    Message,
    Parser,
    ProtocolError,
    encode,
    fields_start,
    present,
)
from .errors import error_of
from .tcp import DEFAULT_PORT

__all__ = ["RemoteKernel", "SocketWire", "Wire", "open_wire", "parse_url"]

SESSION = 1  # the one session a connection is


def parse_url(url: str) -> tuple[str, int]:
    """``corral://host:port`` (or ``tio://``) as (host, port); the port defaults to 2605."""
    parts = urlsplit(url)
    if parts.scheme not in ("corral", "tio") or not parts.hostname:
        raise InvalidArgument(f"not a corral URL: {url!r} (expected corral://host:port "
                              "or zmq+tcp://host:port)")
    return parts.hostname, parts.port or DEFAULT_PORT


class Wire(Protocol):
    """The byte pipe under a ``RemoteKernel``: a TCP socket or a ZeroMQ socket.
    ``recv`` blocks and returns b"" once the connection is gone; ``heartbeat`` (seconds
    or None) says how often an idle client must show it is alive."""

    @property
    def heartbeat(self) -> float | None: ...

    def sendall(self, data: bytes, /) -> None: ...
    def recv(self, size: int, /) -> bytes: ...
    def close(self) -> None: ...


class SocketWire:
    """A TCP connection."""

    heartbeat: float | None = None  # a closed TCP connection says so itself

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self._socket = socket.create_connection((host, port), timeout=timeout)
        self._socket.settimeout(None)
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sendall = self._socket.sendall
        self.recv = self._socket.recv

    def close(self) -> None:
        with contextlib.suppress(OSError):  # shutdown wakes a reader blocked in recv
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()


def open_wire(url: str, timeout: float = 10.0) -> Wire:
    """A connection to the server at ``url``: ``corral://host:port`` (TCP, port 2605 by
    default), ``zmq+tcp://host:port`` (ZeroMQ, port 2606 by default) or
    ``zmq+ipc:///path``."""
    scheme, _, rest = url.partition("://")
    if scheme in ("zmq+tcp", "zmq+ipc"):
        from .zeromq import DEFAULT_ZMQ_PORT, ZmqWire

        endpoint = f"{scheme[4:]}://{rest}"
        if scheme == "zmq+tcp":
            parts = urlsplit(endpoint)
            if not parts.hostname:
                raise InvalidArgument(f"not a corral URL: {url!r} (no host)")
            endpoint = f"tcp://{parts.netloc}" if parts.port else (
                f"tcp://{parts.netloc}:{DEFAULT_ZMQ_PORT}")
        return ZmqWire(endpoint, connect_timeout=timeout)
    return SocketWire(*parse_url(url), timeout)


def client_data_offset(words: tuple[str, ...]) -> int | None:
    """Where a server line's field specs start."""
    if words[0] == "answer":
        return 3 if len(words) > 2 and words[1] == "ok" and words[2] == "data" else None
    if words[0] == "query":
        return 3 if len(words) > 2 and words[2] == "item" else None
    if words[0] == "event":
        return fields_start(words, 3)
    return None


@attrs.define(eq=False)
class _Request:
    done: bool = False  # set by whichever thread read its answer
    reply: Message | None = None
    rows: list[dict[str, Any]] = attrs.Factory(list)
    error: CorralError | None = None
    # Set (before it looks at done) by a caller that waits while another thread reads.
    wake: threading.Condition | None = None


def _option(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


class RemoteKernel:
    """The kernel's commands over one connection to a corral server."""

    def __init__(self, url: str, *, token: str | None = None, connect_timeout: float = 10.0
                 ) -> None:
        self._wire = open_wire(url, connect_timeout)
        self._send_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._pending: deque[_Request] = deque()
        self._query: _Request | None = None  # the request whose query rows are arriving
        self._handles: dict[str, int] = {}
        self._sub_names: dict[int, str] = {}  # subscription handle -> container
        self._waits: dict[int, int] = {}  # a tagged wait's tag -> the handle it went on
        self._parked: set[int] = set()  # tags the server parked, outcome not yet here
        self._last_tag = 0
        self._lost: str | None = None
        self.effects: list[Effect] = []
        self.notify: Callable[[], None] = lambda: None  # called when effects arrive
        # Leader/follower reading: whoever needs an answer reads the socket while nobody
        # else does, so a round trip needs no thread switch. The others (followers)
        # sleep until their own answer is read or the lead is theirs; the background
        # reader leads only while something can arrive unasked (parked waits,
        # subscriptions), and sleeps on the turn.
        self._turn = threading.Condition(self._state_lock)
        self._reading = False
        self._followers: dict[_Request, None] = {}  # in the order they came
        self._parser = Parser(client_data_offset, max_payload=1 << 30)
        self._reader = threading.Thread(target=self._read, name="corral-client-reader",
                                        daemon=True)
        self._stopping = threading.Event()  # set when the connection is lost
        self._last_send = time.monotonic()
        self._beats = self._wire.heartbeat is not None  # whether sends are timed
        self._reader.start()
        if self._wire.heartbeat is not None:
            threading.Thread(target=self._beat, name="corral-client-heartbeat",
                             daemon=True).start()
        if token is not None:
            self._call(("auth", token))

    # -- the wire ---------------------------------------------------------------------

    def _call(self, words: Sequence[Any], fields: dict[str, Any] | None = None) -> _Request:
        request = _Request()
        data = encode(tuple(map(str, words)), fields)
        with self._send_lock:
            if self._lost is not None:
                raise Closed(f"the connection to the server is lost: {self._lost}")
            with self._state_lock:
                self._pending.append(request)
            try:
                self._wire.sendall(data)
                if self._beats:
                    self._last_send = time.monotonic()
            except OSError as error:
                self._lose(f"send failed: {error}")
        self._await(request)
        if request.error is not None:
            raise request.error
        if not request.done:  # queued just as the connection was lost
            raise Closed(f"the connection to the server is lost: {self._lost}")
        return request

    def _await(self, request: _Request) -> None:
        """Wait for ``request``'s answer, reading the socket ourselves when nobody else
        is reading it. (``_state_lock`` is ``_turn``'s lock: taken directly, it is
        cheaper than through the condition.)"""
        with self._state_lock:
            if not request.done and self._reading:
                request.wake = threading.Condition(self._state_lock)
                self._followers[request] = None
                while not request.done and self._reading:
                    request.wake.wait()
                del self._followers[request]
            if request.done:
                if not self._reading:  # the lead may have been handed to us: pass it on
                    self._hand_off()
                return
            self._reading = True
        try:
            while not request.done and self._read_some():
                pass
        finally:
            with self._state_lock:
                self._reading = False
                self._hand_off()

    def _hand_off(self) -> None:
        """The lead is free: wake the first follower to take it, or else the background
        reader if something can arrive unasked (state lock held)."""
        for follower in self._followers:
            assert follower.wake is not None
            follower.wake.notify()
            return
        if self._interest():
            self._turn.notify_all()

    def _complete(self, request: _Request) -> None:
        """Mark ``request`` answered and wake its caller if it sleeps as a follower (it
        sets ``wake`` before it looks at ``done``, so one of the two sees the other)."""
        request.done = True
        if request.wake is not None:
            with self._state_lock:
                request.wake.notify()

    def _interest(self) -> bool:
        """Whether something can arrive that nobody is reading for (state lock held)."""
        return bool(self._parked or self._sub_names) and self._lost is None

    def _data(self, words: Sequence[Any], fields: dict[str, Any] | None = None
              ) -> dict[str, Any]:
        reply = self._call(words, fields).reply
        assert reply is not None
        return reply.fields

    def _read(self) -> None:
        """The background reader: leads while there is unasked-for input to expect."""
        while True:
            with self._turn:
                while self._lost is None and (self._reading or not self._interest()):
                    self._turn.wait()
                if self._lost is not None:
                    return
                self._reading = True
            try:
                self._read_some()
            finally:
                with self._state_lock:
                    self._reading = False
                    self._hand_off()

    def _read_some(self) -> bool:
        """One blocking receive, its messages handled; False once the connection is lost."""
        try:
            data = self._wire.recv(65536)
        except OSError as error:
            self._lose(f"receive failed: {error}")
            return False
        if not data:
            self._lose("the server closed the connection")
            return False
        for item in self._parser.feed(data):
            if type(item) is Message:
                try:
                    self._receive(item)
                except (ProtocolError, LookupError, ValueError) as error:
                    self._lose(f"unreadable reply: {error}")
                    return False
            else:
                assert isinstance(item, (Broken, Malformed))
                self._lose(f"unreadable reply: {item.reason}")
                return False
        return True

    def _receive(self, message: Message) -> None:
        words = message.words
        if words[0] == "answer":
            with self._state_lock:
                if not self._pending:
                    raise ProtocolError(f"an answer nobody asked for: {' '.join(words)}")
                request = self._pending.popleft()
            if words[1] == "error":
                request.error = error_of(words[2] if len(words) > 2 else "error",
                                         " ".join(words[3:]))
            elif len(words) > 2 and words[2] == "query":
                request.reply = message
                self._query = request
                return  # done at "query Q end"
            request.reply = message
            self._complete(request)
        elif words[0] == "query":
            assert self._query is not None
            if words[2] == "end":
                self._complete(self._query)
                self._query = None
            else:
                self._query.rows.append(message.fields)
        elif words[0] == "event":
            self._event(message)

    def _event(self, message: Message) -> None:
        words, fields = message.words, message.fields
        handle, name = int(words[1]), words[2]
        if handle == 0 and name == "closed":  # the server ended this session
            self._lose(f"the server ended the session: {fields.get('value')}")
            return
        tag = next((int(w[4:]) for w in words[3:] if w.startswith("tag=")), None)
        effect: Effect
        if tag is not None:
            with self._state_lock:
                self._waits.pop(tag, None)
                self._parked.discard(tag)
            if name == "cancelled":
                code = words[4] if len(words) > 4 and words[4] not in FIELDS else "error"
                effect = Cancelled(session=SESSION, waiter=tag,
                                   error=error_of(code, str(fields.get("value", ""))))
            else:
                value = fields.get("value")
                if name == "claimed":
                    value = Job(fields["key"], value, fields["metadata"])
                effect = Delivered(SESSION, tag, Event("", name, fields.get("key"), value,
                                                       fields.get("metadata")))
        elif name == "unsubscribed":
            effect = Unsubscribed(session=SESSION, subscription=handle,
                                  reason=str(fields.get("value")))
        else:
            effect = Notified(SESSION, handle, Event(
                self._sub_names.get(handle, ""), name, fields.get("key"),
                fields.get("value"), fields.get("metadata")))
        with self._state_lock:
            self.effects.append(effect)
        self.notify()

    def _beat(self) -> None:
        """Ping when idle, so that the server keeps the session and a dead server is
        noticed (the wire gives up on a request unanswered for too long)."""
        heartbeat = self._wire.heartbeat
        assert heartbeat is not None
        while not self._stopping.wait(heartbeat / 2):
            if time.monotonic() - self._last_send >= heartbeat:
                try:
                    self.ping()
                except CorralError:
                    return

    def _lose(self, reason: str) -> None:
        """The connection is gone: fail what is outstanding, once."""
        with self._state_lock:
            if self._lost is not None:
                return
            self._lost = reason
            pending, self._pending = list(self._pending), deque()
            for tag in sorted(self._parked):  # each parked wait ends with Closed
                self.effects.append(Cancelled(session=SESSION, waiter=tag, error=Closed(
                    f"the connection to the server is lost: {reason}")))
            self._parked.clear()  # the others' requests fail with Closed themselves
            self._waits.clear()
        for request in pending + ([self._query] if self._query else []):
            request.error = Closed(f"the connection to the server is lost: {reason}")
            self._complete(request)
        self._wire.close()
        self._stopping.set()
        with self._turn:
            self._turn.notify_all()
        self.notify()

    def _handle(self, name: str) -> int:
        handle = self._handles.get(name)
        if handle is None:
            reply = self._call(("open", name)).reply
            assert reply is not None
            handle = self._handles[name] = int(reply.words[3])
        return handle

    def _wait(self, words: Sequence[Any], fields: dict[str, Any] | None,
              timeout: float | None) -> dict[str, Any] | Waiting:
        """A wait command, tagged so that its outcome event can find the waiter. One
        that cannot park (timeout 0) needs no tag, except Tio's wnp commands: untagged,
        they answer with an event even at once."""
        if timeout == 0 and words[0] not in ("wnp_next", "wnp_key"):
            return self._data([*words, "timeout=0"], fields)
        with self._state_lock:
            self._last_tag += 1
            tag = self._last_tag
            self._waits[tag] = int(words[1])
        try:
            reply = self._call([*words, f"timeout={_option(timeout)}", f"tag={tag}"],
                               fields).reply
        except BaseException:
            with self._state_lock:
                self._waits.pop(tag, None)
            raise
        assert reply is not None
        if reply.words[2] == "waiting":
            with self._turn:
                if self._lost is not None:  # nobody would ever end this wait
                    self._waits.pop(tag, None)
                    raise Closed(f"the connection to the server is lost: {self._lost}")
                if tag in self._waits:  # its outcome has not come in the same chunk
                    self._parked.add(tag)
                    self._turn.notify_all()  # the background reader now has to lead
            return Waiting(waiter=tag)
        with self._state_lock:
            self._waits.pop(tag, None)
        return reply.fields

    # -- sessions and containers ------------------------------------------------------

    def open_session(self) -> int:
        return SESSION

    def close_session(self, session: int, *, now: float = 0.0) -> None:
        """Close the connection; the server releases what the session held."""
        self._lose("closed by this client")

    def create(self, name: str, kind: Kind | str, **options: Any) -> Kind:
        words = ["create", name, Kind(kind).value]
        words += [f"{key}={_option(value)}" for key, value in options.items()
                  if value is not None]
        reply = self._call(words).reply
        assert reply is not None
        self._handles.setdefault(name, int(reply.words[3]))
        return Kind(reply.words[4])

    def open(self, name: str) -> Kind:
        reply = self._call(("open", name)).reply
        assert reply is not None
        self._handles.setdefault(name, int(reply.words[3]))
        return Kind(reply.words[4])

    def delete_container(self, name: str) -> None:
        self._call(("delete_container", self.open(name).value, name))
        self._handles.pop(name, None)

    def stats(self) -> dict[str, Any]:
        """The server's statistics: version, uptime, connections, commands, containers."""
        stats: dict[str, Any] = self._data(("stats",))["value"]
        return stats

    def containers(self) -> dict[str, Kind]:
        return {name: Kind(kind) for name, kind in self.stats()["containers"].items()}

    def statistics(self, name: str) -> ContainerStatistics:
        stats = dict(self._data(("statistics", self._handle(name)))["value"])
        stats["kind"] = Kind(stats["kind"])
        if stats["kind"] is Kind.JOBS:
            return JobStatistics(**stats)
        return ContainerStatistics(**stats)

    def set_property(self, name: str, key: str, value: str) -> None:
        self._call(("set_property", self._handle(name)), {"key": key, "value": value})

    def get_property(self, name: str, key: str) -> str:
        value: str = self._data(("get_property", self._handle(name)), {"key": key})["value"]
        return value

    # -- records ----------------------------------------------------------------------

    @staticmethod
    def _record(fields: dict[str, Any]) -> Record:
        return Record(fields.get("key"), fields.get("value"), fields.get("metadata"))

    def get(self, name: str, key: Any) -> Record:
        return self._record(self._data(("get", self._handle(name)), {"key": key}))

    def set(self, name: str, key: Any, value: Any, metadata: Any = None) -> None:
        self._call(("set", self._handle(name)), {**present(key=key, metadata=metadata),
                                                "value": value})

    def insert(self, name: str, key: Any, value: Any, metadata: Any = None) -> None:
        self._call(("insert", self._handle(name)), {**present(key=key, metadata=metadata),
                                                   "value": value})

    def delete(self, name: str, key: Any) -> None:
        self._call(("delete", self._handle(name)), {"key": key})

    def count(self, name: str) -> int:
        reply = self._call(("get_count", self._handle(name))).reply
        assert reply is not None
        return int(reply.words[3])

    def query(self, name: str, start: int = 0, end: int | None = None) -> list[Record]:
        if end == 0:
            return []  # Tio reads an end of 0 as "to the end"
        words: list[Any] = ["query", self._handle(name), start]
        if end is not None:
            words.append(end)
        return [self._record(row) for row in self._call(words).rows]

    def clear(self, name: str) -> None:
        self._call(("clear", self._handle(name)))

    def keys(self, name: str) -> list[str]:
        return [record.key for record in self.query(name)]

    def push_back(self, name: str, value: Any, metadata: Any = None) -> None:
        self._call(("push_back", self._handle(name)), {**present(metadata=metadata),
                                                      "value": value})

    def push_front(self, name: str, value: Any, metadata: Any = None) -> None:
        self._call(("push_front", self._handle(name)), {**present(metadata=metadata),
                                                       "value": value})

    def pop_front(self, name: str) -> Record:
        return self._record(self._data(("pop_front", self._handle(name))))

    def pop_back(self, name: str) -> Record:
        return self._record(self._data(("pop_back", self._handle(name))))

    def wait_pop_next(self, session: int, name: str, *, timeout: float | None = None,
                      now: float = 0.0) -> Popped | Waiting:
        got = self._wait(["wnp_next", self._handle(name)], None, timeout)
        return got if isinstance(got, Waiting) else (got.get("value"), got.get("metadata"))

    def wait_pop_key(self, session: int, name: str, key: str, *,
                     timeout: float | None = None, now: float = 0.0) -> Popped | Waiting:
        got = self._wait(["wnp_key", self._handle(name)], {"key": key}, timeout)
        return got if isinstance(got, Waiting) else (got.get("value"), got.get("metadata"))

    # -- feeds and sorted feeds -------------------------------------------------------

    def publish(self, name: str, item: Any, id: str | None = None) -> str:
        result: str = self._data(("publish", self._handle(name)),
                                 {**present(key=id), "value": item})["key"]
        return result

    def retract(self, name: str, id: Any) -> None:
        self._call(("retract", self._handle(name)), {"key": id})

    def ids(self, name: str) -> list[Any]:
        return [row["key"] for row in self._call(("ids", self._handle(name))).rows]

    def items(self, name: str) -> list[tuple[Any, Any]]:
        return [(row["key"], row.get("value"))
                for row in self._call(("items", self._handle(name))).rows]

    def _new_id(self, op: str, name: str, fields: dict[str, Any]) -> int:
        result: int = self._data((op, self._handle(name)), fields)["key"]
        return result

    def append(self, name: str, item: Any) -> int:
        return self._new_id("append", name, {"value": item})

    def prepend(self, name: str, item: Any) -> int:
        return self._new_id("prepend", name, {"value": item})

    def insert_before(self, name: str, rel_id: int, item: Any) -> int:
        return self._new_id("insert_before", name, {"key": rel_id, "value": item})

    def insert_after(self, name: str, rel_id: int, item: Any) -> int:
        return self._new_id("insert_after", name, {"key": rel_id, "value": item})

    def edit(self, name: str, id: int, item: Any) -> None:
        self._call(("edit", self._handle(name)), {"key": id, "value": item})

    def move_before(self, name: str, rel_id: int, id: int) -> None:
        self._call(("move_before", self._handle(name)), {"key": id, "value": rel_id})

    def move_after(self, name: str, rel_id: int, id: int) -> None:
        self._call(("move_after", self._handle(name)), {"key": id, "value": rel_id})

    def move_first(self, name: str, id: int) -> None:
        self._call(("move_first", self._handle(name)), {"key": id})

    def move_last(self, name: str, id: int) -> None:
        self._call(("move_last", self._handle(name)), {"key": id})

    # -- queues -----------------------------------------------------------------------

    def queue_put(self, session: int, name: str, item: Any, *, priority: int = 0,
                  timeout: float | None = 0.0, now: float = 0.0) -> Waiting | None:
        words: list[Any] = ["put", self._handle(name)]
        if priority:
            words.append(f"priority={priority}")
        got = self._wait(words, {"value": item}, timeout)
        return got if isinstance(got, Waiting) else None

    def queue_get(self, session: int, name: str, *, timeout: float | None = None,
                  now: float = 0.0) -> Popped | Waiting:
        got = self._wait(["take", self._handle(name)], None, timeout)
        return got if isinstance(got, Waiting) else (got.get("value"), got.get("metadata"))

    # -- jobs -------------------------------------------------------------------------

    def put(self, name: str, item: Any, *, priority: int = 0, delay: float = 0.0,
            id: str | None = None, now: float = 0.0) -> str:
        words: list[Any] = ["put", self._handle(name)]
        if priority:
            words.append(f"priority={priority}")
        if delay:
            words.append(f"delay={_option(float(delay))}")
        result: str = self._data(words, {**present(key=id), "value": item})["key"]
        return result

    def claim(self, session: int, name: str, *, timeout: float | None = None,
              lease: float | None = None, now: float = 0.0) -> Job | Waiting:
        words = ["claim", self._handle(name)]
        if lease is not None:
            words.append(f"lease={_option(float(lease))}")
        got = self._wait(words, None, timeout)
        return got if isinstance(got, Waiting) else Job(got["key"], got.get("value"),
                                                        got["metadata"])

    def _leased(self, op: str, name: str, job: Job, options: dict[str, Any],
                value: Any = None) -> None:
        words = [op, self._handle(name), f"attempt={job.attempt}"]
        words += [f"{k}={_option(v)}" for k, v in options.items() if v is not None]
        self._call(words, {"key": job.id, "value": value})

    def finish(self, name: str, job: Job, result: Any = None, *,
               result_ttl: float | None = None, now: float = 0.0) -> None:
        self._leased("finish", name, job, {"result_ttl": result_ttl}, result)

    def cancel(self, name: str, job: Job, *, delay: float = 0.0, reason: str | None = None,
               now: float = 0.0) -> None:
        self._leased("cancel", name, job, {"delay": float(delay)}, reason)

    def stall(self, name: str, job: Job, reason: str | None = None) -> None:
        self._leased("stall", name, job, {}, reason)

    def touch(self, name: str, job: Job, *, lease: float | None = None,
              now: float = 0.0) -> None:
        self._leased("touch", name, job, {"lease": lease})

    def retry(self, name: str, id: str, *, now: float = 0.0) -> None:
        self._call(("retry", self._handle(name)), {"key": id})

    def result(self, session: int, name: str, id: str, *, timeout: float | None = None,
               now: float = 0.0) -> Popped | Waiting:
        got = self._wait(["result", self._handle(name)], {"key": id}, timeout)
        return got if isinstance(got, Waiting) else (got.get("value"), got.get("metadata"))

    def state(self, name: str, id: str) -> JobState:
        return JobState(self._data(("state", self._handle(name)), {"key": id})["value"])

    # -- subscriptions, waiters, time and effects -------------------------------------

    def subscribe(self, session: int, name: str, *, start: int | None = None) -> int:
        """A subscription is a handle of its own (Tio allows one per handle)."""
        reply = self._call(("open", name)).reply
        assert reply is not None
        handle = int(reply.words[3])
        with self._turn:
            self._sub_names[handle] = name
            self._turn.notify_all()
        self._call(("subscribe", handle) + ((start,) if start is not None else ()))
        return handle

    def unsubscribe(self, session: int, subscription: int) -> None:
        self._call(("close", subscription))
        self._sub_names.pop(subscription, None)

    def cancel_wait(self, session: int, waiter: int) -> bool:
        """Withdraw the parked wait tagged ``waiter``, if it still is."""
        with self._state_lock:
            handle = self._waits.get(waiter)
        if handle is None:
            return False
        withdrawn = bool(self._data(("unwait", handle, f"tag={waiter}")).get("value"))
        if withdrawn:
            with self._state_lock:
                self._waits.pop(waiter, None)
                self._parked.discard(waiter)
        return withdrawn

    def next_deadline(self) -> float | None:
        return None  # the server keeps the timers

    def advance(self, now: float) -> None:
        """Nothing to do: the server fires its own timers."""

    def take_effects(self) -> Sequence[Effect]:
        with self._state_lock:
            effects, self.effects[:] = list(self.effects), []
        return effects

    def ping(self) -> None:
        """One round trip to the server. Raises Closed if the connection is lost."""
        reply = self._call(("ping",)).reply
        if reply is None or reply.words[:3] != ("answer", "ok", "pong"):
            raise ProtocolError(f"odd reply to ping: {reply}")
