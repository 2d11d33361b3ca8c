"""The handler of every command, by its word on the wire: those the command table
describes read their arguments and write their answers as it says; sessions, handles
and subscriptions are written by hand. A handler applies one command to the server's
kernel for one ``protocol.Connection`` and queues the command's events, then its
answer. No I/O happens here.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from corral.kernel import (
    GIVEN_BACK,
    Event,
    InvalidArgument,
    Job,
    Kind,
    NotFound,
    Waiting,
    WrongKind,
)

from .codec import encode, present
from .commands import COMMANDS, REQUIRED, Command, boolean, info_fields, job_rows, number
from .errors import ACCESS_DENIED

if TYPE_CHECKING:
    from .protocol import Connection
    from .server import Server

log = logging.getLogger("corral.server")

__all__ = ["HANDLERS", "META", "OK", "VERSION", "Parked", "on_meta"]

VERSION = "0.1"

# Tio's list of the server's containers: a read-only volatile_map, name -> type, served
# from ``Kernel.containers``. Every other ``meta/`` name is reserved.
META = "meta/containers"

OK = b"answer ok \r\n"  # the answer of a command that returns nothing (Tio's form)
SUBSCRIBED = b"answer ok\r\n"  # subscribe's, after the records it sends first


@attrs.define(eq=False)
class Parked:
    """A wait the server parked for a connection: where its outcome goes."""

    handle: int
    tag: str | None


# -- reading a command's arguments ---------------------------------------------------

Handler = Callable[["Server", "Connection", tuple[str, ...], dict[str, Any]], None]


def _handle(conn: Connection, words: tuple[str, ...], at: int = 1) -> tuple[int, str]:
    try:
        handle = int(words[at])
        return handle, conn.handles[handle]
    except (IndexError, ValueError, KeyError):
        raise NotFound(f"{words[0]}: invalid handle") from None


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


def _job_token(fields: dict[str, Any], words: tuple[str, ...], op: str) -> Job:
    """A claim token from the wire: the job id in ``key``, ``attempt=N`` as an option."""
    (id,) = _required(fields, "key", op=op)
    for word in words[2:]:
        if word.startswith("attempt="):
            return Job(id, None, int(word[8:]))
    raise InvalidArgument(f"{op}: attempt=N is required")


Reader = Callable[[tuple[str, ...], dict[str, Any]],
                  tuple[list[Any], dict[str, Any], "str | None"]]


def _reader(command: Command) -> Reader:
    """What reads a command's arguments from its words and fields, as its table entry
    places them: positional, keyword, and a wait's tag."""
    allowed, wire = command.options, command.wire
    plan = [(a.name, a.wire, a.default, a.keyword, a.unpack) for a in command.args]
    job = any(a.wire == "job" for a in command.args)

    def read(words: tuple[str, ...], fields: dict[str, Any]
             ) -> tuple[list[Any], dict[str, Any], str | None]:
        options: dict[str, Any] = {}
        if len(words) > 2:
            options = _options(tuple(w for w in words if not w.startswith("attempt="))
                               if job else words, 2, allowed)
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for name, place, default, keyword, unpack in plan:
            if place == "option":
                if name not in options:
                    continue  # the kernel's default
                value = options[name]
            elif place == "job":
                value = _job_token(fields, words, wire)
            elif place in fields:
                value = fields[place] if unpack is None else unpack(fields[place])
            elif default is REQUIRED:
                raise InvalidArgument(f"{wire}: missing field {place}")
            else:
                value = default
            if keyword:
                kwargs[name] = value
            else:
                args.append(value)
        return args, kwargs, options.get("tag")
    return read


# -- answers, by the shapes the table names ------------------------------------------


def _record_fields(record: Any) -> dict[str, Any]:
    return {**present(key=record.key, metadata=record.metadata), "value": record.value}


def _send_query(server: Server, conn: Connection, rows: list[dict[str, Any]]) -> None:
    server.queries += 1
    q = str(server.queries)
    conn.answer("query", q)
    for row in rows:
        conn.send(encode(("query", q, "item"), row))
    conn.send(encode(("query", q, "end")))


def _statistics(result: Any) -> dict[str, Any]:
    stats = attrs.asdict(result)
    stats["kind"] = stats["kind"].value
    return stats


Answer = Callable[["Server", "Connection", Any, list[Any]], None]

_ANSWERS: dict[str, Answer] = {
    "ok": lambda s, conn, result, args: conn.send(OK),
    "key": lambda s, conn, result, args: conn.answer("data", fields={"key": result}),
    "record": lambda s, conn, result, args: conn.answer("data",
                                                        fields=_record_fields(result)),
    "count": lambda s, conn, result, args: conn.answer("count", result),
    "property": lambda s, conn, result, args: conn.answer(
        "data", fields={"key": args[0], "value": result}),
    "state": lambda s, conn, result, args: conn.answer(
        "data", fields={"key": args[0], "value": result.value}),
    "statistics": lambda s, conn, result, args: conn.answer(
        "data", fields={"value": _statistics(result)}),
    "value": lambda s, conn, result, args: conn.answer("data", fields={"value": result}),
    "info": lambda s, conn, result, args: conn.answer("data", fields=info_fields(result)),
    "ids": lambda s, conn, result, args: _send_query(s, conn, [{"key": i} for i in result]),
    "items": lambda s, conn, result, args: _send_query(
        s, conn, [{"key": i, "value": item} for i, item in result]),
    "records": lambda s, conn, result, args: _send_query(
        s, conn, [_record_fields(r) for r in result]),
}


def _command(command: Command) -> Handler:
    """A command on a container's handle: its arguments as the table places them, the
    kernel method it names, the answer in the table's shape."""
    method, answer, read = command.kernel, _ANSWERS[command.answer], _reader(command)
    clock, mutates = command.clock, command.mutates
    assert method is not None

    def handle(server: Server, conn: Connection, words: tuple[str, ...],
               fields: dict[str, Any]) -> None:
        _, name = _handle(conn, words)
        args, kwargs, _ = read(words, fields)
        if clock:
            kwargs["now"] = server.now()
        result = getattr(server.kernel, method)(name, *args, **kwargs)
        if mutates:
            server.route()
        answer(server, conn, result, args)
    return handle


def _waiting(command: Command) -> Handler:
    """A command that may park: its answer now, or ``waiting TAG`` (classic: ``ok``)
    and its outcome later as an event."""
    method, served_by, read = command.kernel, command.waits, _reader(command)
    assert method is not None and served_by is not None

    def handle(server: Server, conn: Connection, words: tuple[str, ...],
               fields: dict[str, Any]) -> None:
        handle, name = _handle(conn, words)
        args, kwargs, tag = read(words, fields)
        if method == "queue_get" and tag is not None:
            kwargs["receipt"] = True  # what give_back needs, for a client that may cancel
        result = getattr(server.kernel, method)(conn.session, name, *args,
                                                now=server.now(), **kwargs)
        if type(result) is Waiting:
            if len(conn.waits) >= server.limits.max_waiters:
                server.kernel.cancel_wait(conn.session, result.waiter)
                raise InvalidArgument(f"{command.wire}: {server.limits.max_waiters} "
                                      "waits pending on this connection")
            conn.waits[result.waiter] = Parked(handle, tag)
            if tag is not None:
                conn.tagged[handle, tag] = result.waiter
            server.route()
            conn.answer("waiting", tag) if tag is not None else conn.send(OK)
            return
        server.route()
        if served_by == "put":  # went in at once
            conn.send(OK)
        elif isinstance(result, Job):
            conn.answer("data", fields={"key": result.id, "value": result.item,
                                        "metadata": result.attempt})
        elif served_by == "claimed":  # claim_many's jobs
            conn.answer("data", fields={"value": job_rows(result)})
        elif command.classic:  # wnp: the record's key, (Tio, untagged) as an event
            value, metadata = result
            popped = {**present(key=args[0] if args else 0, metadata=metadata),
                      "value": value}
            if tag is not None:
                conn.answer("data", fields=popped)
            else:
                conn.send(encode(("event", str(handle), served_by), popped))
                conn.send(OK)
        else:
            conn.answer("data", fields={**present(metadata=result[1]), "value": result[0]})
    return handle


# -- the commands written by hand: sessions, handles, subscriptions -------------------


def _ping(server: Server, conn: Connection, words: tuple[str, ...], fields: dict[str, Any]
          ) -> None:
    conn.answer("pong", *words[1:])


def _ver(server: Server, conn: Connection, words: tuple[str, ...], fields: dict[str, Any]
         ) -> None:
    conn.answer(VERSION)


def _auth(server: Server, conn: Connection, words: tuple[str, ...], fields: dict[str, Any]
          ) -> None:
    """``auth TOKEN``, or Tio's classic ``auth USER clean PASSWORD`` with the token as
    the password."""
    given = words[1] if len(words) == 2 else words[3] if (
        len(words) == 4 and words[2] == "clean") else ""
    if server.token is None or hmac.compare_digest(given.encode(), server.token.encode()):
        conn.authenticated = True
        conn.send(OK)
    else:  # in constant time; logged, for whoever watches for guessing
        log.warning("%s: wrong token", conn.peer)
        conn.fail(ACCESS_DENIED, "wrong token")


_KIND_OPTIONS: dict[str, Callable[[str], Any]] = {
    "max_length": int, "lease": number, "max_attempts": int,
    "release_on_close": boolean, "result_ttl": number, "backoff": number,
    "backoff_factor": number, "backoff_max": number,
}


def _chosen_handle(server: Server, conn: Connection, name: str, words: tuple[str, ...],
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


def _check_room(server: Server, conn: Connection) -> None:
    if len(conn.handles) >= server.limits.max_handles:
        raise InvalidArgument(f"{server.limits.max_handles} handles open on this connection")


def _new_handle(conn: Connection, name: str, kind: Kind, handle: int | None) -> None:
    if handle is None:
        conn.last_handle += 1
        while conn.last_handle in conn.handles:  # skip those the client chose
            conn.last_handle += 1
        handle = conn.last_handle
    conn.handles[handle] = name
    if name == META:
        conn.meta.setdefault(handle, False)
    conn.answer("handle", handle, kind.value)


def _open_meta(conn: Connection, words: tuple[str, ...], handle: int | None) -> None:
    """``open``/``create meta/containers [volatile_map]``: a handle on the view."""
    if len(words) > 3:
        raise InvalidArgument(f"{words[0]}: {META} takes no options")
    if len(words) == 3 and words[2] != Kind.MAP.value:
        raise WrongKind(f"{words[0]}: {META!r} is a volatile_map, not a {words[2]}")
    _new_handle(conn, META, Kind.MAP, handle)


def _create(server: Server, conn: Connection, words: tuple[str, ...],
            fields: dict[str, Any]) -> None:
    if len(words) < 3:
        raise InvalidArgument("create NAME TYPE [option=value ...] [handle=N]")
    name = words[1]
    if name.startswith("__") or name.startswith("meta/") and name != META:
        raise InvalidArgument(f"create: names starting with __ or meta/ are reserved "
                              f"({name!r})")
    handle, words = _chosen_handle(server, conn, name, words, 3)
    if name == META:
        _open_meta(conn, words, handle)
        return
    kind_name = words[2]
    if kind_name in ("persistent_list", "persistent_map"):  # Tio's durable kinds
        if server.journal is None:
            raise InvalidArgument(f"create: {kind_name} needs a journal (corral serve "
                                  "--journal DIR), which this server does not have")
        kind_name = kind_name.replace("persistent", "volatile")
    new = bool(server.watchers) and not _exists(server, name)
    kind = server.kernel.create(name, kind_name, **_options(words, 3, _KIND_OPTIONS))
    if new:
        _announce(server, "set", {"key": name, "value": kind.value})
    _new_handle(conn, name, kind, handle)


def _open(server: Server, conn: Connection, words: tuple[str, ...], fields: dict[str, Any]
          ) -> None:
    handle, words = _chosen_handle(server, conn, words[1] if len(words) > 1 else "",
                                   words, 2)
    if len(words) not in (2, 3):
        raise InvalidArgument("open NAME [TYPE] [handle=N]")
    if words[1] == META:
        _open_meta(conn, words, handle)
        return
    kind = server.kernel.open(words[1])
    if len(words) == 3 and Kind(words[2]) is not kind:
        raise NotFound(f"open: {words[1]!r} is a {kind.value}, not a {words[2]}")
    _new_handle(conn, words[1], kind, handle)


def _close(server: Server, conn: Connection, words: tuple[str, ...], fields: dict[str, Any]
           ) -> None:
    handle, _ = _handle(conn, words)
    _unsubscribe_handle(server, conn, handle)
    del conn.handles[handle]
    conn.send(OK)


def _delete_container(server: Server, conn: Connection, words: tuple[str, ...],
                      fields: dict[str, Any]) -> None:
    if len(words) not in (2, 3):
        raise InvalidArgument("delete_container [TYPE] NAME")
    if words[-1] == META:
        raise InvalidArgument(f"delete_container: {META} is read-only")
    if len(words) == 3 and server.kernel.open(words[2]) is not Kind(words[1]):
        raise NotFound(f"delete_container: {words[2]!r} is not a {words[1]}")
    server.kernel.delete_container(words[-1])
    server.route()
    _announce(server, "delete", {"key": words[-1]})
    conn.send(OK)


def _start(words: tuple[str, ...], is_map: Callable[[], bool]) -> int | None:
    """``subscribe H [START]``'s start: an int (negative from the end); ``__none__``
    for none; none given, the whole of a map (Tio's classic rule, which classic
    clients mirroring a map rely on) and none for any other kind."""
    if len(words) > 3:
        raise InvalidArgument("subscribe H [START|__none__]")
    if len(words) == 2:
        return 0 if is_map() else None
    if words[2] == "__none__":
        return None
    try:
        return int(words[2])
    except ValueError:
        raise InvalidArgument(f"subscribe: invalid start index {words[2]!r}") from None


def _subscribe(server: Server, conn: Connection, words: tuple[str, ...],
               fields: dict[str, Any]) -> None:
    handle, name = _handle(conn, words)
    if handle in conn.subscriptions:
        raise InvalidArgument(f"subscribe: handle {handle} is already subscribed")
    start = _start(words, lambda: _exists(server, name) is Kind.MAP)
    sid = server.kernel.subscribe(conn.session, name, start=start)
    conn.subscriptions[handle], conn.sub_handles[sid] = sid, handle
    server.route()  # a snapshot's events go before the answer
    conn.send(SUBSCRIBED)


def _unsubscribe_handle(server: Server, conn: Connection, handle: int) -> None:
    sid = conn.subscriptions.pop(handle, None)
    if sid is not None:
        del conn.sub_handles[sid]
        server.kernel.unsubscribe(conn.session, sid)


def _unsubscribe(server: Server, conn: Connection, words: tuple[str, ...],
                 fields: dict[str, Any]) -> None:
    handle, _ = _handle(conn, words)
    _unsubscribe_handle(server, conn, handle)
    conn.send(OK)


def _query(server: Server, conn: Connection, words: tuple[str, ...], fields: dict[str, Any]
           ) -> None:
    _, name = _handle(conn, words)
    _ANSWERS["records"](server, conn, server.kernel.query(name, *_range(words)), [])


def _range(words: tuple[str, ...]) -> tuple[int, int | None]:
    """``query H [START [END]]``'s START and END (Tio: END 0 is to the end)."""
    start = int(words[2]) if len(words) > 2 else 0
    return start, int(words[3]) if len(words) > 3 and words[3] != "0" else None


def _unwait(server: Server, conn: Connection, words: tuple[str, ...],
            fields: dict[str, Any]) -> None:
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


def _give_back(server: Server, conn: Connection, words: tuple[str, ...],
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


def _stats(server: Server, conn: Connection, words: tuple[str, ...], fields: dict[str, Any]
           ) -> None:
    conn.answer("data", fields={"value": {
        "version": VERSION,
        "uptime": round(server.uptime(), 3),
        "connections": len(server.connections),
        "commands": server.commands,
        "containers": {name: kind.value
                       for name, kind in server.kernel.containers().items()},
    }})


# -- meta/containers: Tio's list of containers, read-only ------------------------------


def _exists(server: Server, name: str) -> Kind | None:
    try:
        return server.kernel.open(name)
    except NotFound:
        return None


def _announce(server: Server, event: str, fields: dict[str, Any]) -> None:
    """A container was created or deleted: tell the subscribers of meta/containers."""
    for conn in server.watchers:
        for handle, subscribed in conn.meta.items():
            if subscribed:
                conn.send(encode(("event", str(handle), event), fields))


def _listing(server: Server) -> list[dict[str, Any]]:
    """meta/containers' records, in key order as a map's: the names and their types."""
    return [{"key": name, "value": kind.value}
            for name, kind in sorted(server.kernel.containers().items())]


def _meta_get_count(server: Server, conn: Connection, words: tuple[str, ...],
                    fields: dict[str, Any]) -> None:
    conn.answer("count", len(server.kernel.containers()))


def _meta_get(server: Server, conn: Connection, words: tuple[str, ...],
              fields: dict[str, Any]) -> None:
    """By name, or (as a map's get) by int position in key order."""
    (key,) = _required(fields, "key", op="get")
    if isinstance(key, int):
        listing = _listing(server)
        if not -len(listing) <= key < len(listing):
            raise NotFound(f"get on {META!r}: position {key} is out of range for "
                           f"{len(listing)} records")
        conn.answer("data", fields=listing[key])
        return
    kind = _exists(server, key) if isinstance(key, str) else None
    if kind is None:
        raise NotFound(f"get on {META!r}: no key {key!r}")
    conn.answer("data", fields={"key": key, "value": kind.value})


def _meta_query(server: Server, conn: Connection, words: tuple[str, ...],
                fields: dict[str, Any]) -> None:
    start, end = _range(words)
    _send_query(server, conn, _listing(server)[start:end])


def _meta_keys(server: Server, conn: Connection, words: tuple[str, ...],
               fields: dict[str, Any]) -> None:
    _send_query(server, conn, [{"key": record["key"]} for record in _listing(server)])


def _meta_subscribe(server: Server, conn: Connection, words: tuple[str, ...],
                    fields: dict[str, Any]) -> None:
    handle, _ = _handle(conn, words)
    if conn.meta[handle]:
        raise InvalidArgument(f"subscribe: handle {handle} is already subscribed")
    start = _start(words, lambda: True)
    if start is not None:
        for record in _listing(server)[start:]:
            conn.send(encode(("event", str(handle), "set"), record))
    conn.meta[handle] = True
    server.watchers[conn] = None
    conn.send(SUBSCRIBED)


def _meta_unsubscribe(server: Server, conn: Connection, words: tuple[str, ...],
                      fields: dict[str, Any]) -> None:
    handle, _ = _handle(conn, words)
    if words[0] == "close":
        del conn.meta[handle], conn.handles[handle]
    else:
        conn.meta[handle] = False
    if not any(conn.meta.values()):
        server.watchers.pop(conn, None)
    conn.send(OK)


_META: dict[str, Handler] = {
    "get_count": _meta_get_count, "get": _meta_get, "query": _meta_query,
    "keys": _meta_keys, "subscribe": _meta_subscribe, "unsubscribe": _meta_unsubscribe,
    "close": _meta_unsubscribe,
}


def _read_only(server: Server, conn: Connection, words: tuple[str, ...],
               fields: dict[str, Any]) -> None:
    raise InvalidArgument(f"{words[0]}: {META} is read-only (it serves {', '.join(_META)})")


# The commands that take no handle.
_NAMED = frozenset({"ping", "ver", "auth", "create", "open", "delete_container", "stats"})


def on_meta(conn: Connection, words: tuple[str, ...], handler: Handler) -> Handler:
    """The handler of ``words`` for a connection with a handle on meta/containers:
    that view's if the command is on such a handle, else ``handler``."""
    try:
        on = words[0] not in _NAMED and conn.handles[int(words[1])] == META
    except (IndexError, ValueError, KeyError):
        on = False  # no handle: the handler says so
    return _META.get(words[0], _read_only) if on else handler


_SPECIAL: dict[str, Handler] = {
    "ping": _ping, "ver": _ver, "auth": _auth, "create": _create, "open": _open,
    "close": _close, "delete_container": _delete_container, "subscribe": _subscribe,
    "unsubscribe": _unsubscribe, "query": _query, "unwait": _unwait,
    "give_back": _give_back, "stats": _stats,
}

#: Every command's handler, by its word on the wire: from the table.
HANDLERS: dict[str, Handler] = {
    c.wire: _SPECIAL[c.wire] if c.special else _waiting(c) if c.waits else _command(c)
    for c in COMMANDS
}
