"""The server's side of the protocol: one client's ``Connection``, which reads its
commands and hands each to its handler (``handlers``, from the command table), and
writes their answers and the kernel's effects for it. No I/O happens here: a transport
feeds a connection the bytes it receives and sends what it queues.

Commands are applied in the order they arrive (so a client may pipeline them); after
each one the kernel's effects are routed to the connections they are addressed to and
only then is the command's answer queued, so the events a command causes for its own
client come before its answer.

Every line gets one answer: a line that does not frame (``codec.Broken``) is answered
``answer error protocol`` and its connection dropped; any other bad line is answered
with an error, its declared payloads drained (an unknown command's too:
``data_offset``).

The classic Tio commands keep their classic answers and events. The extended commands
use the same grammar, with ``name=value`` option words after the handle; a wait given
``tag=X`` answers ``answer ok data ...`` when it completes at once or ``answer ok
waiting X`` when it parks, and its outcome later arrives as an event carrying ``tag=X``.
docs/protocol.md has every command.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

import attrs

from corral.kernel import (
    Cancelled,
    CorralError,
    Delivered,
    Effect,
    Event,
    InvalidArgument,
    Job,
    Notified,
    Unsubscribed,
)

from .codec import Broken, Malformed, Message, Parser, encode, fields_start, present, trailing_specs
from .commands import NOT_SUPPORTED, data_commands
from .errors import ACCESS_DENIED, DETAILED, INVALID_COMMAND, code_of
from .handlers import HANDLERS, VERSION, Parked, on_meta

if TYPE_CHECKING:
    from .server import Server

__all__ = ["VERSION", "Connection", "Drop", "Limits", "check_token", "data_offset",
           "dispatch"]

DATA_COMMANDS = data_commands()


def data_offset(words: tuple[str, ...]) -> int | None:
    """Where a client command's field specs start: for the commands that take fields,
    the first field name after the command (a handle is a number, so one missing is
    no field name); on any other line (an unknown command, one that takes no fields,
    one whose fields are all misspelt), the specs it ends in, if any, so that their
    payloads are drained and the line gets one answer (an error)."""
    if words[0] in DATA_COMMANDS:
        start = fields_start(words, 1)
        if start is not None:
            return start
    return trailing_specs(words)


@attrs.frozen(kw_only=True)
class Limits:
    """Caps per connection. Every one is enforced; none grows without bound."""

    max_line: int = 64 * 1024  # bytes in a command line
    max_payload: int = 16 * 1024 * 1024  # bytes in one field
    max_handles: int = 4096  # open handles
    max_waiters: int = 4096  # pending waits (wnp, queue_get, claim, result, blocked put)
    max_outbound: int = 8 * 1024 * 1024  # bytes queued to the peer before it is dropped
    # Seconds a TCP peer may leave a message half sent (a line, or the payloads it
    # declares) before it is dropped; between messages a peer may idle for as long as
    # it likes (its waits park for hours).
    stall_timeout: float = 30.0


def check_token(token: str | None) -> str | None:
    """``token`` if it can be sent as ``auth TOKEN``: one word, non-empty (None: no
    token). Raises InvalidArgument otherwise, so that a server never starts with a
    token no client could send, nor a client send one no server could hold."""
    if token is not None and token.split() != [token]:
        raise InvalidArgument("a token is one word: no spaces or other blanks, not empty")
    return token


class Drop(Exception):
    """Close this connection (the reason is logged)."""


class Connection:
    """One client: a kernel session, its handles, subscriptions, waits and outbound
    bytes. A transport subclasses it with ``flush()`` (send what is queued) and
    ``drop()`` (end the client)."""

    def __init__(self, server: Server, peer: str) -> None:
        self.server = server
        self.peer = peer
        self.session = server.kernel.open_session()
        self.parser = Parser(data_offset, max_line=server.limits.max_line,
                             max_payload=server.limits.max_payload)
        self.authenticated = server.token is None
        self.handles: dict[int, str] = {}
        self.last_handle = 0
        self.subscriptions: dict[int, int] = {}  # handle -> kernel subscription
        self.sub_handles: dict[int, int] = {}  # kernel subscription -> handle
        self.waits: dict[int, Parked] = {}  # kernel waiter -> who asked
        self.tagged: dict[tuple[int, str], int] = {}  # (handle, tag) -> kernel waiter
        self.meta: dict[int, bool] = {}  # handle on meta/containers -> subscribed
        self.outbound = bytearray()
        self.held: deque[tuple[int, bytes]] = deque()  # (journal record, output) to sync
        self.dropped: str | None = None
        server.connections[self.session] = self

    # -- output -----------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue bytes for the peer; they go out when the server flushes (after the
        input that caused them)."""
        if self.dropped is not None:
            return
        self.outbound += data
        self.server.dirty[self] = None
        if len(self.outbound) > self.server.limits.max_outbound:
            self.drop(f"{len(self.outbound)} bytes unread (cap "
                      f"{self.server.limits.max_outbound}): a peer that does not read")

    def flush(self) -> None:
        """Send what is queued."""
        raise NotImplementedError

    def drop(self, reason: str, *, flush: bool = False) -> None:
        """End this client: at once, or (``flush``) after sending what is queued, such
        as the error that explains why."""
        raise NotImplementedError

    def answer(self, *words: Any, fields: dict[str, Any] | None = None) -> None:
        self.send(encode(("answer", "ok", *map(str, words)), fields))

    def fail(self, code: str, message: str) -> None:
        if code in DETAILED:  # the words say its last line; the field has it whole
            summary = message.strip().splitlines()[-1:] or [""]
            self.send(encode(("answer", "error", code, *summary[0].split()),
                             {"value": message}))
            return
        self.send(encode(("answer", "error", code, *message.split())))

    def on_effect(self, effect: Effect) -> None:
        if type(effect) is Notified:
            handle = self.sub_handles.get(effect.subscription)
            if handle is not None:
                ev = effect.event
                self.send(encode(("event", str(handle), ev.name),
                                 present(key=ev.key, value=ev.value, metadata=ev.metadata)))
        elif type(effect) is Delivered:
            wait = self._settled(effect.waiter)
            fields = _result_fields(effect.event)
            if wait.tag is None and effect.event.name == "get":
                fields.pop("metadata", None)  # the order key: for tagged waits only
            self.send(encode(self._event_words(wait, effect.event.name), fields))
        elif type(effect) is Cancelled:
            wait = self._settled(effect.waiter)
            error = effect.error
            assert isinstance(error, CorralError)
            self.send(encode((*self._event_words(wait, "cancelled"), code_of(error)),
                             {"value": str(error)}))
        elif type(effect) is Unsubscribed:
            handle = self.sub_handles.pop(effect.subscription)
            del self.subscriptions[handle]
            self.send(encode(("event", str(handle), "unsubscribed"),
                             {"value": effect.reason}))

    def _settled(self, waiter: int) -> Parked:
        """Forget a wait whose outcome is being sent."""
        wait = self.waits.pop(waiter)
        if wait.tag is not None:
            key = (wait.handle, wait.tag)
            if self.tagged.get(key) == waiter:  # a tag used twice names the newer
                del self.tagged[key]
        return wait

    def _event_words(self, wait: Parked, name: str) -> tuple[str, ...]:
        words: tuple[str, ...] = ("event", str(wait.handle), name)
        return words + (f"tag={wait.tag}",) if wait.tag is not None else words

    # -- input ------------------------------------------------------------------------

    def receive(self, data: bytes | bytearray) -> None:
        for item in self.parser.feed(data):
            if self.dropped is not None:
                return  # nothing more is applied for a client being dropped
            if type(item) is Broken:
                self.fail("protocol", item.reason)
                raise Drop(f"unreadable input: {item.reason}")
            if type(item) is Malformed:
                self.fail("invalid_argument", f"{item.words[0]}: {item.reason}")
                continue
            assert type(item) is Message
            dispatch(self.server, self, item)

    def close(self) -> None:
        """End the kernel session: its waits are withdrawn, its subscriptions end and
        its leases go back per each queue's policy. What that hands to other clients is
        sent to them."""
        server = self.server
        del server.connections[self.session]
        server.dirty.pop(self, None)
        server.watchers.pop(self, None)
        server.kernel.close_session(self.session, now=server.now())
        server.route()
        server.flush()


def _result_fields(event: Event) -> dict[str, Any]:
    """The fields of a served wait's event: a Job token as key, value, metadata=attempt."""
    if isinstance(event.value, Job):
        job = event.value
        return {"key": job.id, "value": job.item, "metadata": job.attempt}
    return {**present(key=event.key, metadata=event.metadata), "value": event.value}


def dispatch(server: Server, conn: Connection, message: Message) -> None:
    """Apply one command for ``conn``; queue its events, then its answer."""
    server.commands += 1
    words = message.words
    name = words[0]
    handler = HANDLERS.get(name)
    if handler is None:
        if name in NOT_SUPPORTED:
            conn.fail("invalid_argument", f"not supported: {name} ({NOT_SUPPORTED[name]})")
        else:
            conn.fail(INVALID_COMMAND, f"{name!r} is not a command")
        return
    if not conn.authenticated and name not in ("auth", "ping"):
        conn.fail(ACCESS_DENIED, "send auth TOKEN first")
        return
    if message.fields and name not in DATA_COMMANDS:  # drained, not ignored
        conn.fail("invalid_argument", f"{name} takes no fields")
        return
    if conn.meta:
        handler = on_meta(conn, words, handler)
    try:
        handler(server, conn, words, message.fields)
    except CorralError as error:
        server.route()
        conn.fail(code_of(error), str(error))
    except (ValueError, KeyError, IndexError, TypeError) as error:
        server.route()
        conn.fail("invalid_argument", f"{name}: {error}")
