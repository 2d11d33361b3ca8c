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

No input stops the server: a peer whose input raises anything unexpected (a bug its
bytes found, in the parser or a command) is dropped with the error logged. There is no
stall timeout as on TCP: a frame arrives whole, and a peer that leaves a message half
sent across frames and goes quiet is ended by ``idle_timeout`` like any silent peer.

When the server ends a session it tells the peer, best effort, with ``event 0 closed``
and the reason as value. ``ZmqWire`` is the thread client's end for ``zmq+tcp://`` URLs
(the trio client has its own, ``ZmqPipe``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import OrderedDict
from typing import Any, cast
from urllib.parse import urlsplit

import trio
import zmq

from corral.kernel import InvalidArgument

from .codec import encode
from .server import Connection, Drop, Server
from .tcp import check_bind

__all__ = ["DEFAULT_ENDPOINT", "DEFAULT_ZMQ_PORT", "ZmqWire", "serve_zmq"]

log = logging.getLogger("corral.server")

DEFAULT_ZMQ_PORT = 2606
DEFAULT_ENDPOINT = f"tcp://127.0.0.1:{DEFAULT_ZMQ_PORT}"
_BATCH = 256  # messages read before letting other tasks run
# Plain ints: pyzmq's constants are enum flags, and combining those costs microseconds
# on every message.
_EVENTS, _POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)
_NOBLOCK, _SNDMORE = int(zmq.NOBLOCK), int(zmq.SNDMORE)
_GONE = 4096  # ended peers remembered, to answer them "closed"


class Peer(Connection):
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
            self.socket.send(peer.identity, _NOBLOCK | _SNDMORE)
            self.socket.send(data, _NOBLOCK)
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
        except Exception:  # a bug its bytes found: this peer only, not the server
            log.exception("unexpected error on input from zmq peer %s", peer.peer)
            peer.drop("an unexpected error on its input (logged)", flush=True)

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
            while count < _BATCH and cast(int, sock.get(_EVENTS)) & _POLLIN:
                self.receive(sock.recv_multipart(_NOBLOCK))
                count += 1
            self.server.flush()
            self.reap()
            # Sends may have taken the descriptor's edge: look before waiting on it.
            if count == _BATCH or cast(int, sock.get(_EVENTS)) & _POLLIN:
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
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as error:  # as a TCP bind would fail: an OSError
            raise OSError(error.errno, f"cannot serve ZeroMQ on {endpoint}: {error}"
                          ) from None
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
    """A DEALER socket as the thread client's byte pipe (``transports.remote.Wire``).

    A ZeroMQ socket must not be used by two threads at once. This one belongs to
    whoever holds the lock, except while a reader waits in ``zmq.poll``: then the reader
    owns it, and a sender hands its bytes over an inproc pipe that the reader polls
    too, and forwards. A monitor says at once when the connection breaks (the server
    stopped or died); a request unanswered for ``dead_after`` seconds counts as a dead
    server too. ``heartbeat`` says how often an idle client should ping.
    """

    heartbeat: float | None = 5.0

    def __init__(self, endpoint: str, *, connect_timeout: float = 10.0,
                 dead_after: float = 15.0, context: zmq.Context[Any] | None = None) -> None:
        context = context or zmq.Context.instance()
        self.dead_after = dead_after
        self._lock = threading.Lock()
        self._socket = context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        # One connection per client: after a break, a reconnection would reach a
        # session that knows nothing of this one's handles.
        self._socket.setsockopt(zmq.RECONNECT_IVL, -1)
        self._socket.setsockopt(zmq.ROUTING_ID, os.urandom(12))
        self._monitor = self._socket.get_monitor_socket(zmq.EVENT_DISCONNECTED
                                                        | zmq.EVENT_CLOSED)
        relay = f"inproc://corral-wire-{os.urandom(8).hex()}"
        self._relay_out = context.socket(zmq.PAIR)  # polled by the reader
        self._relay_out.bind(relay)
        self._relay_in = context.socket(zmq.PAIR)  # written by senders, under the lock
        self._relay_in.connect(relay)
        self._poller = zmq.Poller()
        for sock in (self._socket, self._monitor, self._relay_out):
            self._poller.register(sock, zmq.POLLIN)
        self._polling = False  # a reader owns the socket, in poll()
        self._sockets_closed = threading.Event()
        self._relayed = 0  # frames handed to the reader to forward
        self._closed = False
        self.unsettled = False  # a frame is read and not yet the client's (transports.remote)
        self._asked: float | None = None  # when the oldest unanswered send went
        try:
            self._socket.connect(endpoint)
            self._handshake(connect_timeout)
        except BaseException:
            self.close()
            raise

    def _handshake(self, timeout: float) -> None:
        """One ping, so that an absent server fails the connect, as a refused TCP
        connection does, instead of the first call (a DEALER's connect never fails)."""
        self._socket.send(b"ping\r\n")
        ready = dict(self._poller.poll(round(timeout * 1000)))
        if self._socket in ready:
            reply = self._socket.recv()
            if not reply.startswith(b"answer ok pong"):
                raise ConnectionRefusedError(f"not a corral server: {reply[:200]!r}")
        elif self._monitor in ready:
            raise ConnectionRefusedError(f"nothing listens at {self._endpoint()}")
        else:
            raise TimeoutError(f"no corral server answered at {self._endpoint()} "
                               f"within {timeout:g} s")

    def _endpoint(self) -> str:
        return self._socket.getsockopt_string(zmq.LAST_ENDPOINT) or "?"

    def sendall(self, data: bytes) -> None:
        with self._lock:
            if self._closed:
                raise OSError("the connection is closed")
            if self._polling:
                self._relay_in.send(data)
                self._relayed += 1
            else:
                try:  # a DEALER whose server is gone would block for good
                    self._socket.send(data, zmq.NOBLOCK)
                except zmq.Again:
                    raise ConnectionResetError("the server does not take our frames "
                                               "(gone, or not reading)") from None
            if self._asked is None:
                self._asked = time.monotonic()

    def recv(self, size: int = 0) -> bytes:
        """The next frame; b"" once the connection is closed, broken or dead. One
        reader at a time (the client's leader)."""
        timeout = None if self.heartbeat is None else round(self.heartbeat * 1000)
        while True:
            with self._lock:
                if self._closed:
                    return b""
                if (self._asked is not None
                        and time.monotonic() - self._asked > self.dead_after):
                    return b""
                self._polling = True
            try:
                ready = dict(self._poller.poll(timeout))
            except BaseException:
                self._release()
                raise
            if not self._release():
                return b""
            if self._socket in ready:
                with self._lock:
                    if self._closed:  # closed since the poll ended
                        return b""
                    self.unsettled = True  # until the client has what this returns
                    data: bytes = self._socket.recv()
                    self._asked = None
                    return data
            if self._monitor in ready:
                return b""  # the connection broke

    def _release(self) -> bool:
        """End a reader's poll: forward what senders handed over meanwhile. False if
        the wire was closed meanwhile (the sockets are closed here, then)."""
        with self._lock:
            self._polling = False
            if self._closed:  # close() left the sockets to the reader
                self._close_sockets()
                return False
            while self._relayed:
                frame = self._relay_out.recv()
                self._relayed -= 1
                try:
                    self._socket.send(frame, zmq.NOBLOCK)
                except zmq.Again:  # the server is gone: the reader sees it next
                    self._closed = True
                    self._close_sockets()
                    return False
            return True

    def close(self) -> None:
        """Close the socket (a ``bye`` first, so the server ends the session at once)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if not self._polling:
                self._close_sockets()
                return
            self._relay_in.send(b"")  # wakes the reader, which closes the sockets
        # Give it a moment: a process that exits now would lose the bye.
        self._sockets_closed.wait(1.0)

    def _close_sockets(self) -> None:
        with contextlib.suppress(zmq.ZMQError):
            self._socket.send(b"bye\r\n", zmq.NOBLOCK)
        self._socket.disable_monitor()
        for sock in (self._monitor, self._relay_in, self._relay_out):
            sock.close(linger=0)
        self._socket.close(linger=100)  # a moment for the bye to leave
        self._sockets_closed.set()
