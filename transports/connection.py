"""The client's side of the protocol, sans-IO: ``ClientConnection``.

A connection to a corral server is this object plus a thin shell that moves bytes (the
thread client in ``corral.adapters.client``, the native trio one beside it). Each
command method queues the command's bytes and returns its ``Request``; the shell sends
``data_to_send()``, feeds what it receives to ``receive_data()``, and wakes the callers
of the requests it returns. Nothing here does I/O, reads a clock or blocks, so both ends
of the protocol can meet in memory in a test (as h11's ``ConnectionPair`` does).

Handles are chosen here, not by the server (``handle=N`` on ``create`` and ``open``):
one per container name, reused by every call, and a call on a name not yet open
pipelines its ``open`` instead of waiting for it. The server answers commands in order
and sends a command's events before its answer, so every case of a wait's life is seen
in a fixed order and settled here alone, by one state table per tag::

    SENT --answer data---------------------> DONE (the value)
    SENT --answer waiting------------------> PARKED (WITHDRAWING if cancel was asked)
    PARKED --outcome event-----------------> DONE (the value or error)
    PARKED --cancel------------------------> WITHDRAWING (unwait sent)
    WITHDRAWING --outcome event------------> WITHDRAWING, outcome held
    WITHDRAWING --unwait: withdrawn--------> DONE (withdrawn: the caller's cancel stands)
    WITHDRAWING+held --unwait: too late----> DONE (the held outcome; given back instead
                                              if the caller is gone)
    any --connection lost------------------> DONE (Closed)

A caller that cancels may still be there to take a value (trio: an operation that
completed is not undone; ``interrupt()``), or be gone (an interrupted thread, a
closing client): then whatever was served to it is given back by ``give_back``, the
kernel's exact inverse of the delivery, and nothing is lost.

An answer nobody asked for, an event for an unknown handle or tag, or bytes that are not
the protocol lose the connection (``lost``): every request still open completes with
Closed. ``reconnect()`` starts over on a new connection with the same handles and
subscriptions (the server releases the old session's claims and waits when it goes).
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs

from corral.kernel import (
    GIVEN_BACK,
    Closed,
    CorralError,
    Event,
    InvalidArgument,
    Kind,
    LeaseLost,
    Notified,
    Unsubscribed,
)

from .codec import FIELDS, Broken, Malformed, Message, Parser, ProtocolError, encode, present
from .commands import COMMANDS, by_kernel, jobs_of, option_text
from .errors import error_of
from .requests import (
    DECODE,
    Decode,
    Request,
    Wait,
    WaitState,
    Withdrawn,
    client_data_offset,
    client_method,
    field_value,
    nothing,
    pong,
    served_value,
)

__all__ = ["DEFAULT_RECONNECT", "ClientConnection", "Reconnect", "Request", "Wait",
           "WaitState", "Withdrawn"]

log = logging.getLogger("corral.client")

SESSION = 1  # the session a connection is, in the effects it reports
RECONNECTED = "reconnected"  # the event a subscription gets after a reconnection


@attrs.frozen(kw_only=True)
class Reconnect:
    """How a client reconnects after losing its server: the first try after ``first``
    seconds, each next delay ``factor`` times the last up to ``cap``, each drawn at
    random from its last ``jitter`` fraction (so that the clients of a restarted
    server do not all come back at once); after ``give_up`` seconds of outage (None:
    never) the client closes for good."""

    first: float = 0.05
    factor: float = 2.0
    cap: float = 2.0
    jitter: float = 0.5
    give_up: float | None = None

    def __attrs_post_init__(self) -> None:
        if not (self.first > 0 and self.factor >= 1 and self.cap >= self.first
                and 0 <= self.jitter <= 1):
            raise InvalidArgument(f"not a reconnect policy: {self!r}")

    def delays(self, rng: random.Random) -> Iterator[float]:
        """The delays before each try, without end."""
        delay = self.first
        while True:
            yield delay * (1 - self.jitter * rng.random())
            delay = min(self.cap, delay * self.factor)


# Commands whose answers or events the core must track itself (see ``raw``).
_NOT_RAW = frozenset({c.wire for c in COMMANDS if c.waits} | {
    "subscribe", "unsubscribe", "close", "unwait", "give_back", "auth"})


def _log_refused(request: Request) -> None:
    """A give-back the server refused (a claim whose lease came back meanwhile:
    nothing is lost; anything else is a bug worth a line)."""
    if request.error is not None and not isinstance(request.error, (Closed, LeaseLost)):
        log.error("corral: a give-back was refused: %s", request.error)


DEFAULT_RECONNECT = Reconnect()


class ClientConnection:
    """The protocol state of one client connection; see the module docstring.

    Its commands have the kernel's names and arguments, less the session, so that the
    facades' handles name them alike; the ``now`` some take is ignored (the server
    keeps the time)."""

    def __init__(self, *, token: str | None = None) -> None:
        self.token = token
        self.lost: str | None = None  # why the connection went, once it has
        self._out = bytearray()
        self._parser = Parser(client_data_offset, max_payload=1 << 30)
        self._pending: deque[Request] = deque()
        self._query: Request | None = None  # whose query rows are arriving
        self._handles: dict[str, int] = {}  # container name -> handle
        self._names: dict[int, str] = {}  # handle -> container name
        self._subscriptions: dict[int, str] = {}  # subscription handle -> container
        self._closing: set[int] = set()  # subscription handles being closed
        self._last_handle = 0
        self._waits: dict[int, Wait] = {}  # tag -> an open wait
        self._last_tag = 0
        self._done: list[Request] = []  # completed by the current receive_data
        self._effects: list[Notified | Unsubscribed] = []
        #: The ``auth`` request sent first if there is a token (None otherwise): a
        #: shell checks its answer before it lets its caller go on.
        self.auth: Request | None = None
        if token is not None:
            self.auth = self._send(("auth", token), None, Request())

    # -- what the shell calls -----------------------------------------------------------

    def data_to_send(self) -> bytes:
        """The bytes queued for the server (and forget them)."""
        data = bytes(self._out)
        self._out.clear()
        return data

    @property
    def has_data(self) -> bool:
        """Whether bytes are queued for the server."""
        return bool(self._out)

    @property
    def settled(self) -> bool:
        """Whether every request and wait sent has completed (or the connection is
        lost): what a shell waits for before it closes."""
        return not (self._pending or self._waits) or self.lost is not None

    def open_waits(self) -> list[Wait]:
        """The waits not yet settled, oldest first."""
        return list(self._waits.values())

    @property
    def busy(self) -> bool:
        """Whether anything can still arrive: an answer, a wait's outcome, or an event."""
        return bool(self._pending or self._waits or self._subscriptions) and not self.lost

    def receive_data(self, data: bytes) -> tuple[list[Request], list[Notified | Unsubscribed]]:
        """Take bytes from the server: the requests they complete (wake their callers)
        and the subscription events they carry, in wire order. ``b""`` means the
        connection is gone."""
        if self.lost is not None:
            return [], []
        if not data:
            self._lose("the server closed the connection")
        else:
            for item in self._parser.feed(data):
                if type(item) is not Message:
                    assert isinstance(item, (Broken, Malformed))
                    self._lose(f"unreadable reply: {item.reason}")
                    break
                try:
                    self._receive(item)
                except Exception as error:  # the server's bytes, not our bug: drop it
                    self._lose(f"unreadable reply: {error!r}")
                    break
        return self._take()

    def connection_lost(self, reason: str) -> tuple[list[Request], list[Notified | Unsubscribed]]:
        """The connection is gone: every open request and wait completes with Closed.
        Returns what that completes, as ``receive_data`` does."""
        self._lose(reason)
        return self._take()

    def _lose(self, reason: str) -> None:
        if self.lost is None:
            self.lost = reason
            error = Closed(f"the connection to the server is lost: {reason}")
            for request in [*self._pending, *self._waits.values()]:
                if request.done:
                    continue
                if isinstance(request, Wait) and request.held is not None and (
                        request.held.words[2] != "cancelled" and not request.gone):
                    self._settle(request, message=request.held)  # it came: it is ours
                else:
                    self._finish(request, error=error)
            if self._query is not None and not self._query.done:
                self._finish(self._query, error=error)
            self._pending.clear()
            self._waits.clear()
            self._query = None
            self._out.clear()

    def reconnect(self) -> None:
        """Start over on a new connection: the same handles for the same names (each
        opened again, pipelined, if it still exists), the same subscriptions, each told
        by a ``reconnected`` event that it may have missed events."""
        assert self.lost is not None, "reconnect() after connection_lost()"
        self.lost = None
        self._parser = Parser(client_data_offset, max_payload=1 << 30)
        if self.token is not None:
            self.auth = self._send(("auth", self.token), None, Request())
        for name, handle in list(self._handles.items()):
            self._send(("open", name, f"handle={handle}"), None,
                       Request(then=self._unbind_on_error(handle, keeps=False)))
        for handle, name in list(self._subscriptions.items()):
            self._send(("open", name, f"handle={handle}"), None, Request())
            self._send(("subscribe", str(handle), "__none__"), None,
                       Request(then=self._unsubscribed_on_error(handle)))
            self._effects.append(Notified(SESSION, handle, Event(name, RECONNECTED)))

    # -- the wire -----------------------------------------------------------------------

    def _send(self, words: Iterable[str], fields: dict[str, Any] | None,
              request: Request) -> Request:
        if self.lost is not None:
            raise Closed(f"the connection to the server is lost: {self.lost}")
        self._out += encode(tuple(words), fields)
        self._pending.append(request)
        return request

    def _take(self) -> tuple[list[Request], list[Notified | Unsubscribed]]:
        done, effects = self._done, self._effects
        if not done and not effects:
            return done, effects
        self._done, self._effects = [], []
        return done, effects

    def _finish(self, request: Request, value: Any = None,
                error: BaseException | None = None) -> None:
        if request.after is not None and request.after.error is not None:
            error = request.after.error  # the handle's open failed: say why
        request.value, request.error, request.done = value, error, True
        if type(request) is Wait:
            request.state = WaitState.DONE
            self._waits.pop(request.tag, None)
        if request.waker is not None:
            self._done.append(request)
        if request.then is not None:
            request.then(request)

    def _receive(self, message: Message) -> None:
        words = message.words
        kind = words[0]
        if kind == "answer":
            if not self._pending:
                raise ProtocolError(f"an answer nobody asked for: {' '.join(words)}")
            # It stays first in line until it is settled: if its answer cannot be
            # read, losing the connection fails it with the others.
            request = self._pending[0]
            if words[1] == "error":
                error = error_of(words[2] if len(words) > 2 else "error",
                                 message.fields.get("value") or " ".join(words[3:]))
                if type(request) is Wait:
                    self._settle(request, error=error)
                else:
                    self._finish(request, error=error)
            elif type(request) is Wait:
                self._answered(request, message)
            elif len(words) > 2 and words[2] == "query":
                request.rows = []
                self._query = request
            else:
                self._finish(request, request.decode(message, []))
            self._pending.popleft()
        elif kind == "query":
            query = self._query
            if query is None or query.rows is None:
                raise ProtocolError(f"query rows nobody asked for: {' '.join(words)}")
            if words[2] == "end":
                self._finish(query, query.decode(message, query.rows))
                self._query = None
            else:
                query.rows.append(message.fields)
        elif kind == "event":
            self._event(message)
        else:
            raise ProtocolError(f"not an answer, query row or event: {' '.join(words)}")

    def _answered(self, wait: Wait, message: Message) -> None:
        words = message.words
        if wait.state is not WaitState.SENT:
            raise ProtocolError(f"a second answer for tag {wait.tag}")
        if len(words) > 3 and words[2] == "waiting":
            if words[3] != str(wait.tag):
                raise ProtocolError(f"tag {words[3]} parked, {wait.tag} expected")
            wait.state, wait.parked = WaitState.PARKED, True
            if wait.cancelling:
                self._withdraw(wait)
            return
        if wait.of == "put":  # a put that went in at once answers plain ok
            self._settle(wait, value=None)
            return
        if len(words) < 3 or words[2] != "data":
            raise ProtocolError(f"odd answer to a wait: {' '.join(words)}")
        self._settle(wait, message=message)

    def _settle(self, wait: Wait, *, message: Message | None = None, value: Any = None,
                error: BaseException | None = None) -> None:
        """A wait's outcome: to its caller, or given back if the caller is gone."""
        if message is not None:
            fields = message.fields
            if wait.of == "wnp_key" and "key" not in fields:
                fields = {**fields, "key": wait.key}
            value = served_value(wait.of, fields)
            if wait.of in GIVEN_BACK:
                wait.receipt = fields
        self._finish(wait, value, error)
        if wait.gone:
            self._give_back(wait)

    def _give_back(self, wait: Wait) -> None:
        """Return what served ``wait`` to the server (once): the kernel's exact inverse
        of the delivery. Over a lost connection there is no one to return it to."""
        fields, wait.receipt = wait.receipt, None
        wait.value = None
        if fields is None or self.lost is not None:
            return
        deliveries = [fields] if "key" in fields or wait.of != "claimed" else [
            {"key": job.id, "value": job.item, "metadata": job.attempt}  # claim_many's
            for job in jobs_of(fields["value"])]
        for delivery in deliveries:
            self._send(("give_back", str(wait.handle), f"of={wait.of}"),
                       {**present(key=delivery.get("key"),
                                  metadata=delivery.get("metadata")),
                        "value": delivery.get("value")}, Request(then=_log_refused))

    def _event(self, message: Message) -> None:
        words, fields = message.words, message.fields
        handle, name = int(words[1]), words[2]
        if handle == 0 and name == "closed":  # the server ended this session
            self._lose(f"the server ended the session: {fields.get('value')}")
            return
        tag = next((int(w[4:]) for w in words[3:] if w.startswith("tag=")), None)
        if tag is not None:
            wait = self._waits.get(tag)
            if wait is None or wait.handle != handle:
                raise ProtocolError(f"an outcome for tag {tag} nobody waits for")
            if wait.state is WaitState.PARKED:
                if name == "cancelled":
                    self._settle(wait, error=self._cancelled_error(words, fields))
                else:
                    self._settle(wait, message=message)
            elif wait.state is WaitState.WITHDRAWING:
                wait.held = message
            else:
                raise ProtocolError(f"an outcome for tag {tag} before it parked")
            return
        container = self._subscriptions.get(handle)
        if container is None:
            if handle in self._closing:
                return  # sent before the server saw our close
            raise ProtocolError(f"an event for handle {handle}, which has no subscription")
        if name == "unsubscribed":
            del self._subscriptions[handle]
            self._effects.append(Unsubscribed(session=SESSION, subscription=handle,
                                              reason=str(fields.get("value"))))
        else:
            self._effects.append(Notified(SESSION, handle, Event(
                container, name, fields.get("key"), fields.get("value"),
                fields.get("metadata"))))

    @staticmethod
    def _cancelled_error(words: tuple[str, ...], fields: dict[str, Any]) -> CorralError:
        code = words[4] if len(words) > 4 and words[4] not in FIELDS else "error"
        return error_of(code, str(fields.get("value", "")))

    # -- waits --------------------------------------------------------------------------

    def _wait(self, of: str, name: str, words: list[str], fields: dict[str, Any] | None,
              key: Any = None) -> Wait:
        handle, after = self._handle(name)
        self._last_tag += 1
        wait = Wait(tag=self._last_tag, handle=handle, name=name, of=of, key=key,
                    after=after)
        words[1:1] = [str(handle)]
        self._send([*words, f"tag={wait.tag}"], fields, wait)
        self._waits[wait.tag] = wait
        return wait

    def cancel_wait(self, wait: Wait, *, gone: bool) -> None:
        """The caller of ``wait`` gives up on it. If it is parked, an ``unwait`` is
        queued; the wait completes when the server's answer says whether it was
        withdrawn (``Withdrawn``) or served first (its value). If the caller is
        ``gone``, what served it is given back instead, whenever it came (even if the
        wait had settled and its caller left before taking the value)."""
        wait.gone = wait.gone or gone
        if wait.state is WaitState.SENT:
            wait.cancelling = True
        elif wait.state is WaitState.PARKED:
            self._withdraw(wait)
        elif wait.state is WaitState.DONE and gone:
            self._give_back(wait)  # settled, but its caller left before taking it

    def _withdraw(self, wait: Wait) -> None:
        wait.state = WaitState.WITHDRAWING
        if self.lost is None:
            self._send(("unwait", str(wait.handle), f"tag={wait.tag}"), None,
                       Request(decode=field_value, then=lambda r: self._unwaited(wait, r)))

    def _unwaited(self, wait: Wait, unwait: Request) -> None:
        if unwait.error is not None:
            if self.lost is None:  # not a connection lost: an unwait cannot fail
                raise ProtocolError(f"unwait of tag {wait.tag} failed: {unwait.error}")
            return
        withdrawn = bool(unwait.value)
        if wait.state is not WaitState.WITHDRAWING:
            return  # settled otherwise (connection lost)
        if withdrawn:
            self._finish(wait, error=Withdrawn(f"{wait.of} on {wait.name!r} withdrawn"))
        elif wait.held is None:
            raise ProtocolError(f"unwait of tag {wait.tag} too late, but no outcome came")
        elif wait.held.words[2] == "cancelled":
            self._finish(wait, error=self._cancelled_error(wait.held.words,
                                                            wait.held.fields))
        else:
            self._settle(wait, message=wait.held)

    # -- handles --------------------------------------------------------------------------

    def _bind(self, name: str) -> int:
        self._last_handle += 1
        handle = self._last_handle
        self._handles[name], self._names[handle] = handle, name
        return handle

    def _unbind_on_error(self, handle: int, *, keeps: bool) -> Callable[[Request], None]:
        """A failed open or create leaves ``handle`` unbound on the server (unless it
        was bound before: ``keeps``): unbind it here too, so that the next call on the
        name opens it again."""
        def then(request: Request) -> None:
            name = self._names.get(handle)
            if self.lost is not None:
                return  # kept for reconnect()
            if request.error is not None and not keeps and name is not None:
                del self._names[handle]
                if self._handles.get(name) == handle:
                    del self._handles[name]
        return then

    def _unsubscribed_on_error(self, handle: int) -> Callable[[Request], None]:
        def then(request: Request) -> None:
            if request.error is not None and self.lost is None:
                name = self._subscriptions.pop(handle, None)
                if name is not None:
                    self._effects.append(Unsubscribed(
                        session=SESSION, subscription=handle, reason=str(request.error)))
        return then

    def _handle(self, name: str) -> tuple[int, Request | None]:
        """The handle for ``name``, and the open it waits on if it is opened now."""
        handle = self._handles.get(name)
        if handle is not None:
            return handle, None
        handle = self._bind(name)
        opening = Request(then=self._unbind_on_error(handle, keeps=False))
        self._send(("open", name, f"handle={handle}"), None, opening)
        return handle, opening

    def _on(self, op: str, name: str, fields: dict[str, Any] | None = None,
            decode: Decode = nothing, options: Iterable[str] = ()) -> Request:
        """A command on container ``name``'s handle."""
        handle = self._handles.get(name)
        if handle is None:
            handle, after = self._handle(name)
            return self._send((op, str(handle), *options), fields,
                              Request(decode=decode, after=after))
        return self._send((op, str(handle), *options), fields, Request(decode=decode))

    # -- commands: sessions and containers ------------------------------------------------

    def create(self, name: str, kind: Kind | str, **options: Any) -> Request:
        """Create ``name`` if needed, or check that it is a ``kind`` with these
        options; the name's handle is reused if it has one."""
        kind = Kind(kind)
        words = ["create", name, kind.value]
        words += [f"{key}={option_text(value)}" for key, value in options.items()
                  if value is not None]
        known = self._handles.get(name)
        handle = known if known is not None else self._bind(name)
        return self._send([*words, f"handle={handle}"], None, Request(
            decode=lambda m, r: Kind(m.words[4]),
            then=self._unbind_on_error(handle, keeps=known is not None)))

    def delete_container(self, name: str) -> Request:
        """Delete ``name`` whatever its kind (its handle stays bound to the name)."""
        return self._send(("delete_container", name), None, Request())

    def stats(self) -> Request:
        return self._send(("stats",), None, Request(decode=field_value))

    def containers(self) -> Request:
        return self._send(("stats",), None, Request(decode=lambda m, r: {
            name: Kind(kind) for name, kind in m.fields["value"]["containers"].items()}))

    def ping(self) -> Request:
        return self._send(("ping",), None, Request(decode=pong))

    def raw(self, words: Iterable[str], fields: dict[str, Any] | None = None) -> Request:
        """Any command as words and fields; its value is the answer ``Message`` (with a
        query's rows as ``rows``). An ``open`` or ``create`` gets a handle of this
        connection's choosing, as every other does (so none is chosen twice).

        Raises InvalidArgument for what would bring events or change handles behind
        this object's back (waits, subscriptions, ``close``, ``unwait``, ``give_back``):
        those have their own methods."""
        words = list(words)
        if not words or words[0] in _NOT_RAW or any(
                w.startswith(("tag=", "timeout=")) for w in words):
            raise InvalidArgument(f"raw: {' '.join(words[:1]) or 'nothing'}: use the "
                                  "client's own method for waits, subscriptions and handles")
        if words[0] in ("open", "create") and not any(
                w.startswith("handle=") for w in words):
            self._last_handle += 1
            words.append(f"handle={self._last_handle}")

        def decode(message: Message, rows: list[dict[str, Any]]) -> Message:
            if rows:
                message.fields = {**message.fields, "rows": rows}
            return message
        return self._send(words, fields, Request(decode=decode))

    def query(self, name: str, start: int = 0, end: int | None = None) -> Request:
        """Tio's ``query H [START [END]]``, whose bounds are words, not options."""
        if end == 0:  # Tio reads an end of 0 as "to the end": nothing to ask
            return Request(done=True, value=[])
        options = [str(start)] + ([str(end)] if end is not None else [])
        return self._on("query", name, decode=DECODE["records"], options=options)

    # -- subscriptions --------------------------------------------------------------------

    def subscribe(self, name: str, *, start: int | None = None) -> Request:
        """A subscription is a handle of its own (Tio allows one per handle); the
        request's value is that handle, which names the subscription in events (it
        is set at once, so that a shell can route the events that come before the
        answer)."""
        self._last_handle += 1
        handle = self._last_handle
        opening = self._send(("open", name, f"handle={handle}"), None, Request())
        self._subscriptions[handle] = name
        # __none__: no records first, for a map too (where Tio's classic rule sends all)
        words = ["subscribe", str(handle), "__none__" if start is None else str(start)]
        return self._send(words, None, Request(
            value=handle, decode=lambda m, r: handle, after=opening,
            then=self._unsubscribed_on_error(handle)))

    def unsubscribe(self, subscription: int) -> Request:
        """End a subscription; events already on their way are dropped."""
        self._subscriptions.pop(subscription, None)
        self._closing.add(subscription)
        return self._send(("close", str(subscription)), None,
                          Request(then=lambda r: self._closing.discard(subscription)))


for _command in by_kernel().values():
    setattr(ClientConnection, _command.kernel or "", client_method(_command))
