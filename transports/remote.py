"""Wires: the blocking byte pipes under the thread client (``corral.adapters.client``),
a TCP socket or a ZeroMQ socket, and the URLs that name them.

A wire is only bytes. What they mean, and every request's and wait's life, is the
sans-IO core's (``corral.transports.connection``). One thing a wire must say, though: a
KeyboardInterrupt that lands while a read blocks (in ``poll``) has taken nothing from
the stream, but one that lands once bytes are read and before the client has them has
cut it. ``recv`` sets ``unsettled`` when it starts taking bytes; the client clears it
once it holds them, and drops the connection if an interrupt comes in between, rather
than read a stream with a hole in it.
"""

from __future__ import annotations

import contextlib
import select
import socket
from typing import Protocol
from urllib.parse import urlsplit

from corral.kernel import InvalidArgument

from .tcp import DEFAULT_PORT

__all__ = ["SocketWire", "Wire", "open_wire", "parse_url", "zmq_endpoint"]


def parse_url(url: str) -> tuple[str, int]:
    """``corral://host:port`` (or ``tio://``) as (host, port); the port defaults to 2605."""
    parts = urlsplit(url)
    if parts.scheme not in ("corral", "tio") or not parts.hostname:
        raise InvalidArgument(f"not a corral URL: {url!r} (expected corral://host:port "
                              "or zmq+tcp://host:port)")
    return parts.hostname, parts.port or DEFAULT_PORT


class Wire(Protocol):
    """The byte pipe under the thread client: a TCP socket or a ZeroMQ socket.
    ``recv`` blocks and returns b"" once the connection is gone; ``heartbeat`` (seconds
    or None) says how often an idle client must show it is alive; ``unsettled`` is
    set while bytes are read and not yet the client's (see the module docstring)."""

    unsettled: bool

    @property
    def heartbeat(self) -> float | None: ...

    def sendall(self, data: bytes, /) -> None: ...
    def recv(self, size: int, /) -> bytes: ...
    def close(self) -> None: ...


class SocketWire:
    """A TCP connection. A read waits in ``poll`` (where an interrupt takes nothing)
    before it takes what is there."""

    heartbeat: float | None = None  # a closed TCP connection says so itself

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self._socket = socket.create_connection((host, port), timeout=timeout)
        self._socket.settimeout(None)
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._poll = select.poll()
        self._poll.register(self._socket, select.POLLIN)
        self.unsettled = False
        self.sendall = self._socket.sendall

    def recv(self, size: int) -> bytes:
        self._poll.poll()
        self.unsettled = True
        return self._socket.recv(size)

    def close(self) -> None:
        with contextlib.suppress(OSError):  # shutdown wakes a reader blocked in recv
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()


def zmq_endpoint(url: str) -> str | None:
    """The ZeroMQ endpoint a ``zmq+tcp://host[:port]`` (port 2606 by default) or
    ``zmq+ipc:///path`` URL names; None for any other URL."""
    scheme, _, rest = url.partition("://")
    if scheme not in ("zmq+tcp", "zmq+ipc"):
        return None
    endpoint = f"{scheme[4:]}://{rest}"
    if scheme == "zmq+tcp":
        from .zeromq import DEFAULT_ZMQ_PORT

        parts = urlsplit(endpoint)
        if not parts.hostname:
            raise InvalidArgument(f"not a corral URL: {url!r} (no host)")
        if not parts.port:
            endpoint = f"tcp://{parts.netloc}:{DEFAULT_ZMQ_PORT}"
    return endpoint


def open_wire(url: str, timeout: float = 10.0) -> Wire:
    """A connection to the server at ``url``: ``corral://host:port`` (TCP, port 2605 by
    default), ``zmq+tcp://host:port`` (ZeroMQ, port 2606 by default) or
    ``zmq+ipc:///path``."""
    endpoint = zmq_endpoint(url)
    if endpoint is not None:
        from .zeromq import ZmqWire

        return ZmqWire(endpoint, connect_timeout=timeout)
    return SocketWire(*parse_url(url), timeout)
