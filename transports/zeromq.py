"""The ZeroMQ transport: the TCP protocol's messages in frames, on a ROUTER socket.

Each client is a DEALER socket; its routing id names its session. A frame from a client
carries protocol bytes (one or more whole messages, as on TCP), and every flush of a
session's output goes back as one frame. The server runs on trio without polling: it
waits on the socket's file descriptor and drains the socket whenever that descriptor or
a send of its own says there may be input (ZeroMQ's descriptor is edge-triggered, so
every send is followed by a fresh look).

ZeroMQ does not tell a ROUTER when a peer goes away, so sessions end in three ways: the
client says ``bye``; it sends nothing for ``idle_timeout`` seconds (corral's clients
ping every few seconds while idle); or it does not read, so its queue reaches the
high-water mark (``sndhwm`` messages). Each ends the session as a closed TCP connection
does: its waits are withdrawn and its leases go back per each queue's policy. A peer
whose session ended is answered ``answer error closed`` from then on, so a client never
talks to a fresh session thinking it is the old one.

When the server ends a session it tells the peer, best effort, with ``event 0 closed``
and the reason as value. ``ZmqWire`` is the client's end, used by ``RemoteKernel`` for
``zmq+tcp://`` URLs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
from collections import OrderedDict
from typing import Any, cast
from urllib.parse import urlsplit

import trio
import zmq

from corral.kernel import InvalidArgument

from .codec import encode
from .server import Drop, Server, Session
from .tcp import check_bind

__all__ = ["DEFAULT_ENDPOINT", "DEFAULT_ZMQ_PORT", "ZmqWire", "serve_zmq"]

log = logging.getLogger("corral.server")

DEFAULT_ZMQ_PORT = 2606
DEFAULT_ENDPOINT = f"tcp://127.0.0.1:{DEFAULT_ZMQ_PORT}"
_BATCH = 256  # messages read before letting other tasks run
_GONE = 4096  # ended peers remembered, to answer them "closed"


class Peer(Session):
    """A ZeroMQ client: its routing id and when it was last heard from."""

    def __init__(self, transport: _Transport, identity: bytes) -> None:
        super().__init__(transport.server, identity.hex())
        self.identity = identity
        self.transport = transport
        self.seen = trio.current_time()

    def flush(self) -> None:
        if self.outbound and self.dropped is None:
            data = bytes(self.outbound)
            self.outbound.clear()
            self.transport.send(self, data)

    def drop(self, reason: str, *, flush: bool = False) -> None:
        """End the session, telling the peer why (``event 0 closed``, best effort: a
        peer that does not read will not hear it)."""
        if self.dropped is None:
            if flush:
                self.flush()
            self.dropped = reason
            self.outbound.clear()
            if reason != "bye":
                self.transport.tell(self.identity, encode(("event", "0", "closed"),
                                                          {"value": reason}))
            self.transport.retire(self)


class _Transport:
    """The ROUTER socket and its peers."""

    def __init__(self, server: Server, sock: zmq.Socket[bytes], idle_timeout: float,
                 max_peers: int) -> None:
        self.server = server
        self.socket = sock
        self.idle_timeout = idle_timeout
        self.max_peers = max_peers
        self.peers: dict[bytes, Peer] = {}
        self.gone: OrderedDict[bytes, str] = OrderedDict()  # ended peers -> why
        self.retired: list[Peer] = []
        self.parked: trio.CancelScope | None = None  # the reader's wait, while it waits

    def send(self, peer: Peer, data: bytes) -> None:
        try:
            self.socket.send_multipart((peer.identity, data), zmq.NOBLOCK)
        except zmq.Again:
            peer.drop(f"{self.socket.get(zmq.SNDHWM)!r} messages unread: a peer that "
                      "does not read")
        except zmq.ZMQError as error:  # EHOSTUNREACH: the peer's pipe is gone
            peer.drop(f"unreachable: {error}")
        self.wake()

    def wake(self) -> None:
        """Make the reader look at the socket again: a send may have taken the edge
        that would have woken it."""
        if self.parked is not None:
            self.parked.cancel()

    def retire(self, peer: Peer) -> None:
        self.retired.append(peer)
        self.wake()

    def reap(self) -> None:
        """End the sessions of retired peers."""
        while self.retired:
            peer = self.retired.pop()
            if self.peers.pop(peer.identity, None) is None:
                continue
            self.gone[peer.identity] = peer.dropped or "closed"
            if len(self.gone) > _GONE:
                self.gone.popitem(last=False)
            peer.close()
            if peer.dropped != "bye":
                log.warning("dropped zmq peer %s: %s", peer.peer, peer.dropped)

    def receive(self, frames: list[bytes]) -> None:
        identity = frames[0]
        peer = self.peers.get(identity)
        if peer is None:
            reason = self.gone.get(identity)
            if reason is None and len(self.peers) >= self.max_peers:
                reason = f"{self.max_peers} peers connected"
            if reason is not None:
                self._refuse(identity, reason)
                return
            peer = self.peers[identity] = Peer(self, identity)
        peer.seen = trio.current_time()
        try:
            for data in frames[1:]:
                if data == b"bye\r\n":
                    peer.drop("bye")
                    return
                peer.receive(data)
        except Drop as drop:
            peer.drop(str(drop), flush=True)

    def _refuse(self, identity: bytes, reason: str) -> None:
        self.tell(identity, encode(("answer", "error", "closed",
                                    *f"session ended: {reason}".split())))

    def tell(self, identity: bytes, message: bytes) -> None:
        """Send, best effort: the peer may be gone or not reading."""
        with contextlib.suppress(zmq.ZMQError):
            self.socket.send_multipart((identity, message), zmq.NOBLOCK)
        self.wake()

    async def read(self) -> None:
        sock = self.socket
        fd = cast(int, sock.get(zmq.FD))
        while True:
            count = 0
            while count < _BATCH:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                count += 1
                self.receive(frames)
            self.server.flush()
            self.reap()
            if count == _BATCH or cast(int, sock.get(zmq.EVENTS)) & zmq.POLLIN:
                await trio.lowlevel.checkpoint()
                continue
            with trio.CancelScope() as self.parked:
                await trio.lowlevel.wait_readable(fd)
            self.parked = None

    async def expire(self) -> None:
        """End the sessions of peers silent for longer than ``idle_timeout``."""
        while True:
            await trio.sleep(self.idle_timeout / 4)
            limit = trio.current_time() - self.idle_timeout
            for peer in list(self.peers.values()):
                if peer.seen < limit:
                    peer.drop(f"silent for more than {self.idle_timeout:g} s")
            self.reap()


def check_endpoint(endpoint: str, token: str | None) -> None:
    """Refuse a malformed endpoint, and a TCP one beyond loopback without a token."""
    parts = urlsplit(endpoint)
    if parts.scheme == "tcp" and parts.hostname:
        check_bind(parts.hostname, token)
    elif parts.scheme not in ("ipc", "inproc"):
        raise InvalidArgument(f"not a ZeroMQ endpoint to serve: {endpoint!r} (expected "
                              "tcp://host:port, ipc://path or inproc://name)")


async def serve_zmq(server: Server, endpoint: str = DEFAULT_ENDPOINT, *,
                    idle_timeout: float = 30.0, sndhwm: int = 10_000,
                    max_peers: int = 10_000,
                    context: zmq.Context[Any] | None = None,
                    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``server`` on a ROUTER socket bound to ``endpoint`` until cancelled.

    A ``tcp://host:0`` endpoint takes any free port: ``task_status.started`` receives
    the endpoint actually bound. Raises InvalidArgument for a non-loopback host without
    a token.
    """
    check_endpoint(endpoint, server.token)
    sock = (context or zmq.Context.instance()).socket(zmq.ROUTER)
    try:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a full peer raises instead of losing
        sock.setsockopt(zmq.SNDHWM, sndhwm)
        sock.setsockopt(zmq.MAXMSGSIZE, server.limits.max_line + server.limits.max_payload)
        sock.bind(endpoint)
        bound = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        transport = _Transport(server, sock, idle_timeout, max_peers)
        try:
            async with trio.open_nursery() as nursery:
                server.start(nursery)
                nursery.start_soon(transport.read)
                nursery.start_soon(transport.expire)
                task_status.started(bound)
        finally:
            for peer in list(transport.peers.values()):
                peer.drop("the server stopped")
            transport.reap()
    finally:
        sock.close(linger=500)  # a moment for the peers to hear "closed"


# -- the client's end ----------------------------------------------------------------------


class ZmqWire:
    """A DEALER socket as the byte pipe ``RemoteKernel`` reads and writes.

    A ZeroMQ socket must not be used by two threads at once, so every operation on it
    takes a lock, and a blocked reader waits on the socket's descriptor, outside the
    lock, beside a wake-up pipe: a sender that finds input pending writes to the pipe,
    since its send may have taken the edge the reader waits for. The server is taken
    for dead when a request goes unanswered for ``dead_after`` seconds; ``heartbeat``
    says how often an idle client should ping.
    """

    heartbeat: float | None = 5.0

    def __init__(self, endpoint: str, *, connect_timeout: float = 10.0,
                 dead_after: float = 15.0, context: zmq.Context[Any] | None = None) -> None:
        self.dead_after = dead_after
        self._lock = threading.Lock()
        self._socket = (context or zmq.Context.instance()).socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        # One connection per client: after a break, a reconnection would reach a
        # session that knows nothing of this one's handles.
        self._socket.setsockopt(zmq.RECONNECT_IVL, -1)
        self._socket.setsockopt(zmq.ROUTING_ID, os.urandom(12))
        self._fd: int = self._socket.get(zmq.FD)
        # The monitor says at once when the connection breaks (the server stopped or
        # died); ``dead_after`` is for a server that is there but does not answer.
        self._monitor = self._socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self._monitor_fd: int = self._monitor.get(zmq.FD)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._closed = False
        self._inside = 0  # readers in select(): the pipe is closed after the last one
        self._asked: float | None = None  # when the oldest unanswered send went
        try:
            self._socket.connect(endpoint)
            self._handshake(connect_timeout)
        except BaseException:
            self.close()
            raise

    def _handshake(self, timeout: float) -> None:
        """One ping, so that an absent server fails the connect instead of the first
        call (a DEALER's connect never fails by itself)."""
        self._socket.send(b"ping\r\n")
        if not self._socket.poll(timeout * 1000, zmq.POLLIN):
            raise TimeoutError(f"no corral server answered at {self._endpoint()} "
                               f"within {timeout:g} s")
        reply = self._socket.recv()
        if not reply.startswith(b"answer ok pong"):
            raise ConnectionRefusedError(f"the server refused: {reply[:200]!r}")

    def _endpoint(self) -> str:
        return self._socket.getsockopt_string(zmq.LAST_ENDPOINT) or "?"

    def sendall(self, data: bytes) -> None:
        with self._lock:
            if self._closed:
                raise OSError("the connection is closed")
            self._socket.send(data)
            if self._asked is None:
                self._asked = time.monotonic()
            if self._socket.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                self._poke()

    def _poke(self) -> None:
        """Wake a reader blocked in select() (lock held, so the pipe is open)."""
        with contextlib.suppress(BlockingIOError):  # already poked
            os.write(self._wake_w, b"!")

    def recv(self, size: int = 0) -> bytes:
        """The next frame; b"" once the connection is closed or the server is dead."""
        while True:
            with self._lock:
                if self._closed:
                    return b""
                try:
                    data: bytes = self._socket.recv(zmq.NOBLOCK)
                except zmq.Again:
                    pass
                else:
                    self._asked = None
                    return data
                if self._disconnected() or (
                        self._asked is not None
                        and time.monotonic() - self._asked > self.dead_after):
                    return b""
                self._inside += 1
            try:
                select.select([self._fd, self._monitor_fd, self._wake_r], [], [],
                              self.heartbeat)
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 4096)
            finally:
                with self._lock:
                    self._inside -= 1
                    if self._closed and not self._inside:
                        self._close_pipe()

    def _disconnected(self) -> bool:
        """Whether the monitor has seen the connection break (lock held)."""
        try:
            self._monitor.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return False
        return True

    def close(self) -> None:
        """Close the socket (a ``bye`` first, so the server ends the session at once)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(zmq.ZMQError):
                self._socket.send(b"bye\r\n", zmq.NOBLOCK)
            self._socket.disable_monitor()
            self._monitor.close(linger=0)
            self._socket.close(linger=100)  # a moment for the bye to leave
            if self._inside:
                self._poke()  # the last reader out closes the pipe
            else:
                self._close_pipe()

    def _close_pipe(self) -> None:
        os.close(self._wake_r)
        os.close(self._wake_w)
