"""Tio's classic Python client (tioclient.py, 2010-2011), ported to Python 3 for tests.

Written from the classic client (https://github.com/rodrigostrauss/tio), keeping its
behaviour where a server could tell: one blocking socket (not thread-safe); answers read line by
line, with every ``event`` line met on the way queued per handle; sinks run only from
``Dispatch*`` and ``RunLoop``; one-shot wait-and-pop callbacks kept per handle and
popped last-in first-out; ``str`` sent as string, ``int`` as int and ``float`` as
double; any ``answer error`` raised as ``Exception('<line> - "<command>"')``. The
handle and count answers are read by position, as the classic client reads them.

Only what corral promises to serve is here, and the diff and permission calls that it
refuses; no field records.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

Sink = Callable[["RemoteContainer", str, Any, Any, Any], None]


def _encode(value: Any) -> tuple[str, bytes]:
    if isinstance(value, str):
        return "string", value.encode()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Exception(f"unsupported data type: {type(value).__name__}")
    if isinstance(value, int):
        return "int", str(value).encode()
    return "double", repr(value).encode()


def _decode(kind: str, data: bytes) -> Any:
    if kind == "int":
        return int(data)
    if kind == "double":
        return float(data)
    if kind == "raw":
        return data
    return data.decode()


def ParseUrl(url: str) -> tuple[str, int, str | None]:  # noqa: N802 (classic names)
    parts = urlsplit(url)
    if parts.scheme != "tio" or not parts.hostname or not parts.port:
        raise Exception(f"invalid url: {url}")
    return parts.hostname, parts.port, parts.path.lstrip("/") or None


def Connect(url: str) -> TioServerConnection:  # noqa: N802
    host, port, name = ParseUrl(url)
    if name:
        raise Exception("Connect takes a server url, not a container url")
    return TioServerConnection(host, port)


class RemoteContainer:
    def __init__(self, manager: TioServerConnection, handle: str, type: str, name: str
                 ) -> None:
        self.manager, self.handle, self.type, self.name = manager, handle, type, name

    def __len__(self) -> int:
        return int(self.manager.SendCommand("get_count", self.handle)[3])

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice):
            return self.query(key.start, key.stop)
        return self.get(key)

    def __setitem__(self, key: Any, value: Any) -> None:
        value, metadata = value if isinstance(value, tuple) else (value, None)
        self.set(key, value, metadata)

    def __delitem__(self, key: Any) -> None:
        self.delete(key)

    def _data(self, command: str, key: Any = None, value: Any = None,
              metadata: Any = None) -> Any:
        return self.manager.SendDataCommand(command, self.handle, key, value, metadata)

    def append(self, value: Any, metadata: Any = None) -> None:
        self._data("push_back", value=value, metadata=metadata)

    push_back = append

    def push_front(self, value: Any, metadata: Any = None) -> None:
        self._data("push_front", value=value, metadata=metadata)

    def extend(self, values: list[Any]) -> None:
        for value in values:
            self.append(value)

    def insert(self, key: Any, value: Any, metadata: Any = None) -> None:
        self._data("insert", key, value, metadata)

    def set(self, key: Any, value: Any, metadata: Any = None) -> None:
        self._data("set", key, value, metadata)

    def get(self, key: Any, withKeyAndMetadata: bool = False) -> Any:  # noqa: N803
        record = self._data("get", key)
        return record if withKeyAndMetadata else record[1]

    def delete(self, key: Any) -> None:
        self._data("delete", key)

    def pop_back(self, withKeyAndMetadata: bool = False) -> Any:  # noqa: N803
        record = self.manager.SendCommand("pop_back", self.handle)
        return record if withKeyAndMetadata else record[1]

    def pop_front(self, withKeyAndMetadata: bool = False) -> Any:  # noqa: N803
        record = self.manager.SendCommand("pop_front", self.handle)
        return record if withKeyAndMetadata else record[1]

    def clear(self) -> None:
        self.manager.SendCommand("clear", self.handle)

    def get_property(self, key: str) -> Any:
        return self._data("get_property", key)[1]

    def set_property(self, key: str, value: str) -> None:
        self._data("set_property", key, value)

    def subscribe(self, sink: Sink, event_filter: str = "*", start: int | None = None
                  ) -> None:
        self.manager.Subscribe(self.handle, sink, event_filter, start)

    def unsubscribe(self, sink: Sink | None = None) -> None:
        self.manager.Unsubscribe(self.handle)

    def wait_and_pop_next(self, sink: Sink) -> None:
        self.manager.WaitAndPop(self.handle, "wnp_next", sink)

    def wait_and_pop_key(self, key: str, sink: Sink) -> None:
        self.manager.WaitAndPop(self.handle, "wnp_key", sink, key)

    def query_with_key_and_metadata(self, start: int | None = None, end: int | None = None
                                    ) -> list[tuple[Any, Any, Any]]:
        return self.manager.Query(self.handle, start, end)

    def query(self, start: int | None = None, end: int | None = None) -> list[Any]:
        return [value for _, value, _ in self.query_with_key_and_metadata(start, end)]

    def keys(self) -> list[Any]:
        return [key for key, _, _ in self.query_with_key_and_metadata()]

    def values(self) -> list[Any]:
        return self.query()

    def close(self) -> None:
        self.manager.CloseContainer(self.handle)


class TioServerConnection:
    def __init__(self, host: str | None = None, port: int | None = None) -> None:
        self.containers: dict[str, RemoteContainer] = {}
        self.sinks: dict[str, dict[str, Sink]] = {}  # handle -> event name -> sink
        self.wnp: dict[str, list[Sink]] = {}  # handle -> one-shot callbacks
        self.pending_events: dict[str, list[tuple[str, Any, Any, Any]]] = {}
        self.stop = False
        if host is not None and port is not None:
            self.Connect(host, port)

    def Connect(self, host: str, port: int) -> None:  # noqa: N802
        self.s = socket.create_connection((host, port))
        self.file = self.s.makefile("rb")

    # -- the wire -----------------------------------------------------------------------

    def _line(self) -> list[str]:
        line = self.file.readline()
        if not line:
            raise Exception("connection closed by the server")
        return line.rstrip(b"\r\n").decode().split(" ")

    def _fields(self, tokens: list[str]) -> tuple[Any, Any, Any]:
        """The key, value and metadata of the specs in ``tokens``, payloads read."""
        fields: dict[str, Any] = {}
        for i in range(0, len(tokens) - 2, 3):
            name, kind, size = tokens[i], tokens[i + 1], int(tokens[i + 2])
            data = self.file.read(size + 2)[:size]
            fields[name] = _decode(kind, data)
        return fields.get("key"), fields.get("value"), fields.get("metadata")

    def _event(self, tokens: list[str]) -> None:
        handle, name = tokens[1], tokens[2]
        self.pending_events.setdefault(handle, []).append((name, *self._fields(tokens[3:])))

    def ReceiveAnswer(self, command: str) -> Any:  # noqa: N802
        while True:
            tokens = self._line()
            if tokens[0] == "event":
                self._event(tokens)
                continue
            if tokens[0] != "answer":
                raise Exception(f"unexpected line: {' '.join(tokens)}")
            if tokens[1] != "ok":
                raise Exception(f'{" ".join(tokens)} - "{command}"')
            if len(tokens) > 2 and tokens[2] == "data":
                return self._fields(tokens[3:])
            if len(tokens) > 2 and tokens[2] == "query":
                rows = []
                while True:
                    row = self._line()
                    if row[0] == "event":
                        self._event(row)
                    elif row[2] == "end":
                        return rows
                    else:
                        rows.append(self._fields(row[3:]))
            return tokens

    def SendCommand(self, command: str, *args: Any) -> Any:  # noqa: N802
        line = " ".join([command, *map(str, args)])
        self.s.sendall(line.encode() + b"\r\n")
        return self.ReceiveAnswer(line)

    def SendDataCommand(self, command: str, handle: str, key: Any = None, value: Any = None,  # noqa: N802
                        metadata: Any = None) -> Any:
        header, blocks = f"{command} {handle}", b""
        for name, field in (("key", key), ("value", value), ("metadata", metadata)):
            if field is not None:
                kind, data = _encode(field)
                header += f" {name} {kind} {len(data)}"
                blocks += data + b"\r\n"
        self.s.sendall(header.encode() + b"\r\n" + blocks)
        return self.ReceiveAnswer(header)

    # -- containers ---------------------------------------------------------------------

    def _container(self, answer: list[str], name: str) -> RemoteContainer:
        handle = answer[3]
        type = answer[4] if len(answer) > 4 else ""
        container = self.containers[handle] = RemoteContainer(self, handle, type, name)
        return container

    def CreateContainer(self, name: str, type: str) -> RemoteContainer:  # noqa: N802
        return self._container(self.SendCommand("create", name, type), name)

    def OpenContainer(self, name: str, type: str = "") -> RemoteContainer:  # noqa: N802
        return self._container(self.SendCommand("open", name, *([type] if type else [])),
                               name)

    def CloseContainer(self, handle: str) -> None:  # noqa: N802
        self.SendCommand("close", handle)
        del self.containers[handle]

    def Query(self, handle: str, start: int | None = None, end: int | None = None  # noqa: N802
              ) -> list[tuple[Any, Any, Any]]:
        args = [] if start is None else [start] if end is None else [start, end]
        rows: list[tuple[Any, Any, Any]] = self.SendCommand("query", handle, *args)
        return rows

    def ping(self) -> Any:
        return self.SendCommand("ping")

    def DiffStart(self, handle: str) -> Any:  # noqa: N802
        return self.SendCommand("diff_start", handle)

    def Diff(self, diff: str) -> Any:  # noqa: N802
        return self.SendCommand("diff", diff)

    def SetPermission(self, type: str, name: str, command: str, allow: str,  # noqa: N802
                      user: str = "") -> None:
        self.SendCommand("set_permission", type, name, command, allow,
                         *([user] if user else []))

    def close(self) -> None:
        self.file.close()
        self.s.close()

    Disconnect = close

    # -- events -------------------------------------------------------------------------

    def Subscribe(self, handle: str, sink: Sink, filter: str = "*",  # noqa: N802
                  start: int | None = None) -> None:
        self.SendCommand("subscribe", handle, *([] if start is None else [start]))
        self.sinks.setdefault(handle, {})[filter] = sink

    def Unsubscribe(self, handle: str) -> None:  # noqa: N802
        self.SendCommand("unsubscribe", handle)
        self.sinks.pop(handle, None)

    def WaitAndPop(self, handle: str, command: str, sink: Sink, key: Any = None) -> None:  # noqa: N802
        self.wnp.setdefault(handle, []).append(sink)
        if key is None:
            self.SendCommand(command, handle)
        else:
            self.SendDataCommand(command, handle, key)

    def DispatchEvents(self, handle: str) -> None:  # noqa: N802
        for name, key, value, metadata in self.pending_events.pop(handle, []):
            container = self.containers[handle]
            if name in ("wnp_next", "wnp_key"):
                self.wnp[handle].pop()(container, name, key, value, metadata)  # LIFO
                continue
            sinks = self.sinks.get(handle, {})
            sink = sinks.get(name) or sinks.get("*")
            if sink is not None:
                sink(container, name, key, value, metadata)

    def DispatchAllEvents(self) -> None:  # noqa: N802
        for handle in list(self.pending_events):
            self.DispatchEvents(handle)

    def Dispatch(self) -> None:  # noqa: N802
        """Dispatch what is queued, then block for one more line and dispatch it."""
        self.DispatchAllEvents()
        self._receive_event()
        self.DispatchAllEvents()

    def _receive_event(self) -> None:
        tokens = self._line()
        if tokens[0] != "event":
            raise Exception(f"unexpected line: {' '.join(tokens)}")
        self._event(tokens)

    def RunLoop(self) -> None:  # noqa: N802
        """Dispatch events (those the sinks' own calls queue too) until a sink calls
        Stop(), reading more whenever none is queued."""
        self.stop = False
        while True:
            self.DispatchAllEvents()
            if self.stop:
                return
            if not any(self.pending_events.values()):
                self._receive_event()

    def Stop(self) -> None:  # noqa: N802
        self.stop = True
