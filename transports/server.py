"""What every transport serves: one kernel and the clients sharing it, on trio.

A ``Server`` owns the kernel, its clients (``protocol.Connection``, subclassed by each
transport), the alarm that applies the kernel's deadlines and, with a journal, its
durability (``durability``). The protocol itself, every command's handler, is in
``protocol``; each transport feeds a connection the bytes it receives and sends what
``flush()`` hands it. The outbound buffer has a cap, and a peer that lets it fill is
dropped (and logged) instead of growing the server's memory.

No input stops the server. The transports drop, with a logged reason, a connection
whose input raises anything unexpected, and (TCP) one that stalls inside a message for
``Limits.stall_timeout`` seconds.
"""

from __future__ import annotations

import logging
import time

import trio

from corral.kernel import InvalidArgument, Kernel

from .alarm import Alarm
from .durability import Durability
from .journal import Journal, JournaledKernel
from .protocol import VERSION, Connection, Drop, Limits, check_token

__all__ = ["VERSION", "Connection", "Drop", "Limits", "Server"]

log = logging.getLogger("corral.server")


class Server:
    """One kernel and the clients sharing it, over any number of transports."""

    def __init__(self, *, token: str | None = None, limits: Limits | None = None,
                 kernel: Kernel | None = None, journal: Journal | None = None) -> None:
        """``journal``: keep every container durable in it (replayed here)."""
        if journal is not None:
            if kernel is not None:
                raise InvalidArgument("a journaled server makes its own kernel")
            kernel = JournaledKernel(journal)
        self.kernel = kernel or Kernel()
        self.journal = journal
        self.durability = Durability(self, journal) if journal is not None else None
        self.token = check_token(token)
        self.limits = limits or Limits()
        self.connections: dict[int, Connection] = {}  # by session
        self.queries = 0
        self.alarm = Alarm(self.kernel, self._timers_fired)
        self.started: float | None = None  # when the first transport started serving
        self.commands = 0
        self.dirty: dict[Connection, None] = {}  # connections with output to flush
        self.watchers: dict[Connection, None] = {}  # subscribed to meta/containers
        self.offset = 0.0  # kernel time minus trio time

    def now(self) -> float:
        """The kernel's time: trio's clock, or with a journal the wall clock, so that
        deadlines survive a restart."""
        return trio.current_time() + self.offset

    def uptime(self) -> float:
        return trio.current_time() - (self.started or trio.current_time())

    def start(self, nursery: trio.Nursery) -> None:
        """Run the kernel's timers in ``nursery``: once, however many transports serve
        this server (each calls this as it starts)."""
        if self.started is None:
            self.started = trio.current_time()
            if self.durability is not None:
                self.offset = self.alarm.offset = time.time() - trio.current_time()
                # The connections of the last run are gone: close their sessions (as
                # their queues' release_on_close says), as if they had disconnected.
                for session in self.kernel.sessions():
                    self.kernel.close_session(session, now=self.now())
                self.route()
                self.durability.start(nursery)
            nursery.start_soon(self.alarm.run)

    def route(self) -> None:
        """Deliver the kernel's effects to their connections; re-arm the alarm."""
        kernel = self.kernel
        if kernel.effects:
            for effect in kernel.take_effects():
                conn = self.connections.get(effect.session)
                if conn is not None:
                    conn.on_effect(effect)
        self.alarm.rearm()

    def _timers_fired(self) -> None:
        self.route()
        self.flush()

    def flush(self) -> None:
        """Send what the last input queued for every connection it touched: at once,
        or with ``fsync=always`` once the journal records it depends on are synced."""
        if not self.dirty and self.durability is None:
            return
        dirty, self.dirty = self.dirty, {}
        if self.durability is not None:
            self.durability.hold(dirty)
        for conn in dirty:
            conn.flush()
