"""The trio client's pipes: bytes to and from a server, over TCP (with TLS or not) or
ZeroMQ, with no thread. ``send`` never blocks: it writes what the socket takes and
leaves the rest to the pipe's ``run`` task. ``receive`` waits for bytes, yielding to
trio now and then even when they keep coming.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
from typing import Any, Protocol, cast

import trio
import zmq

from corral.transports.remote import Tls, client_tls, parse_url, zmq_endpoint

__all__ = ["Pipe", "TcpPipe", "ZmqPipe", "open_pipe"]

_cancel_shielded_checkpoint = trio.lowlevel.cancel_shielded_checkpoint


async def _fair(pipe: Any) -> None:
    """Let other tasks run after every so many reads that found data at once: a reader
    fed without pause would never yield to trio."""
    pipe.streak += 1
    if pipe.streak >= 16:
        pipe.streak = 0
        pipe.blocked += 1
        await _cancel_shielded_checkpoint()


class Pipe(Protocol):
    """Bytes to and from a server, for the trio client. ``send`` never blocks;
    ``receive`` returns b"" once the connection is gone."""

    heartbeat: float | None
    blocked: int  # how many times ``receive`` has waited (yielded to trio)

    def send(self, data: bytes) -> None: ...
    async def receive(self) -> bytes: ...
    async def run(self) -> None: ...
    def close(self) -> None: ...


class TcpPipe:
    """A TCP connection, as a non-blocking socket the reader waits on; with ``tls``, TLS
    in memory over it."""

    heartbeat: float | None = None  # a closed TCP connection says so itself

    def __init__(self, sock: socket.socket, tls: Tls | None = None) -> None:
        sock.setblocking(False)
        self._socket = sock
        self._tls = tls
        self._backlog = bytearray()  # what the socket did not take yet
        self._writable = trio.Event()
        self._broken = False
        self.blocked = self.streak = 0

    @classmethod
    async def open(cls, host: str, port: int, context: ssl.SSLContext | None) -> TcpPipe:
        stream = await trio.open_tcp_stream(host, port)
        tls = None
        if context is not None:
            tls = Tls(context, host, port)
            try:
                data, done = tls.handshake()
                while True:
                    await stream.send_all(data)
                    if done:
                        break
                    data, done = tls.handshake(await stream.receive_some(65536))
            except BaseException as error:
                await trio.aclose_forcefully(stream)
                if isinstance(error, trio.BrokenResourceError):
                    raise ConnectionError(f"TLS handshake with {tls.address}: "
                                          f"{error.__cause__ or error}") from error
                raise
        return cls(socket.socket(fileno=stream.socket.detach()), tls)

    def send(self, data: bytes) -> None:
        if self._tls is not None and not self._broken:
            try:
                data = self._tls.encrypt(data)
            except ssl.SSLError:  # after a TLS error: the reader ends the pipe
                self._broken = True
        if self._backlog or self._broken:
            self._backlog += data
            return
        try:
            sent = self._socket.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._broken = True
            sent = len(data)
        if sent < len(data):
            self._backlog += data[sent:]
            self._writable.set()

    async def receive(self) -> bytes:
        tls = self._tls
        while not self._broken:
            if tls is not None:
                try:
                    plain = tls.read(65536)
                except ssl.SSLError:  # not TLS, or not from this server: gone
                    self._broken = True
                    break
                if plain is not None:
                    await _fair(self)
                    return plain
            try:
                data = self._socket.recv(65536)
            except BlockingIOError:
                self.blocked += 1
                self.streak = 0
                try:
                    await trio.lowlevel.wait_readable(self._socket)
                except trio.ClosedResourceError:
                    break
            except OSError:
                break
            else:
                if tls is None or not data:
                    await _fair(self)
                    return data
                tls.feed(data)
        return b""

    async def run(self) -> None:
        """Write what ``send`` could not, as the socket takes it."""
        while True:
            await self._writable.wait()
            self._writable = trio.Event()
            while self._backlog and not self._broken:
                try:
                    await trio.lowlevel.wait_writable(self._socket)
                except trio.ClosedResourceError:
                    return
                try:
                    sent = self._socket.send(self._backlog)
                except BlockingIOError:
                    continue
                except OSError:
                    self._broken = True
                    break
                del self._backlog[:sent]

    def close(self) -> None:
        if self._socket.fileno() < 0:
            return
        self._broken = True
        trio.lowlevel.notify_closing(self._socket)  # wakes a reader with ClosedResource
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()


class ZmqPipe:
    """A DEALER socket; its descriptor is edge-triggered, so every wait on it is
    preceded by a look at its events. A monitor says when the connection breaks."""

    heartbeat: float | None = 5.0

    def __init__(self, endpoint: str, context: zmq.Context[Any] | None = None) -> None:
        context = context or zmq.Context.instance()
        self._socket = context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.RECONNECT_IVL, -1)  # a new connection is a new pipe
        self._socket.setsockopt(zmq.ROUTING_ID, os.urandom(12))
        self._monitor = self._socket.get_monitor_socket(zmq.EVENT_DISCONNECTED
                                                        | zmq.EVENT_CLOSED)
        self._fd = cast(int, self._socket.get(zmq.FD))
        self._broken = False
        self.blocked = self.streak = 0
        self._waiting: trio.CancelScope | None = None
        self._socket.connect(endpoint)

    @classmethod
    async def open(cls, endpoint: str) -> ZmqPipe:
        pipe = cls(endpoint)
        try:
            pipe.send(b"ping\r\n")  # as a refused TCP connect would, fail now
            reply = await pipe.receive()
            if not reply.startswith(b"answer ok pong"):
                raise ConnectionRefusedError(f"no corral server at {endpoint}: "
                                             f"{reply[:200]!r}")
        except BaseException:
            pipe.close()
            raise
        return pipe

    def send(self, data: bytes) -> None:
        if self._broken:
            return
        try:
            self._socket.send(data, zmq.NOBLOCK)
        except zmq.ZMQError:  # over the high-water mark or closed: unusable
            self._broken = True
        self._wake()

    def _wake(self) -> None:
        # A send may take the descriptor's edge: the reader must look again.
        if self._waiting is not None:
            self._waiting.cancel()

    async def receive(self) -> bytes:
        while not self._broken:
            if cast(int, self._socket.get(zmq.EVENTS)) & zmq.POLLIN:
                data: bytes = self._socket.recv(zmq.NOBLOCK)
                await _fair(self)
                return data
            self.blocked += 1
            self.streak = 0
            with trio.CancelScope() as self._waiting:
                try:
                    await trio.lowlevel.wait_readable(self._fd)
                except trio.ClosedResourceError:
                    break
            self._waiting = None
        return b""

    async def run(self) -> None:
        """Watch the monitor: a broken connection ends ``receive``."""
        fd = cast(int, self._monitor.get(zmq.FD))
        while not self._broken:
            while cast(int, self._monitor.get(zmq.EVENTS)) & zmq.POLLIN:
                self._monitor.recv_multipart(zmq.NOBLOCK)
                self._broken = True
            if self._broken:
                self._wake()
                return
            try:
                await trio.lowlevel.wait_readable(fd)
            except trio.ClosedResourceError:
                return

    def close(self) -> None:
        if self._socket.closed:
            return
        self._broken = True
        trio.lowlevel.notify_closing(self._fd)
        trio.lowlevel.notify_closing(cast(int, self._monitor.get(zmq.FD)))
        with contextlib.suppress(zmq.ZMQError):
            self._socket.send(b"bye\r\n", zmq.NOBLOCK)
        self._socket.disable_monitor()
        self._monitor.close(linger=0)
        self._socket.close(linger=100)  # a moment for the bye to leave


async def open_pipe(url: str, tls: ssl.SSLContext | None = None) -> Pipe:
    """A pipe to the server at ``url`` (as ``corral.transports.remote.open_wire``)."""
    tls = client_tls(url, context=tls)
    endpoint = zmq_endpoint(url)
    if endpoint is not None:
        return await ZmqPipe.open(endpoint)
    return await TcpPipe.open(*parse_url(url), tls)
