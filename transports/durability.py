"""A journaled server's durability: group commit, and snapshots written by a child
process (as Redis writes them).

The kernel (a ``JournaledKernel``) appends a record per mutating command; this decides
when those records reach the disk and when the output that depends on them may go. With
``fsync=always`` a connection's answers wait in ``held`` until the records before them
are synced; the sync happens once the other connections woken with this one have
applied their input too (one fsync for all of them). With ``everysec`` and ``no`` the
journal task writes (and syncs) on its own schedule and output goes at once.
"""

from __future__ import annotations

import logging
import os
import signal
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from .journal import Journal, JournaledKernel, Rotation

if TYPE_CHECKING:
    from .protocol import Connection
    from .server import Server

__all__ = ["Durability"]

log = logging.getLogger("corral.server")


def _write_and_sync(journal: Journal, data: bytes, offset: int) -> None:
    journal.write_at(data, offset)
    journal.sync()


def _write_and_retire(journal: Journal, rotation: Rotation, state: bytes) -> None:
    journal.retire(rotation, journal.write_snapshot(rotation.gen, state))


def _fork_snapshot(journal: Journal, gen: int, kernel: JournaledKernel) -> int:
    """Fork a child that writes generation ``gen``'s snapshot from its image of the
    kernel and exits; returns its pid. The child touches nothing but the snapshot."""
    with warnings.catch_warnings():  # the threads it leaves behind never run in it
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)
        # Let go of the sockets (and everything else): a connection the server closes
        # meanwhile must not stay open in the child.
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        journal.write_snapshot(gen, kernel.snapshot())
        code = 0
    finally:
        os._exit(code)


class Durability:
    """The journal's side of a server: see the module docstring."""

    def __init__(self, server: Server, journal: Journal) -> None:
        self.server = server
        self.journal = journal
        self.holding: dict[Connection, None] = {}  # output awaiting an fsync
        self._commit_wanted = trio.Event()
        self._nursery: trio.Nursery | None = None  # where snapshots are written

    def start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        nursery.start_soon(self._keep_journal)

    def hold(self, dirty: dict[Connection, None]) -> None:
        """Before ``dirty``'s output is flushed: write the journal, or (``always``) hold
        the output that depends on records not yet synced."""
        journal = self.journal
        if journal.fsync != "always":
            journal.write()
        elif journal.appended > journal.synced or self.holding:
            upto = journal.appended
            for conn in dirty:
                if conn.outbound and (upto > journal.synced or conn in self.holding):
                    conn.held.append((upto, bytes(conn.outbound)))
                    conn.outbound.clear()
                    self.holding[conn] = None
            # Group commit: the journal task syncs once the other tasks woken with this
            # one have applied their input too (as Redis syncs once its event loop has
            # read everything). A lone client has nobody to wait for.
            if len(self.server.connections) > 1:
                self._commit_wanted.set()
            else:
                self._commit()

    def _commit(self) -> None:
        """Write and sync the records that have piled up, in this thread (what arrives
        meanwhile waits in the sockets for the next sync), then release the output
        that waited for them."""
        journal = self.journal
        if journal.appended > journal.synced:
            data, offset, upto = journal.take()
            self._journal_sync(_write_and_sync, journal, data, offset)
            journal.written = journal.synced = upto
        for conn in list(self.holding):
            while conn.held and conn.held[0][0] <= journal.synced:
                conn.outbound += conn.held.popleft()[1]
            if not conn.held:
                del self.holding[conn]
            conn.flush()
        self._snapshot_if_due()

    def _snapshot_if_due(self) -> None:
        """Snapshot when the journal has grown, between writes, so that a generation
        ends with everything in it written. A child process writes it, from a
        copy-on-write image of this one (as Redis does), so that service goes on;
        where there is no fork, the state is copied here and written in a thread."""
        journal = self.journal
        assert self._nursery is not None
        if not (journal.wants_snapshot() and journal.appended == journal.written):
            return
        kernel = self.server.kernel
        assert isinstance(kernel, JournaledKernel)
        rotation = journal.rotate()
        if hasattr(os, "fork"):
            try:
                pid = _fork_snapshot(journal, rotation.gen, kernel)
            except OSError as error:  # no memory for a child, say: not fatal
                log.error("cannot fork to write a snapshot: %s: trying again later",
                          error)
                journal.abandon(rotation)
                return
            self._nursery.start_soon(self._await_snapshot, rotation, pid)
        else:
            state = kernel.snapshot()
            self._nursery.start_soon(self._journal_io, _write_and_retire, journal,
                                     rotation, state)

    async def _await_snapshot(self, rotation: Rotation, pid: int) -> None:
        journal = self.journal
        _, status = await trio.to_thread.run_sync(os.waitpid, pid, 0)
        if os.waitstatus_to_exitcode(status) == 0:
            size = (journal.directory / f"snapshot-{rotation.gen:08d}.bin").stat().st_size
            await self._journal_io(journal.retire, rotation, size)
        else:
            log.error("the snapshot of generation %d failed (status %d): keeping every "
                      "journal file, trying again later", rotation.gen, status)
            journal.abandon(rotation)

    async def _keep_journal(self) -> None:
        """The journal's task: with ``always``, the syncs ``hold`` leaves to it; with
        ``everysec``, an fsync every second; with ``no``, writes and snapshots."""
        journal = self.journal
        while True:
            if journal.fsync == "always":
                await self._commit_wanted.wait()
                self._commit_wanted = trio.Event()
                self._commit()
                continue
            await trio.sleep(1.0)
            if journal.fsync == "everysec" and journal.written > journal.synced:
                upto = journal.written
                await self._journal_io(journal.sync)
                journal.synced = upto
            journal.write()
            self._snapshot_if_due()

    def _journal_sync(self, work: Callable[..., None], *args: Any) -> None:
        """Journal I/O. It failing is fatal: the server stops rather than acknowledge
        what it could not make durable."""
        try:
            work(*args)
        except OSError as error:
            log.critical("the journal in %s failed: %s: stopping, so that nothing that "
                         "is not durable is acknowledged", self.journal.directory, error)
            raise

    async def _journal_io(self, work: Callable[..., None], *args: Any) -> None:
        """``_journal_sync`` in a thread."""
        await trio.to_thread.run_sync(self._journal_sync, work, *args)
