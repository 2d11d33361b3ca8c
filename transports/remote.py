"""Wires: the blocking byte pipes under the thread client (``corral.adapters.client``),
a TCP socket (with TLS or not) or a ZeroMQ socket, and the URLs that name them.

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
import os
import select
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Protocol
from urllib.parse import urlsplit

from corral.kernel import InvalidArgument

from .protocol import check_token
from .tcp import DEFAULT_PORT

__all__ = ["SocketWire", "Tls", "TlsWire", "Wire", "client_tls", "client_token",
           "open_wire", "parse_url", "zmq_endpoint"]


def parse_url(url: str) -> tuple[str, int]:
    """``corral://host:port``, ``corrals://`` (TLS) or ``tio://`` as (host, port); the
    port defaults to 2605."""
    parts = urlsplit(url)
    if parts.scheme not in ("corral", "corrals", "tio") or not parts.hostname:
        raise InvalidArgument(f"not a corral URL: {url!r} (expected corral://host:port, "
                              "corrals://host:port or zmq+tcp://host:port)")
    return parts.hostname, parts.port or DEFAULT_PORT


def client_token(token: str | None) -> str | None:
    """``token``, or if it is None the environment's ``CORRAL_TOKEN`` (unset or empty:
    no token)."""
    return check_token(token if token is not None else os.environ.get("CORRAL_TOKEN") or None)


def client_tls(url: str, ca: str | None = None, context: ssl.SSLContext | None = None
               ) -> ssl.SSLContext | None:
    """The TLS context a client of ``url`` uses: None for a URL that is not
    ``corrals://``; else ``context``, or one that checks the server's certificate and
    hostname against the CA file ``ca`` (by default ``$CORRAL_TLS_CA``) or, without one,
    the system's trust store. Raises InvalidArgument for TLS options on a plain URL, or a
    CA file that cannot be loaded."""
    if urlsplit(url).scheme != "corrals":  # as parse_url reads it: CORRALS:// is TLS too
        if ca is not None or context is not None:
            raise InvalidArgument(f"{url!r} is not a TLS URL: a CA or an SSL context "
                                  "needs corrals://host:port")
        return None
    if context is not None:
        if ca is not None:
            raise InvalidArgument("give a CA file or an SSL context, not both")
        return context
    ca = ca or os.environ.get("CORRAL_TLS_CA") or None
    try:
        return ssl.create_default_context(cafile=ca)
    except OSError as error:  # ssl.SSLError too: not PEM
        raise InvalidArgument(f"cannot load the TLS CA file {ca}: {error}") from None


class Tls:
    """A client's side of TLS, in memory (ssl's BIOs): plain bytes in, bytes for the
    socket out, and back. The wire and the trio pipe keep their own sockets, so their
    sends stay non-blocking; a thread client locks it (see ``TlsWire``)."""

    def __init__(self, context: ssl.SSLContext, host: str, port: int) -> None:
        self.address = f"{host}:{port}"
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=host)

    def handshake(self, received: bytes | None = None) -> tuple[bytes, bool]:
        """One step of the handshake: feed what the server sent (None to begin); returns
        what to send it, and whether the handshake is done. Raises ssl.SSLError (its
        certificate verification error when that fails) or ConnectionError, naming the
        server."""
        if received is not None:
            if not received:
                raise ConnectionError(f"{self.address} closed the connection during the "
                                      "TLS handshake: does it serve TLS (--tls-cert)?")
            self._incoming.write(received)
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            return self._outgoing.read(), False
        except ssl.SSLCertVerificationError as error:
            raise ssl.SSLCertVerificationError(
                f"the certificate of {self.address} failed verification: "
                f"{error.verify_message} (trust its CA with tls_ca= or --tls-ca)") from None
        except ssl.SSLError as error:
            raise type(error)(f"TLS handshake with {self.address} failed: "
                              f"{error.reason or error}") from None
        return self._outgoing.read(), True

    def encrypt(self, data: bytes) -> bytes:
        """``data`` as bytes for the socket."""
        self._tls.write(data)
        return self._outgoing.read()

    def feed(self, received: bytes) -> None:
        """Bytes from the socket, for ``read``."""
        self._incoming.write(received)

    def read(self, size: int) -> bytes | None:
        """Plain bytes from what was fed: None until a record is whole, b"" once the
        server has closed TLS. Raises ssl.SSLError for bytes that are not TLS."""
        try:
            return self._tls.read(size)
        except ssl.SSLWantReadError:
            return None
        except ssl.SSLZeroReturnError:
            return b""


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
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._poll = select.poll()
        self._poll.register(self._socket, select.POLLIN)
        self.unsettled = False
        self.sendall: Callable[[bytes], None] = self._socket.sendall
        self._connected()
        self._socket.settimeout(None)

    def _connected(self) -> None:
        """What follows the connect, within its timeout."""

    def recv(self, size: int) -> bytes:
        self._poll.poll()
        self.unsettled = True
        return self._socket.recv(size)

    def close(self) -> None:
        with contextlib.suppress(OSError):  # shutdown wakes a reader blocked in recv
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()


class TlsWire(SocketWire):
    """A TCP connection with TLS. Encrypting (a send, under the client's send lock, so
    in order) and decrypting (a read, by whichever thread leads) share the TLS state
    under a lock held for no I/O. What the server sent stays in ``Tls`` until taken, so
    an interrupt in the poll takes nothing."""

    def __init__(self, host: str, port: int, timeout: float, context: ssl.SSLContext
                 ) -> None:
        self._tls = Tls(context, host, port)
        self._lock = threading.Lock()
        super().__init__(host, port, timeout)
        self.sendall = self._sendall

    def _connected(self) -> None:
        try:
            data, done = self._tls.handshake()
            while True:
                self._socket.sendall(data)
                if done:
                    return
                data, done = self._tls.handshake(self._socket.recv(65536))
        except BaseException:
            self._socket.close()
            raise

    def _sendall(self, data: bytes) -> None:
        with self._lock:
            data = self._tls.encrypt(data)
        self._socket.sendall(data)

    def recv(self, size: int) -> bytes:
        while True:
            self.unsettled = True
            with self._lock:
                data = self._tls.read(size)
            if data is not None:
                return data
            self.unsettled = False
            self._poll.poll()
            self.unsettled = True
            received = self._socket.recv(65536)
            if not received:
                return b""
            with self._lock:
                self._tls.feed(received)


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


def open_wire(url: str, timeout: float = 10.0, tls: ssl.SSLContext | None = None
              ) -> Wire:
    """A connection to the server at ``url``: ``corral://host:port`` (TCP, port 2605 by
    default), ``corrals://host:port`` (TCP with TLS: ``tls``, or ``client_tls(url)``),
    ``zmq+tcp://host:port`` (ZeroMQ, port 2606 by default) or ``zmq+ipc:///path``."""
    tls = client_tls(url, context=tls)
    if tls is not None:
        return TlsWire(*parse_url(url), timeout, tls)
    endpoint = zmq_endpoint(url)
    if endpoint is not None:
        from .zeromq import ZmqWire

        return ZmqWire(endpoint, connect_timeout=timeout)
    return SocketWire(*parse_url(url), timeout)
