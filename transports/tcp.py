"""The TCP transport: one kernel served over Tio's text protocol, on trio.

A connection is a ``protocol.Connection``. Output is sent straight from
the task that produced it, as far as the socket takes it without blocking; a writer task
per connection sends the rest. A peer that stops reading fills its outbound buffer to
the cap and is disconnected (and logged) instead of growing the server's memory.

No input stops the server: a connection whose input raises anything unexpected (a bug
its bytes found, in the parser or a command) is dropped with the error logged, and one
that stops sending in the middle of a message for ``Limits.stall_timeout`` seconds is
told so and closed. Between messages a connection may idle for as long as it likes.

With an SSL context (``server_tls``) the listener speaks TLS only. The handshake is
bounded by the same stall timeout, and one that fails, such as a plain-text client's,
drops that connection with the reason logged; a plain-text client is told, in plain
text, first. A plain listener closes at once a connection that opens with a TLS
handshake, so that the client says what went wrong rather than wait.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import socket
import ssl
from collections.abc import Awaitable, Callable
from functools import partial

import trio

from corral.kernel import InvalidArgument

from .codec import encode
from .server import Connection, Drop, Limits, Server

__all__ = ["DEFAULT_PORT", "Limits", "Server", "check_bind", "is_loopback", "serve_tcp",
           "server_tls"]

log = logging.getLogger("corral.server")

DEFAULT_PORT = 2605


class TcpConnection(Connection):
    """A TCP client: its stream, a writer task and a non-blocking twin of its socket."""

    def __init__(self, server: Server, stream: trio.abc.Stream, peer: str) -> None:
        super().__init__(server, peer)
        self.stream = stream
        self.wake_writer = trio.Event()
        self.scope: trio.CancelScope | None = None  # ends the connection's tasks
        self.writing = False  # the writer task is inside send_all
        # The same socket as a plain non-blocking one, for sends that need no wait.
        self.raw = _raw_socket(stream)

    def flush(self) -> None:
        """Send what is queued now, as far as the socket takes it without blocking (no
        scheduler pass); the writer task sends the rest."""
        if not self.outbound or self.dropped is not None:
            return
        if not self.writing and self.raw is not None:
            try:
                sent = self.raw.send(self.outbound)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                sent = 0  # the reader or writer will meet the error and close
            del self.outbound[:sent]
        if self.outbound:
            self.wake_writer.set()

    def drop(self, reason: str, *, flush: bool = False) -> None:
        if self.dropped is None:
            self.dropped = reason
            self.wake_writer.set()
            if not flush:
                self.outbound.clear()
                if self.scope is not None:  # the writer may be stuck on a full socket
                    self.scope.cancel()


_TLS_HANDSHAKE = 0x16  # the first byte a TLS client sends; no command starts with it
# What a plain-text client of a TLS port is told before it is dropped.
_TLS_ONLY = encode(("answer", "error", "protocol", "this", "server", "speaks", "TLS",
                    "only:", "connect", "with", "corrals://"))


async def handle_stream(server: Server, stream: trio.abc.Stream,
                        tls: ssl.SSLContext | None = None) -> None:
    """Serve one connection until it closes, breaks, stalls or is dropped; with ``tls``,
    once its TLS handshake is done."""
    peer = _peer_name(stream)
    if tls is not None:
        secure = await _accept_tls(stream, tls, peer, server.limits.stall_timeout)
        if secure is None:
            return
        stream = secure
    conn = TcpConnection(server, stream, peer)
    log.debug("connection from %s (session %d)", peer, conn.session)
    stall = server.limits.stall_timeout
    try:
        async with trio.open_nursery() as nursery:
            conn.scope = nursery.cancel_scope
            nursery.start_soon(_write, conn, nursery.cancel_scope)
            try:
                receive = _receiver(conn)
                first = tls is None  # its first bytes are checked for a TLS handshake
                while conn.dropped is None:
                    # Only a message left half sent has a deadline.
                    data = await receive(trio.current_time() + stall
                                         if conn.parser.partial else math.inf)
                    if data is None:
                        conn.fail("protocol", f"stalled: nothing for {stall:g} s in the "
                                  "middle of a message")
                        raise Drop(f"stalled for {stall:g} s in the middle of a message")
                    if not data:
                        break
                    if first:
                        first = False
                        if data[0] == _TLS_HANDSHAKE:
                            raise Drop("a TLS handshake on a plain TCP port: it serves "
                                       "corral://, not corrals://")
                    try:
                        conn.receive(data)
                    except Drop:
                        raise
                    except Exception:  # a bug its bytes found: this connection only
                        log.exception("unexpected error on input from %s", peer)
                        raise Drop("an unexpected error on its input (logged)") from None
                    # Not guarded: the journal failing here stops the server, by design.
                    server.flush()
            except Drop as drop:
                conn.drop(str(drop), flush=True)
            except trio.BrokenResourceError:
                pass
            if conn.dropped is None:
                nursery.cancel_scope.cancel()
    finally:
        conn.close()  # what it held goes to others
        if conn.raw is not None:
            conn.raw.close()
        if conn.dropped is not None and conn.dropped != "closed":
            log.warning("dropped %s: %s", peer, conn.dropped)
        with trio.move_on_after(1) as cleanup:
            cleanup.shield = True
            await trio.aclose_forcefully(stream)


async def _accept_tls(stream: trio.abc.Stream, context: ssl.SSLContext, peer: str,
                      stall: float) -> trio.SSLStream[trio.abc.Stream] | None:
    """The connection as a TLS stream once its handshake is done; None, with the stream
    closed and the reason logged, if it does not begin with one or fails or takes
    longer than ``stall`` seconds."""
    reason = f"no TLS handshake in {stall:g} s"
    with trio.move_on_after(stall):
        try:
            first = await stream.socket.recv(1, socket.MSG_PEEK)  # type: ignore[attr-defined]
            if first and first[0] != _TLS_HANDSHAKE:
                reason = "plain text on a TLS port"
                await stream.send_all(_TLS_ONLY)
            elif first:
                secure = trio.SSLStream(stream, context, server_side=True)
                await secure.do_handshake()
                return secure
            else:
                reason = "closed before the TLS handshake"
        except (trio.BrokenResourceError, OSError) as error:
            reason = f"TLS handshake failed: {error.__cause__ or error}"
        except Exception as error:  # no input stops the server
            reason = f"TLS handshake failed: {error!r}"
    log.warning("dropped %s: %s", peer, reason)
    with trio.move_on_after(1) as cleanup:
        cleanup.shield = True
        await trio.aclose_forcefully(stream)
    return None


Receive = Callable[[float], Awaitable[bytes | bytearray | None]]


def _receiver(conn: TcpConnection) -> Receive:
    """How the connection's input is read: from the non-blocking twin of its socket,
    waiting for trio only when there is nothing to read (trio's receive_some yields on
    every call, which costs a scheduler pass per request), with a yield every few reads
    so that a client that never pauses cannot starve the others. ``receive(deadline)``
    returns None if nothing came by ``deadline`` (trio time), b"" at the end."""
    raw = conn.raw
    if raw is None:
        stream = conn.stream

        async def receive_some(deadline: float) -> bytes | bytearray | None:
            with trio.move_on_at(deadline):
                return await stream.receive_some(65536)
            return None

        return receive_some
    streak = 0

    async def receive(deadline: float) -> bytes | bytearray | None:
        nonlocal streak
        while True:
            try:
                data = raw.recv(65536)
            except (BlockingIOError, InterruptedError):
                streak = 0
                if deadline == math.inf:  # the common case: no cancel scope to make
                    await trio.lowlevel.wait_readable(raw)
                    continue
                # Only the wait is timed: bytes already read are never lost to it.
                with trio.move_on_at(deadline) as waited:
                    await trio.lowlevel.wait_readable(raw)
                if waited.cancelled_caught:
                    return None
                continue
            except OSError as error:
                raise trio.BrokenResourceError(str(error)) from error
            streak += 1
            if streak % 16 == 0:
                await trio.lowlevel.checkpoint()
            return data

    return receive


async def _write(conn: TcpConnection, scope: trio.CancelScope) -> None:
    try:
        while True:
            await conn.wake_writer.wait()
            conn.wake_writer = trio.Event()
            if conn.outbound:
                data = bytes(conn.outbound)
                conn.outbound.clear()
                conn.writing = True
                if conn.dropped is None:
                    await conn.stream.send_all(data)
                else:  # a last word before closing: bounded, the peer may not read
                    with trio.move_on_after(1.0):
                        await conn.stream.send_all(data)
                conn.writing = False
            if conn.dropped is not None:
                scope.cancel()
                return
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        conn.drop("closed")
        scope.cancel()


def _raw_socket(stream: trio.abc.Stream) -> socket.socket | None:
    """A plain socket on the stream's descriptor (a duplicate, closed with it), or None
    for streams that are not sockets."""
    try:
        fd = stream.socket.fileno()  # type: ignore[attr-defined]
    except AttributeError:
        return None
    raw = socket.socket(fileno=os.dup(fd))
    raw.setblocking(False)
    return raw


def _peer_name(stream: trio.abc.Stream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]  # type: ignore[attr-defined]
        return f"{host}:{port}"
    except (AttributeError, OSError):
        return "?"


def is_loopback(host: str) -> bool:
    """Whether ``host`` names the loopback interface."""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond loopback without a token (TLS or not)."""
    if not is_loopback(host) and not token:
        raise InvalidArgument(f"binding to {host} needs --token (or --token-file, or "
                              "CORRAL_TOKEN): only loopback is served without one")


def server_tls(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """The server's TLS context from a certificate (chain) file and its private key
    file, both PEM; None without either. Raises InvalidArgument for one without the
    other, or files that do not load."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise InvalidArgument("TLS needs both a certificate and its key (--tls-cert and "
                              "--tls-key)")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)

    def no_passphrase() -> str:  # else OpenSSL would prompt on the terminal
        raise InvalidArgument(f"the TLS key {key} is encrypted: give the server a key "
                              "without a passphrase (readable by its user only)")

    try:
        context.load_cert_chain(cert, key, password=no_passphrase)
    except OSError as error:  # ssl.SSLError too: not PEM, or the key does not match
        raise InvalidArgument(f"cannot load the TLS certificate {cert} and key {key}: "
                              f"{error}") from None
    return context


async def serve_tcp(server: Server, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *,
                    tls: ssl.SSLContext | None = None,
                    task_status: trio.TaskStatus[list[trio.SocketListener]]
                    = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``server`` on ``host:port`` (port 0: any free port) until cancelled; with
    ``tls`` (``server_tls``), TLS only.

    ``task_status.started`` receives the listeners (their sockets say the real port).
    Raises InvalidArgument for a non-loopback host without a token.
    """
    check_bind(host, server.token)
    async with trio.open_nursery() as nursery:
        server.start(nursery)
        listeners = await nursery.start(partial(
            trio.serve_tcp, partial(handle_stream, server, tls=tls), port, host=host))
        task_status.started(listeners)
