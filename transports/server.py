"""What every transport serves: one kernel, its sessions, and the protocol's commands.

A ``Session`` is one client of the kernel (a TCP connection, a ZeroMQ peer): a kernel
session with its handles, subscriptions, waits and outbound bytes. Commands are applied
in the order they arrive (so a client may pipeline them); after each one the kernel's
effects are routed to the sessions they are addressed to and only then is the command's
answer queued, so the events a command causes for its own client come before its answer.
A transport feeds a session the bytes it receives and sends what ``flush()`` hands it;
the outbound buffer has a cap, and a peer that lets it fill is dropped (and logged)
instead of growing the server's memory.

No input stops the server. Every line gets one answer: a line that does not frame
(``codec.Broken``) is answered ``answer error protocol`` and its connection closed; any
other bad line is answered with an error, its declared payloads drained (an unknown
command's too: ``data_offset``). The transports drop, with a logged reason, a connection
whose input raises anything unexpected, and (TCP) one that stalls inside a message for
``Limits.stall_timeout`` seconds.

The classic Tio commands keep their classic answers and events. The extended commands
(feeds, sorted feeds, queues, jobs, and waits with timeouts) use the same grammar, with
``name=value`` option words after the handle; a wait given ``tag=X`` answers ``answer ok
data ...`` when it completes at once or ``answer ok waiting X`` when it parks, and its
outcome later arrives as an event carrying ``tag=X``. docs/protocol.md has every command.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
import warnings
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
import trio

from corral.kernel import (
    GIVEN_BACK,
    Cancelled,
    CorralError,
    Delivered,
    Effect,
    Event,
    InvalidArgument,
    Job,
    Kernel,
    Kind,
    NotFound,
    Notified,
    Unsubscribed,
    Waiting,
)

from .alarm import Alarm
from .codec import (
    Broken,
    Malformed,
    Message,
    Parser,
    encode,
    fields_start,
    present,
    trailing_specs,
)
from .errors import ACCESS_DENIED, INVALID_COMMAND, code_of
from .journal import Journal, JournaledKernel, Rotation

__all__ = ["VERSION", "Drop", "Limits", "Server", "Session"]

log = logging.getLogger("corral.server")

VERSION = "0.1"

OK = b"answer ok \r\n"  # the answer of a command that returns nothing (Tio's form)

# Commands whose lines may end in field specs (after the handle and any options).
DATA_COMMANDS = frozenset({
    "get", "set", "insert", "delete", "push_back", "push_front", "get_property",
    "set_property", "wnp_key", "publish", "retract", "append", "prepend", "insert_before",
    "insert_after", "edit", "move_before", "move_after", "move_first", "move_last", "put",
    "finish", "cancel", "stall", "touch", "retry", "result", "state", "give_back",
})


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
    max_waiters: int = 4096  # pending waits (wnp, take, claim, result, blocked put)
    max_outbound: int = 8 * 1024 * 1024  # bytes queued to the peer before it is dropped
    # Seconds a TCP peer may leave a message half sent (a line, or the payloads it
    # declares) before it is dropped; between messages a peer may idle for as long as
    # it likes (its waits park for hours).
    stall_timeout: float = 30.0


class Drop(Exception):
    """Close this connection (the reason is logged)."""


@attrs.define(eq=False)
class _Wait:
    handle: int
    tag: str | None
    op: str


def _write_and_sync(journal: Journal, data: bytes, offset: int) -> None:
    journal.write_at(data, offset)
    journal.sync()


def _write_and_retire(journal: Journal, rotation: Rotation, state: bytes) -> None:
    journal.retire(rotation, journal.write_snapshot(rotation.gen, state))


def _fork_snapshot(journal: Journal, gen: int, kernel: JournaledKernel) -> int:
    """Fork a child that writes generation ``gen``'s snapshot from its image of the
    kernel and exits; returns its pid. The child touches nothing but the snapshot."""
    with warnings.catch_warnings():  # the threads it leaves behind never run in it
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)
        # Let go of the sockets (and everything else): a connection the server closes
        # meanwhile must not stay open in the child.
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        journal.write_snapshot(gen, kernel.snapshot())
        code = 0
    finally:
        os._exit(code)


class Session:
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
        self.waits: dict[int, _Wait] = {}  # kernel waiter -> who asked
        self.tagged: dict[tuple[int, str], int] = {}  # (handle, tag) -> kernel waiter
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

    def _settled(self, waiter: int) -> _Wait:
        """Forget a wait whose outcome is being sent."""
        wait = self.waits.pop(waiter)
        if wait.tag is not None:
            key = (wait.handle, wait.tag)
            if self.tagged.get(key) == waiter:  # a tag used twice names the newer
                del self.tagged[key]
        return wait

    def _event_words(self, wait: _Wait, name: str) -> tuple[str, ...]:
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
            self.server.run(self, item)

    def close(self) -> None:
        """End the kernel session: its waits are withdrawn, its subscriptions end and
        its leases go back per each queue's policy. What that hands to other clients is
        sent to them."""
        server = self.server
        del server.connections[self.session]
        server.dirty.pop(self, None)
        server.kernel.close_session(self.session, now=server.now())
        server.route()
        server.flush()


def _result_fields(event: Event) -> dict[str, Any]:
    """The fields of a served wait's event: a Job token as key, value, metadata=attempt."""
    if isinstance(event.value, Job):
        job = event.value
        return {"key": job.id, "value": job.item, "metadata": job.attempt}
    return {**present(key=event.key, metadata=event.metadata), "value": event.value}


class Server:
    """One kernel and the clients sharing it, over any number of transports."""

    def __init__(self, *, token: str | None = None, limits: Limits | None = None,
                 kernel: Kernel | None = None, journal: Journal | None = None) -> None:
        """``journal``: keep every container durable in it (replayed here)."""
        if journal is not None:
            if kernel is not None:
                raise InvalidArgument("a journaled server makes its own kernel")
            kernel = JournaledKernel(journal)
        self.kernel = kernel or Kernel()
        self.journal = journal
        self.token = token
        self.limits = limits or Limits()
        self.connections: dict[int, Session] = {}  # by session
        self.queries = 0
        self.alarm = Alarm(self.kernel, self._timers_fired)
        self.started: float | None = None  # when the first transport started serving
        self.commands = 0
        self.dirty: dict[Session, None] = {}  # connections with output to flush
        self.holding: dict[Session, None] = {}  # sessions with output awaiting an fsync
        self._commit_wanted = trio.Event()
        self.offset = 0.0  # kernel time minus trio time
        self._nursery: trio.Nursery | None = None  # where snapshots are written

    def now(self) -> float:
        """The kernel's time: trio's clock, or with a journal the wall clock, so that
        deadlines survive a restart."""
        return trio.current_time() + self.offset

    def start(self, nursery: trio.Nursery) -> None:
        """Run the kernel's timers in ``nursery``: once, however many transports serve
        this server (each calls this as it starts)."""
        if self.started is None:
            self.started = trio.current_time()
            if self.journal is not None:
                self.offset = self.alarm.offset = time.time() - trio.current_time()
                # The connections of the last run are gone: close their sessions (as
                # their queues' release_on_close says), as if they had disconnected.
                for session in self.kernel.sessions():
                    self.kernel.close_session(session, now=self.now())
                self.route()
                self._nursery = nursery
                nursery.start_soon(self._keep_journal)
            nursery.start_soon(self.alarm.run)

    # -- the kernel's effects and timers ----------------------------------------------

    def route(self) -> None:
        """Deliver the kernel's effects to their connections; re-arm the alarm."""
        kernel = self.kernel
        if kernel.effects:
            for effect in kernel.take_effects():
                conn = self.connections.get(effect.session)
                if conn is not None:
                    conn.on_effect(effect)
        self.alarm.rearm()

    def _timers_fired(self) -> None:
        self.route()
        self.flush()

    def flush(self) -> None:
        """Send what the last input queued for every connection it touched: at once,
        or with ``fsync=always`` once the journal records it depends on are synced."""
        if not self.dirty and self.journal is None:
            return
        dirty, self.dirty = self.dirty, {}
        journal = self.journal
        if journal is not None:
            if journal.fsync != "always":
                journal.write()
            elif journal.appended > journal.synced or self.holding:
                upto = journal.appended
                for conn in dirty:
                    if conn.outbound and (upto > journal.synced or conn in self.holding):
                        conn.held.append((upto, bytes(conn.outbound)))
                        conn.outbound.clear()
                        self.holding[conn] = None
                # Group commit: the journal task syncs once the other tasks woken with
                # this one have applied their input too (as Redis syncs once its event
                # loop has read everything). A lone client has nobody to wait for.
                if len(self.connections) > 1:
                    self._commit_wanted.set()
                else:
                    self._commit()
        for conn in dirty:
            conn.flush()

    def _commit(self) -> None:
        """Write and sync the records that have piled up, in this thread (what arrives
        meanwhile waits in the sockets for the next sync), then release the output
        that waited for them."""
        journal = self.journal
        assert journal is not None
        if journal.appended > journal.synced:
            data, offset, upto = journal.take()
            self._journal_sync(_write_and_sync, journal, data, offset)
            journal.written = journal.synced = upto
        for conn in list(self.holding):
            while conn.held and conn.held[0][0] <= journal.synced:
                conn.outbound += conn.held.popleft()[1]
            if not conn.held:
                del self.holding[conn]
            conn.flush()
        self._snapshot_if_due()

    def _snapshot_if_due(self) -> None:
        """Snapshot when the journal has grown, between writes, so that a generation
        ends with everything in it written. A child process writes it, from a
        copy-on-write image of this one (as Redis does), so that service goes on;
        where there is no fork, the state is copied here and written in a thread."""
        journal = self.journal
        assert journal is not None and self._nursery is not None
        if not (journal.wants_snapshot() and journal.appended == journal.written):
            return
        assert isinstance(self.kernel, JournaledKernel)
        rotation = journal.rotate()
        if hasattr(os, "fork"):
            try:
                pid = _fork_snapshot(journal, rotation.gen, self.kernel)
            except OSError as error:  # no memory for a child, say: not fatal
                log.error("cannot fork to write a snapshot: %s: trying again later",
                          error)
                journal.abandon(rotation)
                return
            self._nursery.start_soon(self._await_snapshot, rotation, pid)
        else:
            state = self.kernel.snapshot()
            self._nursery.start_soon(self._journal_io, _write_and_retire, journal,
                                     rotation, state)

    async def _await_snapshot(self, rotation: Rotation, pid: int) -> None:
        journal = self.journal
        assert journal is not None
        _, status = await trio.to_thread.run_sync(os.waitpid, pid, 0)
        if os.waitstatus_to_exitcode(status) == 0:
            size = (journal.directory / f"snapshot-{rotation.gen:08d}.bin").stat().st_size
            await self._journal_io(journal.retire, rotation, size)
        else:
            log.error("the snapshot of generation %d failed (status %d): keeping every "
                      "journal file, trying again later", rotation.gen, status)
            journal.abandon(rotation)

    async def _keep_journal(self) -> None:
        """The journal's task: with ``always``, the syncs ``flush`` leaves to it; with
        ``everysec``, an fsync every second; with ``no``, writes and snapshots."""
        journal = self.journal
        assert journal is not None
        while True:
            if journal.fsync == "always":
                await self._commit_wanted.wait()
                self._commit_wanted = trio.Event()
                self._commit()
                continue
            await trio.sleep(1.0)
            if journal.fsync == "everysec" and journal.written > journal.synced:
                upto = journal.written
                await self._journal_io(journal.sync)
                journal.synced = upto
            journal.write()
            self._snapshot_if_due()

    def _journal_sync(self, work: Callable[..., None], *args: Any) -> None:
        """Journal I/O. It failing is fatal: the server stops rather than acknowledge
        what it could not make durable."""
        try:
            work(*args)
        except OSError as error:
            log.critical("the journal in %s failed: %s: stopping, so that nothing that "
                         "is not durable is acknowledged",
                         self.journal.directory if self.journal else "?", error)
            raise

    async def _journal_io(self, work: Callable[..., None], *args: Any) -> None:
        """``_journal_sync`` in a thread."""
        await trio.to_thread.run_sync(self._journal_sync, work, *args)

    # -- commands ---------------------------------------------------------------------

    def run(self, conn: Session, message: Message) -> None:
        """Apply one command for ``conn``; queue its events, then its answer."""
        self.commands += 1
        words = message.words
        name = words[0]
        command = _COMMANDS.get(name)
        if command is None:
            conn.fail(INVALID_COMMAND, f"{name!r} is not a command")
            return
        if not conn.authenticated and name not in ("auth", "ping"):
            conn.fail(ACCESS_DENIED, "send auth TOKEN first")
            return
        if message.fields and name not in DATA_COMMANDS:  # drained, not ignored
            conn.fail("invalid_argument", f"{name} takes no fields")
            return
        try:
            command(self, conn, words, message.fields)
        except CorralError as error:
            self.route()
            conn.fail(code_of(error), str(error))
        except (ValueError, KeyError, IndexError, TypeError) as error:
            self.route()
            conn.fail("invalid_argument", f"{name}: {error}")


# -- command helpers --------------------------------------------------------------------

Command = Callable[["Server", "Session", tuple[str, ...], dict[str, Any]], None]


def _handle(conn: Session, words: tuple[str, ...], at: int = 1) -> tuple[int, str]:
    try:
        handle = int(words[at])
        return handle, conn.handles[handle]
    except (IndexError, ValueError, KeyError):
        raise NotFound(f"{words[0]}: invalid handle") from None


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidArgument(f"{text!r} is not a finite number")
    return value


def _options(words: tuple[str, ...], start: int, allowed: dict[str, Callable[[str], Any]]
             ) -> dict[str, Any]:
    """The ``name=value`` words from ``start`` on, converted; unknown ones raise."""
    options: dict[str, Any] = {}
    for word in words[start:]:
        name, sep, text = word.partition("=")
        if not sep or name not in allowed:
            raise InvalidArgument(f"{words[0]}: unknown option {word!r} "
                                  f"(expected {', '.join(sorted(allowed)) or 'none'})")
        options[name] = allowed[name](text)
    return options


def _required(fields: dict[str, Any], *names: str, op: str) -> list[Any]:
    try:
        return [fields[n] for n in names]
    except KeyError:
        missing = [n for n in names if n not in fields]
        raise InvalidArgument(f"{op}: missing field {', '.join(missing)}") from None


def _timeout(text: str) -> float | None:
    return None if text in ("none", "inf") else _number(text)


def _wait(server: Server, conn: Session, handle: int, tag: str | None, op: str,
          result: Any, immediate: Callable[[Any], None]) -> None:
    """Answer a wait command: its result now, or register it as parked."""
    if type(result) is Waiting:
        if len(conn.waits) >= server.limits.max_waiters:
            server.kernel.cancel_wait(conn.session, result.waiter)
            raise InvalidArgument(f"{op}: {server.limits.max_waiters} waits pending "
                                  "on this connection")
        conn.waits[result.waiter] = _Wait(handle, tag, op)
        if tag is not None:
            conn.tagged[handle, tag] = result.waiter
        server.route()
        conn.answer("waiting", tag) if tag is not None else conn.send(OK)
        return
    immediate(result)


# -- classic commands ---------------------------------------------------------------------


def _ping(server: Server, conn: Session, words: tuple[str, ...], fields: dict[str, Any]
          ) -> None:
    conn.answer("pong", *words[1:])


def _ver(server: Server, conn: Session, words: tuple[str, ...], fields: dict[str, Any]
         ) -> None:
    conn.answer(VERSION)


def _auth(server: Server, conn: Session, words: tuple[str, ...], fields: dict[str, Any]
          ) -> None:
    """``auth TOKEN``, or Tio's classic ``auth USER clean PASSWORD`` with the token as
    the password."""
    given = words[1] if len(words) == 2 else words[3] if (
        len(words) == 4 and words[2] == "clean") else None
    if server.token is None or given == server.token:
        conn.authenticated = True
        conn.send(OK)
    else:
        conn.fail(ACCESS_DENIED, "wrong token")


_KIND_OPTIONS: dict[str, Callable[[str], Any]] = {
    "max_length": int, "lease": _number, "max_attempts": int,
    "release_on_close": lambda t: {"true": True, "false": False}[t],
    "result_ttl": _number,
}


def _chosen_handle(server: Server, conn: Session, name: str, words: tuple[str, ...],
                   start: int) -> tuple[int | None, tuple[str, ...]]:
    """A ``handle=N`` option among ``words[start:]`` (the client names the handle, so
    it can pipeline commands on it), checked before anything is done; and the words
    without it. N may be bound already, to this same name: it is then reused."""
    for i in range(start, len(words)):
        if words[i].startswith("handle="):
            text = words[i][7:]
            if not (text.isascii() and text.isdigit() and 0 < len(text) <= 9
                    and int(text) > 0):
                raise InvalidArgument(f"{words[0]}: handle={text!r} is not a handle "
                                      "(1 to 999999999)")
            handle = int(text)
            bound = conn.handles.get(handle)
            if bound is not None and bound != name:
                raise InvalidArgument(f"{words[0]}: handle {handle} is open on "
                                      f"{bound!r}, not {name!r}")
            if bound is None:
                _check_room(server, conn)
            return handle, words[:i] + words[i + 1:]
    _check_room(server, conn)
    return None, words


def _check_room(server: Server, conn: Session) -> None:
    if len(conn.handles) >= server.limits.max_handles:
        raise InvalidArgument(f"{server.limits.max_handles} handles open on this connection")


def _new_handle(conn: Session, name: str, kind: Kind, handle: int | None) -> None:
    if handle is None:
        conn.last_handle += 1
        while conn.last_handle in conn.handles:  # skip those the client chose
            conn.last_handle += 1
        handle = conn.last_handle
    conn.handles[handle] = name
    conn.answer("handle", handle, kind.value)


def _create(server: Server, conn: Session, words: tuple[str, ...], fields: dict[str, Any]
            ) -> None:
    if len(words) < 3:
        raise InvalidArgument("create NAME TYPE [option=value ...] [handle=N]")
    name = words[1]
    if name.startswith("__"):
        raise InvalidArgument(f"create: names starting with __ are reserved ({name!r})")
    handle, words = _chosen_handle(server, conn, name, words, 3)
    kind_name = words[2]
    if kind_name in ("persistent_list", "persistent_map"):  # Tio's durable kinds
        if server.journal is None:
            raise InvalidArgument(f"create: {kind_name} needs a journal (corral serve "
                                  "--journal DIR), which this server does not have")
        kind_name = kind_name.replace("persistent", "volatile")
    kind = server.kernel.create(name, kind_name, **_options(words, 3, _KIND_OPTIONS))
    _new_handle(conn, name, kind, handle)


def _open(server: Server, conn: Session, words: tuple[str, ...], fields: dict[str, Any]
          ) -> None:
    handle, words = _chosen_handle(server, conn, words[1] if len(words) > 1 else "",
                                   words, 2)
    if len(words) not in (2, 3):
        raise InvalidArgument("open NAME [TYPE] [handle=N]")
    kind = server.kernel.open(words[1])
    if len(words) == 3 and Kind(words[2]) is not kind:
        raise NotFound(f"open: {words[1]!r} is a {kind.value}, not a {words[2]}")
    _new_handle(conn, words[1], kind, handle)


def _close(server: Server, conn: Session, words: tuple[str, ...], fields: dict[str, Any]
           ) -> None:
    handle, _ = _handle(conn, words)
    _unsubscribe_handle(server, conn, handle)
    del conn.handles[handle]
    conn.send(OK)


def _delete_container(server: Server, conn: Session, words: tuple[str, ...],
                      fields: dict[str, Any]) -> None:
    if len(words) not in (2, 3):
        raise InvalidArgument("delete_container [TYPE] NAME")
    if len(words) == 3 and server.kernel.open(words[2]) is not Kind(words[1]):
        raise NotFound(f"delete_container: {words[2]!r} is not a {words[1]}")
    server.kernel.delete_container(words[-1])
    server.route()
    conn.send(OK)


def _get_count(server: Server, conn: Session, words: tuple[str, ...],
               fields: dict[str, Any]) -> None:
    conn.answer("count", server.kernel.count(_handle(conn, words)[1]))


def _record_fields(record: Any) -> dict[str, Any]:
    return {**present(key=record.key, metadata=record.metadata), "value": record.value}


def _record_answer(conn: Session, record: Any) -> None:
    conn.answer("data", fields=_record_fields(record))


def _get(server: Server, conn: Session, words: tuple[str, ...], fields: dict[str, Any]
         ) -> None:
    (key,) = _required(fields, "key", op="get")
    _record_answer(conn, server.kernel.get(_handle(conn, words)[1], key))


def _set_or_insert(op: str) -> Command:
    def command(server: Server, conn: Session, words: tuple[str, ...],
                fields: dict[str, Any]) -> None:
        key, value = _required(fields, "key", "value", op=op)
        getattr(server.kernel, op)(_handle(conn, words)[1], key, value,
                                   fields.get("metadata"))
        server.route()
        conn.send(OK)
    return command


def _delete(server: Server, conn: Session, words: tuple[str, ...], fields: dict[str, Any]
            ) -> None:
    (key,) = _required(fields, "key", op="delete")
    server.kernel.delete(_handle(conn, words)[1], key)
    server.route()
    conn.send(OK)


def _push(op: str) -> Command:
    def command(server: Server, conn: Session, words: tuple[str, ...],
                fields: dict[str, Any]) -> None:
        (value,) = _required(fields, "value", op=op)
        getattr(server.kernel, op)(_handle(conn, words)[1], value, fields.get("metadata"))
        server.route()
        conn.send(OK)
    return command


def _pop(op: str) -> Command:
    def command(server: Server, conn: Session, words: tuple[str, ...],
                fields: dict[str, Any]) -> None:
        record = getattr(server.kernel, op)(_handle(conn, words)[1])
        server.route()
        _record_answer(conn, record)
    return command


def _clear(server: Server, conn: Session, words: tuple[str, ...], fields: dict[str, Any]
           ) -> None:
    server.kernel.clear(_handle(conn, words)[1])
    server.route()
    conn.send(OK)


def _subscribe(server: Server, conn: Session, words: tuple[str, ...],
               fields: dict[str, Any]) -> None:
    handle, name = _handle(conn, words)
    if handle in conn.subscriptions:
        raise InvalidArgument(f"subscribe: handle {handle} is already subscribed")
    start = None
    if len(words) > 2 and words[2] != "__none__":
        try:
            start = int(words[2])
        except ValueError:
            raise InvalidArgument(f"subscribe: invalid start index {words[2]!r}") from None
    sid = server.kernel.subscribe(conn.session, name, start=start)
    conn.subscriptions[handle], conn.sub_handles[sid] = sid, handle
    server.route()  # a snapshot's events go before the answer
    conn.send(b"answer ok\r\n")


def _unsubscribe_handle(server: Server, conn: Session, handle: int) -> None:
    sid = conn.subscriptions.pop(handle, None)
    if sid is not None:
        del conn.sub_handles[sid]
        server.kernel.unsubscribe(conn.session, sid)


def _unsubscribe(server: Server, conn: Session, words: tuple[str, ...],
                 fields: dict[str, Any]) -> None:
    handle, _ = _handle(conn, words)
    _unsubscribe_handle(server, conn, handle)
    conn.send(OK)


def _get_property(server: Server, conn: Session, words: tuple[str, ...],
                  fields: dict[str, Any]) -> None:
    (key,) = _required(fields, "key", op="get_property")
    value = server.kernel.get_property(_handle(conn, words)[1], key)
    conn.answer("data", fields={"key": key, "value": value})


def _set_property(server: Server, conn: Session, words: tuple[str, ...],
                  fields: dict[str, Any]) -> None:
    key, value = _required(fields, "key", "value", op="set_property")
    server.kernel.set_property(_handle(conn, words)[1], key, value)
    conn.send(OK)


def _send_query(server: Server, conn: Session, rows: list[dict[str, Any]]) -> None:
    server.queries += 1
    q = str(server.queries)
    conn.answer("query", q)
    for row in rows:
        conn.send(encode(("query", q, "item"), row))
    conn.send(encode(("query", q, "end")))


def _query(server: Server, conn: Session, words: tuple[str, ...], fields: dict[str, Any]
           ) -> None:
    _, name = _handle(conn, words)
    start = int(words[2]) if len(words) > 2 else 0
    end = int(words[3]) if len(words) > 3 and words[3] != "0" else None  # Tio: 0 = to end
    records = server.kernel.query(name, start, end)
    _send_query(server, conn, [_record_fields(r) for r in records])


_WAIT_OPTIONS: dict[str, Callable[[str], Any]] = {"timeout": _timeout, "tag": str}


def _wnp(op: str) -> Command:
    event = "wnp_next" if op == "wait_pop_next" else "wnp_key"

    def command(server: Server, conn: Session, words: tuple[str, ...],
                fields: dict[str, Any]) -> None:
        handle, name = _handle(conn, words)
        options = _options(words, 2, _WAIT_OPTIONS)
        tag, timeout = options.get("tag"), options.get("timeout")
        args = (conn.session, name) + ((_required(fields, "key", op=event)[0],)
                                      if op == "wait_pop_key" else ())
        result = getattr(server.kernel, op)(*args, timeout=timeout,
                                            now=server.now())

        def immediate(pair: Any) -> None:
            value, metadata = pair
            key = 0 if op == "wait_pop_next" else args[2]
            popped = {**present(key=key, metadata=metadata), "value": value}
            server.route()
            if tag is not None:
                conn.answer("data", fields=popped)
            else:  # classic: the event, then the answer
                conn.send(encode(("event", str(handle), event), popped))
                conn.send(OK)

        _wait(server, conn, handle, tag, event, result, immediate)
    return command


# -- extended commands: feeds, sorted feeds, queues, jobs ----------------------------------


def _simple(op: str, fields_in: tuple[str, ...] = (), optional: tuple[str, ...] = (),
            options: dict[str, Callable[[str], Any]] | None = None,
            answer: str | None = None, now: bool = False) -> Command:
    """A command that calls ``kernel.op(name, *fields_in, *optional, **options)`` and
    answers ``answer ok`` or, with ``answer`` set, ``answer ok data <answer> <result>``."""

    def command(server: Server, conn: Session, words: tuple[str, ...],
                fields: dict[str, Any]) -> None:
        _, name = _handle(conn, words)
        args = _required(fields, *fields_in, op=op)
        args += [fields.get(f) for f in optional]
        kwargs = _options(words, 2, options or {})
        if now:
            kwargs["now"] = server.now()
        result = getattr(server.kernel, op)(name, *args, **kwargs)
        server.route()
        if answer is None:
            conn.send(OK)
        else:
            conn.answer("data", fields={answer: result})
    return command


def _ids_or_items(op: str) -> Command:
    def command(server: Server, conn: Session, words: tuple[str, ...],
                fields: dict[str, Any]) -> None:
        _, name = _handle(conn, words)
        if op == "ids":
            rows = [{"key": id} for id in server.kernel.ids(name)]
        else:
            rows = [{"key": id, "value": item} for id, item in server.kernel.items(name)]
        _send_query(server, conn, rows)
    return command


def _job_token(fields: dict[str, Any], words: tuple[str, ...], op: str) -> Job:
    """A claim token from the wire: the job id in ``key``, ``attempt=N`` as an option."""
    (id,) = _required(fields, "key", op=op)
    for word in words[2:]:
        if word.startswith("attempt="):
            return Job(id, None, int(word[8:]))
    raise InvalidArgument(f"{op}: attempt=N is required")


def _leased(op: str, options: dict[str, Callable[[str], Any]], value: str | None) -> Command:
    """finish, cancel, stall and touch: a claim token, options and maybe a value field."""

    def command(server: Server, conn: Session, words: tuple[str, ...],
                fields: dict[str, Any]) -> None:
        _, name = _handle(conn, words)
        job = _job_token(fields, words, op)
        kwargs = _options(tuple(w for w in words if not w.startswith("attempt=")), 2,
                          options)
        if op != "stall":
            kwargs["now"] = server.now()
        args = (fields.get("value"),) if value == "positional" else ()
        if value == "reason":
            kwargs["reason"] = fields.get("value")
        getattr(server.kernel, op)(name, job, *args, **kwargs)
        server.route()
        conn.send(OK)
    return command


def _put(server: Server, conn: Session, words: tuple[str, ...], fields: dict[str, Any]
         ) -> None:
    handle, name = _handle(conn, words)
    (item,) = _required(fields, "value", op="put")
    if server.kernel.open(name) is Kind.JOBS:
        options = _options(words, 2, {"priority": int, "delay": _number})
        id = server.kernel.put(name, item, id=fields.get("key"), now=server.now(),
                               **options)
        server.route()
        conn.answer("data", fields={"key": id})
        return
    options = _options(words, 2, {"priority": int, **_WAIT_OPTIONS})
    tag = options.pop("tag", None)
    result = server.kernel.queue_put(conn.session, name, item, now=server.now(),
                                     **options)

    def immediate(_: Any) -> None:
        server.route()
        conn.send(OK)

    _wait(server, conn, handle, tag, "put", result, immediate)


def _waiting(op: str, options: dict[str, Callable[[str], Any]], key: bool = False
             ) -> Command:
    """take (a queue's get), claim and result: waits that answer with data."""

    def command(server: Server, conn: Session, words: tuple[str, ...],
                fields: dict[str, Any]) -> None:
        handle, name = _handle(conn, words)
        kwargs = _options(words, 2, options)
        tag = kwargs.pop("tag", None)
        if op == "queue_get" and tag is not None:
            kwargs["receipt"] = True  # what give_back needs, for a client that may cancel
        args = (conn.session, name) + ((_required(fields, "key", op=op)[0],) if key else ())
        result = getattr(server.kernel, op)(*args, now=server.now(), **kwargs)

        def immediate(got: Any) -> None:
            server.route()
            if isinstance(got, Job):
                conn.answer("data", fields={"key": got.id, "value": got.item,
                                            "metadata": got.attempt})
            else:
                conn.answer("data", fields={**present(metadata=got[1]), "value": got[0]})

        _wait(server, conn, handle, tag, op, result, immediate)
    return command


def _unwait(server: Server, conn: Session, words: tuple[str, ...], fields: dict[str, Any]
            ) -> None:
    """Withdraw a parked wait by its tag: ``answer ok data value int 1``, or 0 if it was
    no longer parked (its outcome event is on its way, or came)."""
    handle, _ = _handle(conn, words)
    tag = _options(words, 2, {"tag": str}).get("tag")
    if tag is not None:  # by its index: a storm of cancels costs one lookup each
        waiter = conn.tagged.get((handle, tag))
    else:  # Tio's untagged waits: the oldest on the handle
        waiter = next((w for w, wait in conn.waits.items()
                       if wait.tag is None and wait.handle == handle), None)
    if waiter is None:
        conn.answer("data", fields={"value": 0})
        return
    conn._settled(waiter)
    withdrawn = server.kernel.cancel_wait(conn.session, waiter)
    server.route()
    conn.answer("data", fields={"value": int(withdrawn)})


def _give_back(server: Server, conn: Session, words: tuple[str, ...],
               fields: dict[str, Any]) -> None:
    """``give_back H of=EVENT`` with a served wait's fields as they came (for claimed:
    key, the job id, and metadata, the attempt): the kernel's exact inverse of that
    delivery, for a caller that is gone. The fields are the receipt; nothing is kept."""
    _, name = _handle(conn, words)
    of = _options(words, 2, {"of": str}).get("of")
    if of is None:
        raise InvalidArgument(f"give_back: of={'|'.join(GIVEN_BACK)} is required")
    if of == "claimed":
        id, attempt = _required(fields, "key", "metadata", op="give_back")
        delivery = Event(name, of, id, Job(id, fields.get("value"), attempt), None)
    else:
        (value,) = _required(fields, "value", op="give_back")
        delivery = Event(name, of, fields.get("key"), value, fields.get("metadata"))
    server.kernel.give_back(conn.session, name, delivery, now=server.now())
    server.route()
    conn.send(OK)


def _state(server: Server, conn: Session, words: tuple[str, ...], fields: dict[str, Any]
           ) -> None:
    (id,) = _required(fields, "key", op="state")
    state = server.kernel.state(_handle(conn, words)[1], id)
    conn.answer("data", fields={"key": id, "value": state.value})


def _statistics(server: Server, conn: Session, words: tuple[str, ...],
                fields: dict[str, Any]) -> None:
    stats = attrs.asdict(server.kernel.statistics(_handle(conn, words)[1]))
    stats["kind"] = stats["kind"].value
    conn.answer("data", fields={"value": stats})


def _stats(server: Server, conn: Session, words: tuple[str, ...], fields: dict[str, Any]
           ) -> None:
    kernel = server.kernel
    conn.answer("data", fields={"value": {
        "version": VERSION,
        "uptime": round(trio.current_time() - (server.started or 0.0), 3),
        "connections": len(server.connections),
        "commands": server.commands,
        "containers": {name: kind.value for name, kind in kernel.containers().items()},
    }})


_COMMANDS: dict[str, Command] = {
    "ping": _ping, "ver": _ver, "auth": _auth, "create": _create, "open": _open,
    "close": _close, "delete_container": _delete_container, "get_count": _get_count,
    "get": _get, "set": _set_or_insert("set"), "insert": _set_or_insert("insert"),
    "delete": _delete, "push_back": _push("push_back"), "push_front": _push("push_front"),
    "pop_back": _pop("pop_back"), "pop_front": _pop("pop_front"), "clear": _clear,
    "subscribe": _subscribe, "unsubscribe": _unsubscribe, "get_property": _get_property,
    "set_property": _set_property, "query": _query, "wnp_next": _wnp("wait_pop_next"),
    "wnp_key": _wnp("wait_pop_key"),
    # extended
    "publish": _simple("publish", ("value",), ("key",), answer="key"),
    "retract": _simple("retract", ("key",)),
    "ids": _ids_or_items("ids"), "items": _ids_or_items("items"),
    "append": _simple("append", ("value",), answer="key"),
    "prepend": _simple("prepend", ("value",), answer="key"),
    "insert_before": _simple("insert_before", ("key", "value"), answer="key"),
    "insert_after": _simple("insert_after", ("key", "value"), answer="key"),
    "edit": _simple("edit", ("key", "value")),
    "move_before": _simple("move_before", ("value", "key")),
    "move_after": _simple("move_after", ("value", "key")),
    "move_first": _simple("move_first", ("key",)),
    "move_last": _simple("move_last", ("key",)),
    "put": _put,
    "take": _waiting("queue_get", _WAIT_OPTIONS),
    "claim": _waiting("claim", {**_WAIT_OPTIONS, "lease": _number}),
    "result": _waiting("result", _WAIT_OPTIONS, key=True),
    "finish": _leased("finish", {"result_ttl": _number}, "positional"),
    "cancel": _leased("cancel", {"delay": _number}, "reason"),
    "stall": _leased("stall", {}, "positional"),
    "touch": _leased("touch", {"lease": _number}, None),
    "retry": _simple("retry", ("key",), now=True),
    "state": _state,
    "unwait": _unwait,
    "give_back": _give_back,
    "statistics": _statistics,
    "stats": _stats,
}

