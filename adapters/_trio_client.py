"""The native trio client: the trio facade's surface over a connection, with no thread.

A call queues its bytes and sends them at once, without blocking: the pipe
(``_trio_pipes``) writes what the socket takes and leaves the rest to a writer task, so
an abort function (a cancelled wait's ``unwait``) can send too. Then, as the thread
client does, the caller reads the pipe itself if no other task is reading it (a round
trip costs no task switch), feeding what arrives to the sans-IO core and waking the
tasks whose requests it completes; otherwise it sleeps until the reader wakes it, or
hands it the lead. A background task reads while something can arrive that nobody
reads for (waits whose callers sleep, subscriptions), and reconnects.

A cancelled wait withdraws itself (``unwait``) and goes on until the core knows how it
ended: withdrawn, and the cancel stands; served, and the call returns what served it
(trio's rule for an operation that completed). A cancelled call that is not a wait is
already on its way and completes.
"""

from __future__ import annotations

import contextlib
import logging
import random
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import outcome
import trio

from corral.kernel import Closed, Empty, Notified, Unsubscribed
from corral.transports.connection import (
    DEFAULT_RECONNECT,
    ClientConnection,
    Reconnect,
    Request,
    Wait,
    Withdrawn,
)
from corral.transports.remote import client_tls

from . import trio as trio_facade
from ._facade import route_events
from ._trio_pipes import Pipe, open_pipe

__all__ = ["TrioClient", "open_trio_client"]

log = logging.getLogger("corral.client")

_checkpoint_if_cancelled = trio.lowlevel.checkpoint_if_cancelled
_cancel_shielded_checkpoint = trio.lowlevel.cancel_shielded_checkpoint
_wait_task_rescheduled = trio.lowlevel.wait_task_rescheduled
_reschedule = trio.lowlevel.reschedule
_FAILED = trio.lowlevel.Abort.FAILED
_LEAD = object()  # a follower's waker while it is woken for the lead


class TrioClient(trio_facade.Facade):
    """The trio facade over a connection to a corral server; get one from
    ``open_client()``."""

    def __init__(self, url: str, pipe: Pipe, *, token: str | None,
                 connect_timeout: float, reconnect: Reconnect | None,
                 tls: ssl.SSLContext | None = None) -> None:
        self.url = url
        self._pipe = pipe
        self._tls = tls
        self._connect_timeout = connect_timeout
        self._policy = reconnect
        self._core = ClientConnection(token=token)
        self._kernel = self._core
        self._subscriptions: dict[int, trio_facade.Subscription] = {}
        self._closed = False
        self._up = True  # the pipe is live
        self._connected = trio.Event()
        self._connected.set()
        self._changed = trio.Event()  # set when the pipe is replaced or closed
        self._settled = trio.Event()  # set after each chunk is handled, once closing
        self._last_send = trio.current_time()
        self._last_receive = trio.current_time()
        self._reading = False  # a task is reading the pipe (the lead)
        self._woken = 0  # tasks woken by what was read, so far
        self._followers: dict[Request, trio.lowlevel.Task] = {}  # asleep, in order
        self._lead_free = trio.lowlevel.ParkingLot()  # where the background task sleeps

    def __repr__(self) -> str:
        return f"<corral TrioClient {self.url}>"

    def _clock(self) -> float:
        return 0.0  # the server keeps the time

    # -- sending ---------------------------------------------------------------------------

    def _send(self, command: Callable[..., Any], *args: Any, **kwargs: Any) -> Request:
        if self._closed:
            raise Closed("this corral is closed")
        request: Request = command(*args, **kwargs)
        self._flush()
        return request

    def _flush(self) -> None:
        if self._core.has_data:
            self._pipe.send(self._core.data_to_send())
            self._last_send = trio.current_time()

    async def _run(self, command: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        await _checkpoint_if_cancelled()
        request = self._send(command, *args, **kwargs)
        # Sent: it completes, cancelled or not (its answer says how).
        if request.done or not await self._await(request, None):
            await _cancel_shielded_checkpoint()  # every call is a checkpoint
        if request.error is not None:
            raise request.error
        return request.value

    async def _wait(self, command: Callable[..., Any], *args: Any, timeout: float | None,
                    **kwargs: Any) -> Any:
        await _checkpoint_if_cancelled()
        wait = cast(Wait, self._send(command, *args, timeout=timeout, **kwargs))
        if wait.done or not await self._await(wait, wait):
            await _cancel_shielded_checkpoint()
        error = wait.error
        if error is None:
            return wait.value
        if type(error) is Withdrawn:
            if self._closed:
                raise Closed("the corral was closed while waiting")
            await trio.lowlevel.checkpoint()  # the cancel that withdrew it stands
            raise Empty("withdrawn")
        raise error

    async def _subscribe(self, name: str, start: int | None) -> trio_facade.Subscription:
        await _checkpoint_if_cancelled()
        request = self._send(self._core.subscribe, name, start=start)
        subscription = self._subscriptions[request.value] = trio_facade.Subscription(
            self, request.value)
        self._background_wanted()
        if not await self._await(request, None):
            await _cancel_shielded_checkpoint()
        if request.error is not None:
            self._subscriptions.pop(request.value, None)
            raise request.error
        return subscription

    async def _await(self, request: Request, wait: Wait | None) -> bool:
        """Until ``request`` is done: read the pipe while no other task does, else sleep
        until the reader completes it or hands over the lead. Cancelling a ``wait``
        withdraws it; anything else completes regardless. Says whether it yielded."""
        cancelled = yielded = False

        def abort(raise_cancel: Any) -> trio.lowlevel.Abort:
            nonlocal cancelled
            if wait is not None and not cancelled:
                cancelled = True
                self._core.cancel_wait(wait, gone=False)
                self._flush()
            return _FAILED

        while not request.done:
            if self._reading:
                request.waker = task = trio.lowlevel.current_task()
                self._followers[request] = task
                await _wait_task_rescheduled(abort)
                # Woken for the lead, we may find our answer already read: the tasks
                # woken by answers that came before ours must run first, so yield.
                yielded = request.waker is not _LEAD
                request.waker = None
                continue
            self._reading = True
            pipe = self._pipe
            blocked, woken = pipe.blocked, self._woken
            try:
                while not request.done:
                    pipe = self._pipe
                    if wait is not None and not cancelled:
                        try:
                            data = await pipe.receive()
                        except trio.Cancelled:
                            abort(None)
                            continue
                        except BaseException:  # a KeyboardInterrupt: the caller is gone
                            wait.gone = True
                            self._core.cancel_wait(wait, gone=True)
                            self._flush()
                            raise
                    else:
                        with trio.CancelScope(shield=True):
                            data = await pipe.receive()
                    self._received(pipe, data)
            finally:
                self._reading = False
                self._hand_off()
                # Tasks this read woke must run before we go on, in the order their
                # answers came: so we have not yielded since, whatever we did before.
                yielded = (yielded or pipe.blocked != blocked) and self._woken == woken
        return yielded

    def _hand_off(self) -> None:
        """The lead is free: to the oldest follower, or else to the background task if
        something can arrive that nobody reads for."""
        for request, task in self._followers.items():
            del self._followers[request]
            request.waker = _LEAD  # woken for the lead, not by its answer
            _reschedule(task, outcome.Value(None))
            return
        if self._core.busy:
            self._background_wanted()

    def _background_wanted(self) -> None:
        self._lead_free.unpark_all()

    def _received(self, pipe: Pipe, data: bytes) -> None:
        """Handle what ``pipe`` gave (b"": it is gone)."""
        if pipe is not self._pipe:
            return
        if not data:
            self._lose("the server closed the connection")
            return
        self._last_receive = trio.current_time()
        self._deliver(*self._core.receive_data(data))
        if self._core.lost is not None:
            self._lose(self._core.lost)
        else:
            self._flush()

    def _unsubscribe(self, subscription: trio_facade.Subscription) -> None:
        if self._subscriptions.pop(subscription._sid, None) is not None:
            with contextlib.suppress(Closed):
                self._send(self._core.unsubscribe, subscription._sid)
        subscription._end("closed")

    # -- public extras ---------------------------------------------------------------------

    async def wait_connected(self) -> None:
        """Wait until the connection is up (at once if it is). Raises Closed once the
        client is closed."""
        await self._connected.wait()
        if self._closed:
            raise Closed("this corral is closed")

    async def ping(self) -> None:
        """One round trip to the server. Raises Closed if the connection is lost."""
        await self._run(self._core.ping)

    async def stats(self) -> dict[str, Any]:
        """The server's statistics: version, uptime, connections, commands, containers."""
        stats: dict[str, Any] = await self._run(self._core.stats)
        return stats

    def close(self) -> None:
        """Close at once: parked callers get Closed, subscriptions end. Idempotent.
        (Leaving ``open_client``'s block first lets parked waits settle.)"""
        if not self._closed:
            self._closed = True
            self._lose("closed by this client")

    async def aclose(self) -> None:
        """Withdraw the waits still parked, give them a moment to settle (what served
        one first is returned to its caller), then close."""
        if self._closed:
            return
        self._closed = True
        for wait in list(self._core.open_waits()):
            self._core.cancel_wait(wait, gone=False)
        self._flush()
        with trio.move_on_after(2.0):  # and any give-back they led to
            while not self._core.settled:
                self._background_wanted()
                await self._settled.wait()
        self._lose("closed by this client")

    # -- receiving ---------------------------------------------------------------------------

    def _deliver(self, done: list[Request], effects: list[Notified | Unsubscribed]) -> None:
        for request in done:
            if request.waker is not None and request.waker is not _LEAD:
                self._followers.pop(request, None)
                _reschedule(request.waker, outcome.Value(None))
                request.waker = None
                self._woken += 1
        route_events(self._subscriptions, effects)
        if self._closed:  # aclose() waits for the withdrawals to settle
            self._settled.set()
            self._settled = trio.Event()

    async def _read(self) -> None:
        """The background task: read while something can arrive that no caller reads
        for; after a loss, reconnect (unless closed)."""
        while not self._closed:
            pipe = self._pipe
            async with trio.open_nursery() as nursery:
                nursery.start_soon(pipe.run)
                if pipe.heartbeat is not None:
                    nursery.start_soon(self._beat, pipe.heartbeat)
                while pipe is self._pipe and self._up:
                    if self._reading or not self._core.busy:
                        await self._lead_free.park()
                        continue
                    self._reading = True
                    try:
                        self._received(pipe, await pipe.receive())
                    finally:
                        self._reading = False
                        if self._followers:
                            self._hand_off()
                nursery.cancel_scope.cancel()
            if self._closed or not await self._reconnect():
                return

    async def _beat(self, heartbeat: float) -> None:
        """Ping when idle, so that the server keeps the session; a ping unanswered for
        three beats means a dead server."""
        while True:
            await trio.sleep(heartbeat / 2)
            now = trio.current_time()
            if now - self._last_receive > 3 * heartbeat and self._core.busy:
                self._lose(f"no answer for {now - self._last_receive:.1f} s")
                return
            if now - self._last_send >= heartbeat:
                with contextlib.suppress(Closed):
                    self._send(self._core.ping)

    def _lose(self, reason: str) -> None:
        """The pipe is gone: fail what is open on it, once; closed for good if this
        client is closed or does not reconnect."""
        self._lead_free.unpark_all()
        if self._up:
            self._up = False
            self._connected = trio.Event()
            self._deliver(*self._core.connection_lost(reason))
            if not (self._closed or self._policy is None):
                log.warning("corral: lost %s (%s); reconnecting", self.url, reason)
        if self._closed or self._policy is None:
            self._finalize(f"the connection is lost: {reason}")
        self._pipe.close()

    def _finalize(self, reason: str) -> None:
        """Closed for good, whatever the connection's state: subscriptions end, and
        ``wait_connected()`` raises Closed from now on."""
        self._closed = True
        subscriptions, self._subscriptions = self._subscriptions, {}
        for subscription in subscriptions.values():
            subscription._end(reason)
        self._connected.set()

    async def _reconnect(self) -> bool:
        policy = self._policy
        assert policy is not None
        since = trio.current_time()
        for delay in policy.delays(random.Random()):
            await trio.sleep(delay)
            if self._closed:
                return False
            if policy.give_up is not None and trio.current_time() - since > policy.give_up:
                log.error("corral: gave up reconnecting to %s after %.1f s", self.url,
                          trio.current_time() - since)
                self._closed = True
                self._lose("gave up reconnecting")
                return False
            try:
                with trio.fail_after(self._connect_timeout):
                    pipe = await open_pipe(self.url, self._tls)
            except (OSError, trio.TooSlowError, Closed):
                continue
            if self._closed:
                pipe.close()
                return False
            self._pipe = pipe
            self._core.reconnect()
            self._flush()
            self._last_receive = trio.current_time()
            self._up = True
            self._connected.set()
            self._background_wanted()
            log.info("corral: reconnected to %s after %.1f s", self.url,
                     trio.current_time() - since)
            return True
        return False  # pragma: no cover - the delays never end


@contextlib.asynccontextmanager
async def open_trio_client(url: str, *, token: str | None = None,
                           connect_timeout: float = 10.0,
                           reconnect: Reconnect | None = DEFAULT_RECONNECT,
                           tls: ssl.SSLContext | None = None
                           ) -> AsyncIterator[TrioClient]:
    """A ``TrioClient`` connected to ``url`` (``tls``: for ``corrals://``, as
    ``corral.transports.remote.client_tls`` makes it), closed when the block exits."""
    tls = client_tls(url, context=tls)
    with trio.fail_after(connect_timeout):
        pipe = await open_pipe(url, tls)
    client = TrioClient(url, pipe, token=token, connect_timeout=connect_timeout,
                        reconnect=reconnect, tls=tls)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client._read)
        try:
            auth = client._core.auth
            if auth is not None:
                client._flush()
                auth.waker = trio.lowlevel.current_task()
                await _wait_task_rescheduled(lambda raise_cancel: _FAILED)
                if auth.error is not None:
                    raise auth.error
            yield client
        finally:
            with trio.CancelScope(shield=True):
                await client.aclose()
            nursery.cancel_scope.cancel()
