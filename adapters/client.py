"""Clients: the embedded facades' surface, over a connection to ``corral serve``.

``connect(url)`` returns a ``Client``, the thread facade's surface speaking to a server,
and ``open_client(url)`` a ``TrioClient``, the trio facade's: the same handles, methods,
results and errors. A connection is one kernel session on the server. Values travel as
str, bytes, int, float or JSON (a tuple comes back a list).

Both are thin shells over one sans-IO protocol object
(``corral.transports.connection.ClientConnection``), which settles every wait, cancel
and loss by the order of the bytes; the shells only move bytes and wake callers. TCP
(plain, or with TLS for ``corrals://``) and ZeroMQ are pipes under the same core.

A lost connection is reconnected, with bounded exponential backoff and jitter
(``Reconnect``; ``reconnect=None`` makes a loss final). Calls in flight when it broke
raise ``Closed`` and may or may not have been applied; calls made while it is down raise
``Closed`` at once; once it is back, the client goes on with the same handles and
subscriptions (each subscription gets a ``reconnected`` event: it may have missed
events). The new connection is a new session: the server released the old one's waits,
and its job claims came back by release or lease, so their late finishes raise
LeaseLost. ``wait_connected()`` waits for the connection to come back.
"""

from __future__ import annotations

import contextlib
import logging
import random
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, cast

from corral.kernel import Closed, Empty, InvalidArgument, Notified, Unsubscribed
from corral.transports.codec import Message
from corral.transports.connection import (
    DEFAULT_RECONNECT,
    ClientConnection,
    Reconnect,
    Request,
    Wait,
    Withdrawn,
)
from corral.transports.remote import Wire, client_tls, client_token, open_wire

from . import threads
from ._facade import route_events
from ._trio_client import TrioClient, open_trio_client

if TYPE_CHECKING:
    from ._redis_client import RedisCorral
    from ._redis_trio import TrioRedisCorral

__all__ = ["Client", "Reconnect", "TrioClient", "connect", "open_client"]

log = logging.getLogger("corral.client")


class Client(threads.Facade):
    """The thread facade over a connection to a corral server. Thread-safe: threads
    sharing one client pipeline their calls. Get one from ``connect()``."""

    def __init__(self, url: str, *, token: str | None = None, connect_timeout: float = 10.0,
                 reconnect: Reconnect | None = DEFAULT_RECONNECT,
                 tls: ssl.SSLContext | None = None) -> None:
        self.url = url
        self._tls = client_tls(url, context=tls)
        self._connect_timeout = connect_timeout
        self._policy = reconnect
        self._core = ClientConnection(token=token)
        self._kernel = self._core
        # Bytes leave in the order their requests were made (the server answers in that
        # order): whoever takes them from the core sends them under _send_lock.
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()  # the core, and what follows
        # Leader/follower reading: whoever needs an answer reads the wire while nobody
        # else does, so a round trip needs no thread switch; the others sleep until
        # their own answer is read or the lead is theirs. The background reader leads
        # only while something can arrive that nobody reads for.
        self._turn = threading.Condition(self._lock)
        self._reading = False
        self._followers: dict[Request, threading.Condition] = {}
        self._progress = threading.Condition(self._lock)  # after each chunk read
        self._subscriptions: dict[int, threads.Subscription] = {}
        self._waiting: dict[int, Wait] = {}  # thread -> the wait it is in
        self._interrupted: set[int] = set()  # threads whose next wait ends at once
        self._closed = False
        self._connected = threading.Event()
        self._last_send = time.monotonic()
        self._wire: Wire = open_wire(url, connect_timeout, self._tls)
        self._up = True  # the wire is live
        self._connected.set()
        threading.Thread(target=self._read_in_background, name="corral-client-reader",
                         daemon=True).start()
        if self._wire.heartbeat is not None:
            threading.Thread(target=self._beat, name="corral-client-heartbeat",
                             daemon=True).start()
        if self._core.auth is not None:
            self._flush()
            self._await(self._core.auth)
            if self._core.auth.error is not None:
                self.close()
                raise self._core.auth.error

    def __enter__(self) -> Client:
        return self

    def __repr__(self) -> str:
        return f"<corral Client {self.url}>"

    # -- what the handles call ------------------------------------------------------------

    def _clock(self) -> float:
        return 0.0  # the server keeps the time

    def _send(self, command: Callable[..., Any], *args: Any, **kwargs: Any) -> Request:
        with self._send_lock:
            with self._lock:
                if self._closed:
                    raise Closed("this corral is closed")
                request: Request = command(*args, **kwargs)
                if type(request) is Wait:
                    self._waiting[threading.get_ident()] = request
                data = self._core.data_to_send()
            self._write(data)
        return request

    def _write(self, data: bytes) -> None:
        """Send ``data`` (send lock held). An interrupt in the middle of it (a large
        send that blocks) cuts the stream: the connection is dropped."""
        if not data:
            return
        wire = self._wire
        try:
            wire.sendall(data)
        except OSError as error:
            self._lose(wire, f"send failed: {error}")
        except BaseException:
            self._lose(wire, "a send was cut by an interrupt")
            raise
        if wire.heartbeat is not None:
            self._last_send = time.monotonic()

    def _flush(self) -> None:
        """Send what the core queued by itself (an unwait, a give-back, a reopen)."""
        with self._send_lock:
            with self._lock:
                data = self._core.data_to_send()
                self._turn.notify_all()  # there may be answers for nobody to read now
            self._write(data)

    def _run(self, command: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        request = self._send(command, *args, **kwargs)
        if not request.done:
            self._await(request)
        if request.error is not None:
            raise request.error
        if not request.done:  # pragma: no cover - the core fails what it cannot answer
            raise Closed("the request was never answered")
        return request.value

    def _wait(self, command: Callable[..., Any], *args: Any, timeout: float | None,
              **kwargs: Any) -> Any:
        me = threading.get_ident()
        try:
            wait = cast(Wait, self._send(command, *args, timeout=timeout, **kwargs))
            if self._interrupted and me in self._interrupted:
                self._cancel(wait, gone=False)  # withdrawn if it parks; else it is ours
            try:
                if not wait.done:
                    self._await(wait)
            except BaseException:  # an interrupted caller is gone: what served it goes back
                wait.gone = True  # first: a second interrupt must not undo it
                self._cancel(wait, gone=True)
                raise
        finally:
            self._waiting.pop(me, None)
        if wait.parked and self._interrupted:
            with self._lock:
                self._interrupted.discard(me)  # used up by a wait that would park
        error = wait.error
        if error is None:
            return wait.value
        if type(error) is Withdrawn:
            raise Closed("the corral was closed while waiting") if self._closed else (
                Empty("interrupted"))
        raise error

    def _cancel(self, wait: Wait, *, gone: bool) -> None:
        with self._send_lock:
            with self._lock:
                self._core.cancel_wait(wait, gone=gone)
                data = self._core.data_to_send()
                self._turn.notify_all()
            self._write(data)

    def interrupt(self, thread: threading.Thread) -> None:
        with self._lock:
            wait = self._waiting.get(thread.ident or 0)
            if wait is None or wait.done:
                if thread.ident is not None:
                    self._interrupted.add(thread.ident)
                return
        self._cancel(wait, gone=False)

    interrupt.__doc__ = threads.Facade.interrupt.__doc__

    def _subscribe(self, name: str, start: int | None) -> threads.Subscription:
        with self._send_lock:
            with self._lock:
                if self._closed:
                    raise Closed("this corral is closed")
                request = self._core.subscribe(name, start=start)
                subscription = threads.Subscription(self, request.value)
                self._subscriptions[request.value] = subscription
                data = self._core.data_to_send()
            self._write(data)
        try:
            self._await(request)
            if request.error is not None:
                raise request.error
        except BaseException:
            self._subscriptions.pop(subscription._sid, None)
            raise
        return subscription

    def _unsubscribe(self, subscription: threads.Subscription) -> None:
        if self._subscriptions.pop(subscription._sid, None) is not None:
            with contextlib.suppress(Closed):  # the server ended it with the connection
                self._run(self._core.unsubscribe, subscription._sid)
        subscription._end("closed")

    # -- public extras -----------------------------------------------------------------

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Wait until the connection is up (at once if it is); False after ``timeout``
        seconds without it, or once the client is closed."""
        return self._connected.wait(timeout) and not self._closed

    def ping(self) -> None:
        """One round trip to the server. Raises Closed if the connection is lost."""
        self._run(self._core.ping)

    def stats(self) -> dict[str, Any]:
        """The server's statistics: version, uptime, connections, commands, containers."""
        stats: dict[str, Any] = self._run(self._core.stats)
        return stats

    def raw(self, words: Sequence[str], fields: dict[str, Any] | None = None) -> Message:
        """One protocol command as words and fields (docs/protocol.md): its answer, or
        the error it raises. For what the surface does not offer, such as Tio's
        ``persistent_list`` kind."""
        message: Message = self._run(self._core.raw, words, fields)
        return message

    def close(self) -> None:
        """Close: parked callers get Closed (or what served them, if it was on its way),
        subscriptions end. Idempotent."""
        with self._send_lock:
            with self._lock:
                if self._closed:
                    return
                self._closed = True
                for wait in list(self._waiting.values()):
                    self._core.cancel_wait(wait, gone=False)
                data = self._core.data_to_send()
                self._turn.notify_all()
            self._write(data)
        with self._lock:  # a moment for the withdrawals (and any give-back) to settle
            give_up = time.monotonic() + 2.0
            while not self._core.settled and (left := give_up - time.monotonic()) > 0:
                self._turn.notify_all()
                self._progress.wait(left)
        self._lose(self._wire, "closed by this client")
        with self._lock:
            self._finalize("the corral was closed")

    # -- reading -------------------------------------------------------------------------

    def _await(self, request: Request) -> None:
        """Wait for ``request`` to complete, reading the wire ourselves when nobody else
        is reading it."""
        with self._lock:
            if not request.done and self._reading:
                request.waker = wake = threading.Condition(self._lock)
                self._followers[request] = wake
                try:
                    while not request.done and self._reading:
                        wake.wait()
                finally:
                    del self._followers[request]
                    if not self._reading and not request.done:
                        self._hand_off()  # leaving (an interrupt) with the lead ours
            if request.done:
                if not self._reading:  # the lead may have been handed to us: pass it on
                    self._hand_off()
                return
            self._reading = True
        try:
            while not request.done and self._read_some():
                pass
        finally:
            with self._lock:
                self._reading = False
                if self._followers or self._core.busy:
                    self._hand_off()

    def _hand_off(self) -> None:
        """The lead is free: wake the first follower to take it, or else the background
        reader if something can arrive unasked (lock held)."""
        for wake in self._followers.values():
            wake.notify()
            return
        if self._core.busy:
            self._turn.notify_all()

    def _read_some(self) -> bool:
        """One blocking receive and what it completes; False once the wire is lost."""
        wire = self._wire
        try:
            try:
                data = wire.recv(65536)
                reason = "the server closed the connection"
            except OSError as error:
                data, reason = b"", f"receive failed: {error}"
            with self._lock:
                if wire is not self._wire:
                    return False  # a wire we already gave up
                if data:
                    done, effects = self._core.receive_data(data)
                else:
                    done, effects = self._core.connection_lost(reason)
                wire.unsettled = False
                if done or effects or self._closed:  # close() waits on any progress
                    self._settled(done, effects)
                lost, queued = self._core.lost is not None, self._core.has_data
        finally:
            if wire.unsettled:  # bytes read and not handled (an interrupt): cut
                wire.unsettled = False
                self._lose(wire, "a read was cut by an interrupt")
        if queued:
            self._flush()
        if lost:
            self._lose(wire, self._core.lost or reason)
            return False
        return True

    def _settled(self, done: list[Request], effects: list[Notified | Unsubscribed]) -> None:
        """Wake the callers of completed requests; hand events to subscriptions (lock
        held)."""
        for request in done:
            if request.waker is not None:
                request.waker.notify()
        route_events(self._subscriptions, effects)
        if self._closed:  # close() waits for its withdrawals to settle
            self._progress.notify_all()

    def _read_in_background(self) -> None:
        while True:
            with self._lock:
                while self._reading or not self._core.busy:
                    if self._closed and not self._core.busy:
                        return
                    self._turn.wait()
                self._reading = True
            try:
                self._read_some()
            finally:
                with self._lock:
                    self._reading = False
                    self._hand_off()

    def _beat(self) -> None:
        """Ping when idle, so that the server keeps the session and a dead server is
        noticed (the wire gives up on a request unanswered for too long)."""
        heartbeat = self._wire.heartbeat
        assert heartbeat is not None
        while not self._closed:
            time.sleep(heartbeat / 2)
            if (self._connected.is_set()
                    and time.monotonic() - self._last_send >= heartbeat):
                with contextlib.suppress(Closed):
                    self._run(self._core.ping)

    # -- loss and reconnection -----------------------------------------------------------

    def _lose(self, wire: Wire, reason: str) -> None:
        """``wire`` is gone: fail what is open on it, once; reconnect unless closed."""
        with self._lock:
            if wire is not self._wire or not self._up:
                return
            self._up = False
            self._connected.clear()
            self._settled(*self._core.connection_lost(reason))
            final = self._closed or self._policy is None
            if final:
                self._finalize(f"the connection is lost: {reason}")
            self._turn.notify_all()
        wire.close()
        if not final:
            log.warning("corral: lost %s (%s); reconnecting", self.url, reason)
            threading.Thread(target=self._reconnect, args=(time.monotonic(),),
                             name="corral-client-reconnect", daemon=True).start()

    def _finalize(self, reason: str) -> None:
        """Closed for good, whatever the connection's state: subscriptions end, and
        whoever waits for the connection or the lead hears it (lock held)."""
        self._closed = True
        subscriptions, self._subscriptions = self._subscriptions, {}
        for subscription in subscriptions.values():
            subscription._end(reason)
        self._connected.set()  # wait_connected() answers False from now on
        self._turn.notify_all()
        self._progress.notify_all()

    def _reconnect(self, since: float) -> None:
        policy = self._policy
        assert policy is not None
        for delay in policy.delays(random.Random()):
            time.sleep(delay)
            if self._closed:
                return
            if policy.give_up is not None and time.monotonic() - since > policy.give_up:
                log.error("corral: gave up reconnecting to %s after %.1f s", self.url,
                          time.monotonic() - since)
                with self._lock:
                    self._finalize("gave up reconnecting")
                return
            try:
                wire = open_wire(self.url, self._connect_timeout, self._tls)
            except (OSError, Closed):
                continue
            with self._send_lock:
                with self._lock:
                    if self._closed:
                        wire.close()
                        return
                    self._wire = wire
                    self._core.reconnect()
                    data = self._core.data_to_send()
                    self._up = True
                    self._connected.set()
                    self._turn.notify_all()
                self._write(data)
            log.info("corral: reconnected to %s after %.1f s", self.url,
                     time.monotonic() - since)
            return


def connect(url: str = "corral://127.0.0.1:2605", *, token: str | None = None,
            connect_timeout: float = 10.0, reconnect: Reconnect | None = DEFAULT_RECONNECT,
            tls_ca: str | None = None, ssl_context: ssl.SSLContext | None = None
            ) -> Client | RedisCorral:
    """A blocking, thread-safe client of the server at ``url`` (``corral://host:port``,
    ``corrals://host:port`` with TLS, or ``zmq+tcp://host:port``), or the thread facade
    on Redis: ``redis://host:port/db``, ``rediss://...``, ``unix:///path/to/redis.sock``,
    a Redis Cluster (``redis+cluster://host:port[,host:port...]``) or the primary that
    Sentinels name (``redis+sentinel://host:port[,host:port...]/service[/db]``);
    ``?prefix=`` names the key prefix, a password goes in the URL, and redis-py
    reconnects by itself.

    ``token``: sent as ``auth TOKEN`` first; None: the environment's ``CORRAL_TOKEN``, if
    set (a Redis URL ignores it). ``corrals://`` checks the server's certificate and
    hostname against the system's trust store, or the CA file ``tls_ca`` (None: the
    environment's ``CORRAL_TLS_CA``, if set), or uses ``ssl_context`` as given.
    ``reconnect``: how to come back after a lost connection (None: never).

    Raises OSError if the server cannot be reached (ssl.SSLCertVerificationError, naming
    it, if its certificate is not trusted), ProtocolError if it refuses the token,
    InvalidArgument for options the URL does not take.
    """
    if _is_redis(url, token, tls_ca, ssl_context):
        from ._redis_client import open_redis  # redis-py is an optional dependency

        return open_redis(url, connect_timeout=connect_timeout)
    return Client(url, token=client_token(token), connect_timeout=connect_timeout,
                  reconnect=reconnect, tls=client_tls(url, tls_ca, ssl_context))


def _is_redis(url: str, token: str | None, tls_ca: str | None,
              ssl_context: ssl.SSLContext | None) -> bool:
    """Whether ``url`` is one of the Redis schemes; InvalidArgument if it is and corral's
    own connection options came with it."""
    if not url.lower().startswith(("redis://", "rediss://", "unix://", "redis+cluster://",
                                   "redis+sentinel://")):
        return False
    if token is not None:
        raise InvalidArgument("a Redis URL takes no token: put the password in the URL")
    if tls_ca is not None or ssl_context is not None:
        raise InvalidArgument("a Redis URL takes no tls_ca or ssl_context: use rediss:// "
                              "and redis-py's ssl_* query options")
    return True


@asynccontextmanager
async def open_client(url: str = "corral://127.0.0.1:2605", *, token: str | None = None,
                      connect_timeout: float = 10.0,
                      reconnect: Reconnect | None = DEFAULT_RECONNECT,
                      tls_ca: str | None = None, ssl_context: ssl.SSLContext | None = None
                      ) -> AsyncIterator[TrioClient | TrioRedisCorral]:
    """The trio facade's surface over a connection to the server at ``url``, closed when
    the block exits; for a Redis URL (as ``connect`` takes them), the trio facade on
    Redis (``TrioRedisCorral``: the thread facade's calls run in worker threads;
    ``token`` must be None, and redis-py reconnects by itself). ``token``, ``tls_ca``
    and ``ssl_context`` are as for ``connect``: None reads ``CORRAL_TOKEN`` and
    ``CORRAL_TLS_CA``. Cancelling a waiting call withdraws it; if it was served first,
    the call returns what served it (an operation that completed is not undone)."""
    if _is_redis(url, token, tls_ca, ssl_context):
        from ._redis_trio import open_trio_redis  # redis-py is an optional dependency

        async with open_trio_redis(url, connect_timeout=connect_timeout) as corral:
            yield corral
        return
    async with open_trio_client(url, token=client_token(token),
                                connect_timeout=connect_timeout, reconnect=reconnect,
                                tls=client_tls(url, tls_ca, ssl_context)) as client:
        yield client

