"""The thread facade on Redis: ``RedisCorral``, what ``connect("redis://...")`` returns.

Its handles run ``RedisKernel`` commands (``corral.transports.redis_backend``), so
every process connected to the same Redis, with the same prefix, shares the same
containers of every kind, with every wait (lists, maps, queues, claims and results)
and subscriptions (each read from the container's event stream by a thread of its
own: at-least-once delivery in order, a subscriber that falls behind the stream's
bound ended with the reason "lagged", never silently).

A command is one call of the kernel, from any thread: redis-py's pool gives each its
own connection. A wait that cannot complete parks a waiter in Redis under a session of
its own, opened for that wait and closed when it ends, so the session's mailbox (where
whichever process serves the waiter pushes its outcome) is the wait's alone. The
waiting thread blocks on that mailbox in ``BLMOVE mailbox mailbox`` (a rotation of the
list onto itself, so the outcome is read without being taken: a Ctrl-C that cuts the
reply loses nothing), in slices of at most a second. Time is the Redis server's: once
the wait's timeout has passed on the local clock, the thread ticks the container
(``advance``), which makes Redis apply the waiter's deadline and push its Cancelled
outcome; if that has not come a second later, the thread withdraws the waiter itself.

Withdrawing (``interrupt``, ``close``, Ctrl-C) is ``cancel_wait``: if it answers False
the waiter was served and its outcome is in the mailbox. An interrupted or closed wait
then returns what served it; a Ctrl-C gives it back with the kernel's exact inverse
(``give_back``: a list's record to the front, a map's key if it is still absent, a
queue's item to its place, a claimed job ready again at its place) and re-raises. A
successful withdrawal by another thread pushes a marker of ours (``X|``) to the
mailbox, which wakes the parked thread at once.

Claims are held by one long-lived session of the facade's (a wait's own session only
carries its outcome), so they outlive the wait and end with the facade: ``close``
releases them, as a closed connection does on a corral server. A process that dies
closes nothing; instead a heartbeat thread keeps its sessions alive where they claim or
wait (``heartbeat`` seconds apart, 5 by default), and Redis ends a session that misses
three beats: its claims come back (the attempt counted, a late finish fenced with
LeaseLost) and its parked waiters are withdrawn, so no item is handed to the dead.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit

import attrs
import redis
from redis.cluster import RedisCluster

from corral.kernel import (
    AlreadyExists,
    Closed,
    CorralError,
    Empty,
    Event,
    InvalidArgument,
    Job,
    JobFailed,
    LeaseLost,
    LimitExceeded,
    NotFound,
    Notified,
    Unsubscribed,
    Waiting,
    WrongKind,
)
from corral.transports.redis_backend import RedisKernel, mailbox_key, unpack
from corral.transports.redis_backend.audit import DURABILITIES, audit, warn_on

from . import threads

__all__ = ["RedisCorral", "open_redis"]

log = logging.getLogger("corral.redis")

_SLICE = 1.0  # the longest a parked thread blocks in one BLMOVE
_GRACE = 1.0  # after its deadline, how long a wait leaves its timeout to Redis
_HEARTBEAT = 5.0  # seconds between a process's heartbeats; three missed end a session
_EVENTS = {"wait_pop_next": "wnp_next", "wait_pop_key": "wnp_key", "queue_get": "get",
           "queue_put": "put", "claim": "claimed", "claim_many": "claimed",
           "finish_claim": "claimed", "result": "finished"}
_OPTIONS = {"queue_put": {"priority"}, "claim": {"lease"}, "claim_many": {"lease"},
            "finish_claim": {"lease", "result_ttl"}}  # what each wait takes beside
# The waits that claim: their leases are held by the facade's long-lived session, and a
# parked one is served with one job, as a parked claim is (what times it out is a claim).
_CLAIMS = frozenset({"claim", "claim_many", "finish_claim"})
_ERRORS: dict[str, type[CorralError]] = {cls.__name__: cls for cls in (
    AlreadyExists, Closed, Empty, InvalidArgument, JobFailed, LeaseLost, LimitExceeded,
    NotFound, WrongKind)}
_MARK = "X|"  # pushed to a mailbox by whoever withdrew its waiter
_UNREACHABLE = (redis.ConnectionError, redis.TimeoutError)  # Redis is not answering
_UNKNOWN = -1  # the waiter of a parking call whose answer was lost
# How long a call waits for Redis to answer before it counts as out of reach (a
# blocking read blocks for at most _SLICE, well within it); ?socket_timeout= overrides.
_SOCKET_TIMEOUT = 5.0


class _Preloaded:
    """A redis client whose ``function_load`` is done already: the facade's first
    ``RedisKernel`` loads the library, and the kernels it makes for waits share it."""

    def __init__(self, client: redis.Redis | RedisCluster) -> None:
        self._client = client

    def function_load(self, *args: Any, **kwargs: Any) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@attrs.define(eq=False)
class _Waits:
    """The kernel that runs the waits on one container (so that closing a session or
    ticking costs one call, that container's), under its lock; and its sessions that
    never parked, free for the next wait."""

    kernel: RedisKernel
    lock: threading.Lock = attrs.Factory(threading.Lock)
    idle: list[int] = attrs.Factory(list)


@attrs.define(eq=False)
class _Parked:
    """A thread parked in a wait, under a session of its own."""

    waits: _Waits
    op: str  # wait_pop_next or wait_pop_key
    args: tuple[Any, ...]  # (container,) or (container, key)
    session: int
    waiter: int
    mailbox: str
    thread: int = attrs.Factory(threading.get_ident)
    ended: BaseException | None = None  # withdrawn by another thread: what to raise
    done: bool = False  # its thread is leaving: nobody else withdraws it now


class RedisCorral(threads.Facade):
    """The thread facade over Redis (>= 7.0) or Valkey: lists and maps shared by every
    process on the same Redis and prefix. Thread-safe. Get one from
    ``connect("redis://host:port/db")`` or ``connect("unix:///path/to/redis.sock")``
    (``?prefix=`` names the key prefix, "co" by default), or give it a ``redis.Redis``;
    ``close_client``: whether closing it closes that client's connections."""

    def __init__(self, client: redis.Redis | RedisCluster, *, prefix: str = "co",
                 url: str | None = None, close_client: bool = False,
                 heartbeat: float = _HEARTBEAT, replicas: int = 0,
                 replicas_timeout: float = 1.0) -> None:
        self.url = url
        self._redis = client
        self._prefix = prefix
        self._close_client = close_client
        self._kernel = RedisKernel(client, prefix=prefix, clock="server")
        self._replicas = (replicas, replicas_timeout)
        self._kernel.require_replicas(*self._replicas)
        self._lock = threading.Lock()  # what follows
        self._left = threading.Condition(self._lock)  # a parked thread left
        self._waits: dict[str, _Waits] = {}
        self._parked: dict[int, _Parked] = {}  # thread -> its wait
        self._interrupted: set[int] = set()  # threads whose next wait ends at once
        self._closed = False
        self._heartbeat = heartbeat
        self._owner_session: int | None = None  # holds this process's claims
        self._live_on: set[str] = set()  # where it claims or subscribes
        self._subscriptions: dict[int, threads.Subscription] = {}  # by RedisKernel's id
        self._subscribing = threading.Lock()  # one at a time: the snapshot is taken
        self._stop = threading.Event()  # the heartbeat thread's
        self._beating: threading.Thread | None = None
        # waits abandoned while Redis was out of reach, and what served them, if known
        self._orphans: list[tuple[_Parked, Event | BaseException | None]] = []

    def __enter__(self) -> RedisCorral:
        return self

    def __repr__(self) -> str:
        return f"<corral RedisCorral {self.url or self._redis!r} prefix={self._prefix!r}>"

    # -- what the handles call ------------------------------------------------------------

    def _clock(self) -> float:
        return 0.0  # the Redis server keeps the time

    def _run(self, command: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One kernel command. The kernel's commands only fill its caches, so threads
        call it at once, each on a connection of the pool. Redis out of reach raises
        Closed, as a lost connection to a server does (the command may or may not have
        been applied); redis-py reconnects by itself at the next call."""
        if self._closed:
            raise Closed("this corral is closed")
        try:
            return command(*args, **kwargs)
        except _UNREACHABLE as error:
            raise Closed(f"lost Redis at {self.url or 'its address'}: {error}") from error

    def _wait(self, command: Callable[..., Any], *args: Any, timeout: float | None,
              **kwargs: Any) -> Any:
        """A wait: its immediate ``(value, metadata)``, or the Event that served it.
        Redis out of reach raises Closed; the waiter it may have left parked there is
        withdrawn (or what served it given back) once Redis answers again."""
        try:
            return self._wait_on(command, *args, timeout=timeout, **kwargs)
        except _UNREACHABLE as error:
            raise Closed(f"lost Redis at {self.url or 'its address'} while waiting: "
                         f"{error}") from error

    def _wait_on(self, command: Callable[..., Any], *args: Any, timeout: float | None,
                 **kwargs: Any) -> Any:
        op = getattr(command, "__name__", "")
        if op not in _EVENTS or set(kwargs) - _OPTIONS.get(op, set()):
            raise InvalidArgument(f"{op or command!r} is not on Redis yet")
        if op in _CLAIMS:
            kwargs["owner"] = self._owner(args[0])
        if self._closed:
            raise Closed("this corral is closed")
        waits = self._waits_on(args[0])
        began = time.monotonic()
        with waits.lock:
            kernel = waits.kernel
            session = waits.idle.pop() if waits.idle else kernel.open_session()
            try:
                result = getattr(kernel, op)(session, *args, timeout=timeout, **kwargs)
            except CorralError:
                self._idle(waits, session)  # it never parked: its mailbox is clean
                raise
            except _UNREACHABLE:  # it may have parked all the same: settled later
                lost = _Parked(waits, op, args, session, _UNKNOWN, mailbox_key(
                    self._prefix, args[0], session), done=True)
                with self._lock:
                    self._orphans.append((lost, None))
                    self._start_beating()
                raise
            except BaseException:  # a Ctrl-C: whatever it did ends
                with contextlib.suppress(redis.RedisError):
                    kernel.close_session(session)
                raise
            if type(result) is not Waiting:
                self._idle(waits, session)
                return result
            parked = _Parked(waits, op, args, session, result.waiter, mailbox_key(
                self._prefix, args[0], session))
        deadline = None if timeout is None else began + timeout
        outcome: Event | BaseException | None = None
        try:
            with self._lock:
                self._parked[parked.thread] = parked
                self._start_beating()
                reason: BaseException | None = None
                if self._closed:
                    reason = Closed("the corral was closed while waiting")
                elif parked.thread in self._interrupted:
                    self._interrupted.discard(parked.thread)
                    reason = Empty("interrupted")
            if reason is not None:
                self._withdraw(parked, reason)  # or else it was served: that is its own
            outcome = self._outcome(parked, self._receive(parked, deadline))
            self._leave(parked)
        except BaseException as error:
            self._abandon(parked, outcome, unreachable=isinstance(error, _UNREACHABLE))
            if self._closed and isinstance(error, redis.RedisError):
                raise Closed("the corral was closed while waiting") from error
            raise
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Wait until Redis answers (at once if it does); False after ``timeout``
        seconds without it, or once this corral is closed."""
        give_up = None if timeout is None else time.monotonic() + timeout
        while not self._closed:
            try:
                self._redis.ping()
                self._settle_orphans()  # before its caller goes on (a Worker re-claims)
                return True
            except _UNREACHABLE:
                left = 0.1 if give_up is None else min(0.1, give_up - time.monotonic())
                if left <= 0 or self._stop.wait(left):
                    return False
        return False

    def interrupt(self, thread: threading.Thread) -> None:
        ident = thread.ident or 0
        while True:
            with self._lock:
                parked = self._parked.get(ident)
                if parked is None:  # not parked: its next wait ends at once
                    self._interrupted.add(ident)
                    return
            try:
                if self._withdraw(parked, Empty("interrupted")):
                    return
            except _UNREACHABLE:  # its own read ends with Closed soon; then settled
                with self._lock:
                    self._interrupted.add(ident)
                return
            with self._lock:  # served already: its next wait ends at once, unless it
                if self._parked.get(ident) in (parked, None):  # parked anew meanwhile
                    self._interrupted.add(ident)
                    return

    interrupt.__doc__ = threads.Facade.interrupt.__doc__

    def _subscribe(self, name: str, start: int | None) -> threads.Subscription:
        """A subscription under this process's long-lived session, read from the
        container's event stream by a thread of its own (``XREAD BLOCK``)."""
        if self._closed:
            raise Closed("this corral is closed")
        owner = self._owner(name)
        with self._subscribing:
            sid = self._kernel.subscribe(owner, name, start=start)
            effects, self._kernel.effects = self._kernel.effects, []
        subscription = threads.Subscription(self, sid)
        for effect in effects:  # the snapshot, if asked for
            assert isinstance(effect, Notified) and effect.subscription == sid
            subscription._put(effect.event)
        with self._lock:
            self._subscriptions[sid] = subscription
        threading.Thread(target=self._read_events, args=(sid, subscription), daemon=True,
                         name=f"corral redis events of {name!r}").start()
        return subscription

    def _read_events(self, sid: int, subscription: threads.Subscription) -> None:
        """Hand a subscription its events until it ends (closed, or lagged: fell
        behind the stream's bound)."""
        while not self._closed and sid in self._subscriptions:
            try:
                effects = self._kernel.events(sid, block=_SLICE)
            except redis.RedisError as error:  # Redis away: read again soon
                if self._closed or sid not in self._subscriptions:
                    return  # (the client was closed under the blocked read)
                log.warning("corral: reading events failed: %s", error)
                self._stop.wait(_SLICE)
                continue
            for effect in effects:
                if isinstance(effect, Notified):
                    subscription._put(effect.event)
                elif isinstance(effect, Unsubscribed):
                    with self._lock:
                        self._subscriptions.pop(sid, None)
                    subscription._end(effect.reason)
                    return

    def _unsubscribe(self, subscription: threads.Subscription) -> None:
        with self._lock:
            mine = self._subscriptions.pop(subscription._sid, None) is not None
            owner = self._owner_session
        if mine and owner is not None:
            with contextlib.suppress(redis.RedisError, CorralError):
                self._kernel.unsubscribe(owner, subscription._sid)
        subscription._end("closed")

    def delete_container(self, name: str) -> None:
        """Delete container ``name`` with its records, in every process: parked
        callers get NotFound, subscriptions end. Raises NotFound."""
        self._run(self._kernel.delete_container, name)
        with self._lock:
            self._live_on.discard(name)

    def close(self) -> None:
        """Close: every session is closed (parked callers get Closed, or what served
        them if it came first). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            parked = list(self._parked.values())
            waits = list(self._waits.values())
        for p in parked:
            with contextlib.suppress(redis.RedisError):
                self._withdraw(p, Closed("the corral was closed while waiting"))
        with self._lock:  # each parked thread closes its session as it leaves
            give_up = time.monotonic() + 2.0
            while self._parked and (left := give_up - time.monotonic()) > 0:
                self._left.wait(left)
        self._stop.set()
        with self._lock:
            subscriptions = list(self._subscriptions.values())
            self._subscriptions.clear()
        for subscription in subscriptions:
            subscription._end("closed")
        if self._owner_session is not None:  # its claims go back, as a server's would
            with contextlib.suppress(redis.RedisError, NotFound):
                self._kernel.close_session(self._owner_session)
        for w in waits:
            with w.lock, contextlib.suppress(redis.RedisError):
                while w.idle:
                    w.kernel.close_session(w.idle.pop())
        if self._close_client:
            self._redis.close()

    # -- plumbing ---------------------------------------------------------------------

    def _waits_on(self, name: str) -> _Waits:
        waits = self._waits.get(name)
        if waits is None:
            with self._lock:
                waits = self._waits.get(name)
                if waits is None:
                    kernel = RedisKernel(cast(redis.Redis, _Preloaded(self._redis)),
                                         prefix=self._prefix, clock="server")
                    kernel.alive = 3 * self._heartbeat  # a parked wait beats at once
                    kernel.require_replicas(*self._replicas)
                    waits = self._waits[name] = _Waits(kernel)
        return waits

    def _owner(self, name: str) -> int:
        """The session that holds this process's claims, kept alive on job queue
        ``name`` by the heartbeat thread (opened, and the thread started, at the
        first claim)."""
        with self._lock:
            if self._owner_session is None:
                self._owner_session = self._kernel.open_session()
            owner = self._owner_session
            fresh = name not in self._live_on
            self._live_on.add(name)
            self._start_beating()
        if fresh:
            self._kernel.heartbeat(owner, name, 3 * self._heartbeat)
        return owner

    def _lapsed(self, name: str) -> None:
        """This process's session lapsed on container ``name`` (Redis was out of reach
        for three heartbeats): its claims there went back and its subscriptions there
        were dropped, so end them, saying why, rather than let them fall silent."""
        reason = (f"the session lapsed on {name!r}: Redis was out of reach for longer "
                  "than three heartbeats, and events may have been missed")
        log.warning("corral: %s", reason)
        ended = []
        with self._lock:
            for sid in list(self._subscriptions):
                if self._kernel.subscription_container(sid) == name:
                    ended.append(self._subscriptions.pop(sid))
        for subscription in ended:
            self._kernel.forget_subscription(subscription._sid)
            subscription._end(reason)

    def _start_beating(self) -> None:
        """Start the heartbeat thread, if it is not running (this facade's lock held):
        at the first claim, subscription or parked wait."""
        if self._beating is None and not self._closed:
            self._beating = threading.Thread(target=self._beat, daemon=True,
                                             name="corral redis heartbeat")
            self._beating.start()

    def _beat(self) -> None:
        """Every ``heartbeat`` seconds, keep this process's sessions alive where they
        claim or wait: should the process die, three missed beats end them (claims
        released, waiters withdrawn), with nothing lost."""
        while not self._stop.wait(self._heartbeat):
            with self._lock:
                owner, claims = self._owner_session, list(self._live_on)
                parked = list(self._parked.values())
            with contextlib.suppress(*_UNREACHABLE):  # still away: the next beat
                self._settle_orphans()
            try:
                for name in claims:
                    assert owner is not None
                    try:
                        if not self._kernel.heartbeat(owner, name, 3 * self._heartbeat):
                            self._lapsed(name)
                    except NotFound:  # deleted: nothing of ours is left there
                        with self._lock:
                            self._live_on.discard(name)
                for p in parked:
                    if not p.done:
                        p.waits.kernel.heartbeat(p.session, p.args[0], 3 * self._heartbeat)
            except (redis.RedisError, CorralError) as error:  # Redis away: beat again later
                log.warning("corral: heartbeat to Redis failed: %s", error)

    def _idle(self, waits: _Waits, session: int) -> None:
        """A session with no waiter parked, for the next wait (its lock held)."""
        if self._closed:
            with contextlib.suppress(redis.RedisError):
                waits.kernel.close_session(session)
        else:
            waits.idle.append(session)

    def _withdraw(self, parked: _Parked, reason: BaseException) -> bool:
        """Withdraw ``parked``'s waiter for another thread, which is then woken to raise
        ``reason``; False if it was served (or its thread is leaving) first."""
        with parked.waits.lock:
            if parked.done or parked.ended is not None:
                return parked.ended is not None
            if not parked.waits.kernel.cancel_wait(parked.session, parked.waiter):
                return False
            parked.ended = reason
            self._redis.rpush(parked.mailbox, _MARK)
            return True

    def _receive(self, parked: _Parked, deadline: float | None) -> str:
        """Block until the mailbox of ``parked``'s session has its outcome; read it
        without taking it (closing the session deletes it)."""
        late = 0.01  # how long to block once the deadline passed: Redis is on its way
        while True:
            block = _SLICE
            if deadline is not None:
                left = deadline - time.monotonic()
                if left > 0:
                    block = min(_SLICE, left)
                else:
                    self._overdue(parked, -left)
                    block, late = late, min(2 * late, 0.25)
            message = self._redis.blmove(  # fractions of a second, which Redis takes
                parked.mailbox, parked.mailbox, block, "LEFT", "LEFT")  # type: ignore[arg-type]
            if message is not None:
                return message.decode() if isinstance(message, bytes) else str(message)

    def _overdue(self, parked: _Parked, by: float) -> None:
        """The wait's deadline passed ``by`` seconds ago (local clock): tick its
        container, so that Redis applies it by the server's clock; past the grace,
        withdraw the waiter here."""
        with parked.waits.lock:
            if not parked.done and parked.ended is None:
                parked.waits.kernel.advance(0.0)  # clock="server": now is Redis's
        if by > _GRACE:
            op = "claim" if parked.op in _CLAIMS else parked.op
            error = (LimitExceeded(f"put on {parked.args[0]!r} timed out: the queue stayed "
                                   "full") if op == "queue_put" else
                     Empty(f"{op} on {parked.args[0]!r} timed out"))
            self._withdraw(parked, error)

    def _outcome(self, parked: _Parked, message: str) -> Event | BaseException:
        """A mailbox message as the Event that served the wait or the error it ends in."""
        kind, _, rest = message.partition("|")
        if kind in ("G", "P"):  # a queue's item to a getter, or a parked put let in
            fields = rest.split("|", 3 if kind == "G" else 2)
            item, _ = unpack(fields[-1])
            priority = int(fields[1])
            order = (priority, int(fields[2])) if kind == "G" else None
            return Event(parked.args[0], "get" if kind == "G" else "put", priority, item,
                         order)
        if kind == "J":  # a job claimed: its attempt, its item, then its id
            attempt, _, served = rest.partition("|")[2].partition("|")
            packed, _, id = served.partition("\n")
            job = Job(id, unpack(packed)[0], int(attempt))
            return Event(parked.args[0], "claimed", id, job, None)
        if kind == "R":  # a job's result
            result, _ = unpack(rest.partition("|")[2])
            return Event(parked.args[0], "finished", parked.args[1], result, None)
        if kind == "D":
            value, metadata = unpack(rest.partition("|")[2])
            key = parked.args[1] if len(parked.args) > 1 else 0
            return Event(parked.args[0], _EVENTS[parked.op], key, value, metadata)
        if kind == "C":
            name, _, text = rest.partition("|")[2].partition("|")
            return _ERRORS.get(name, CorralError)(text)
        assert parked.ended is not None, message
        return parked.ended

    def _leave(self, parked: _Parked) -> None:
        """The wait is over: its session, its mailbox emptied, is free for the next
        wait (it has no waiter left: served, timed out or withdrawn; its liveness
        deadline, unless the next wait renews it, lapses with nothing to end)."""
        with parked.waits.lock:
            parked.done = True
            self._redis.delete(parked.mailbox)
            self._idle(parked.waits, parked.session)
        self._forget(parked)

    def _abandon(self, parked: _Parked, outcome: Event | BaseException | None, *,
                 unreachable: bool = False) -> None:
        """The caller is leaving with an exception (a Ctrl-C, Redis out of reach):
        withdraw its waiter, or give back what served it, then close its session; if
        Redis cannot be reached, the heartbeat thread does so once it can."""
        try:
            with parked.waits.lock:
                parked.done = True
            try:
                if unreachable:  # (not now: each try would wait for the socket's timeout)
                    raise redis.ConnectionError("Redis is out of reach")
                self._settle(parked, outcome)
            except _UNREACHABLE:
                with self._lock:
                    self._orphans.append((parked, outcome))
                    self._start_beating()
        finally:
            self._forget(parked)

    def _settle_orphans(self) -> None:
        """Settle the waits abandoned while Redis was out of reach. Raises what
        redis-py raises if it still is; those not settled stay for the next try."""
        with self._lock:
            orphans, self._orphans = self._orphans, []
        try:
            while orphans:
                self._settle(*orphans[0])
                orphans.pop(0)
        finally:
            if orphans:
                with self._lock:
                    self._orphans[:0] = orphans

    def _settle(self, parked: _Parked, outcome: Event | BaseException | None) -> None:
        """Withdraw an abandoned wait's waiter, or give back what served it (a put
        stays in, a result stays read), and close its session. Raises what redis-py
        raises when Redis is out of reach; after that, calling it again is safe."""
        waits = parked.waits
        with waits.lock:
            if parked.waiter == _UNKNOWN:  # its parking call's answer was lost
                served = [outcome for message in waits.kernel.close_session_left(
                    parked.session) if isinstance(outcome := self._outcome(
                        parked, message), Event)]
                if served:  # given back under a session that is open
                    giver = waits.idle.pop() if waits.idle else waits.kernel.open_session()
                    for event in served:
                        with contextlib.suppress(CorralError):
                            self._settle_served(parked, event, giver)
                    self._idle(waits, giver)
                return
            try:
                if outcome is None and parked.ended is None and not (
                        waits.kernel.cancel_wait(parked.session, parked.waiter)):
                    outcome = self._served(parked)
                if isinstance(outcome, Event):
                    self._settle_served(parked, outcome, parked.session)
            except CorralError:  # given back already, or taken back (LeaseLost)
                pass
            with contextlib.suppress(NotFound):  # closed already
                waits.kernel.close_session(parked.session)

    def _settle_served(self, parked: _Parked, outcome: Event, session: int) -> None:
        """Give back what served a wait its caller left (a put stays in, a result
        stays read), under ``session`` of its container's kernel (a claim under the
        facade's own); the waits' lock held."""
        if outcome.name == "claimed":
            self._give_back(self._kernel, self._owner(parked.args[0]), outcome)
        elif outcome.name not in ("put", "finished"):
            self._give_back(parked.waits.kernel, session, outcome)

    def _served(self, parked: _Parked) -> Event | BaseException | None:
        """What the mailbox says served the waiter (it was not withdrawn)."""
        for message in cast(list[bytes], self._redis.lrange(parked.mailbox, 0, -1)):
            text = message.decode() if isinstance(message, bytes) else str(message)
            if text[:2] in ("D|", "C|", "G|", "P|", "J|", "R|"):
                return self._outcome(parked, text)
        return None

    @staticmethod
    def _give_back(kernel: RedisKernel, session: int, event: Event) -> None:
        """Undo a delivery its caller never took, with the kernel's exact inverse: a
        list's record back to the front, a map's key only if it is still absent (a
        newer value wins), a queue's item back at its place."""
        try:
            kernel.give_back(session, event.container, event)
        except BaseException:
            log.error("corral: could not give back %r to %r", event.value, event.container)
            raise

    def _forget(self, parked: _Parked) -> None:
        with self._lock:
            if self._parked.get(parked.thread) is parked:
                del self._parked[parked.thread]
            self._left.notify_all()


def _shown(url: str) -> str:
    """``url`` without its password."""
    password = urlsplit(url).password
    return url if password is None else url.replace(f":{password}@", ":***@", 1)


def _nodes(text: str, default_port: int) -> list[tuple[str, int]]:
    """``host:port[,host:port...]`` as (host, port) pairs; raises ValueError."""
    nodes = []
    for item in text.split(","):
        where = urlsplit(f"//{item}")
        if not where.hostname:
            raise ValueError(f"no host in {item!r}")
        nodes.append((where.hostname, where.port or default_port))
    return nodes


def _client(where: str, rest: str, connect_timeout: float) -> Any:
    """The redis-py client for ``where`` (a URL less its query), ``rest`` being the
    query fields for redis-py. Raises ValueError, redis.RedisError,
    RedisClusterException."""
    scheme, _, address = where.partition("://")
    netloc, _, path = address.partition("/")
    auth, _, hosts = netloc.rpartition("@")
    auth = f"{auth}@" if auth else ""
    query = f"?{rest}" if rest else ""
    if scheme == "redis+cluster":
        from redis.cluster import ClusterNode

        from corral.transports.redis_backend._library import Cluster

        if path:
            raise ValueError(f"a Redis Cluster has no databases: {_shown(where)}")
        others = [ClusterNode(host, port)  # type: ignore[no-untyped-call]
                  for host, port in _nodes(hosts, 6379)[1:]]
        return Cluster(url=f"redis://{auth}{hosts.split(',')[0]}{query}",
                       startup_nodes=others, socket_connect_timeout=connect_timeout,
                       socket_timeout=_SOCKET_TIMEOUT)
    if scheme == "redis+sentinel":
        from urllib.parse import unquote

        from redis.connection import parse_url
        from redis.sentinel import Sentinel

        service, _, db = (unquote(part) for part in path.partition("/"))
        if not service or not (db or "0").isdigit():
            raise ValueError(f"a Sentinel URL ends in /service[/db]: {_shown(where)}")
        options = parse_url(  # type: ignore[no-untyped-call]
            f"redis://{auth}localhost/{db or 0}{query}")
        del options["host"]  # the primary's address is the Sentinels' to say
        options.setdefault("socket_timeout", _SOCKET_TIMEOUT)
        sentinels = Sentinel(  # type: ignore[no-untyped-call]
            _nodes(hosts, 26379), socket_connect_timeout=connect_timeout, **options)
        return sentinels.master_for(service)  # type: ignore[no-untyped-call]
    return redis.Redis.from_url(where + query, socket_connect_timeout=connect_timeout,
                                socket_timeout=_SOCKET_TIMEOUT)


def open_redis(url: str, *, connect_timeout: float = 10.0) -> RedisCorral:
    """A ``RedisCorral`` on the Redis at ``url``:

    - ``redis://[user:password@]host:port[/db]``, ``rediss://`` (TLS) or
      ``unix:///path/to/redis.sock``: one server;
    - ``redis+cluster://[user:password@]host:port[,host:port...]``: a Redis Cluster,
      found from any of the nodes given;
    - ``redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]``: the
      primary that these Sentinels name ``service`` (port 26379 by default), followed
      through failovers; the password is the primary's (the Sentinels get none).

    ``?prefix=`` starts every key ("co"); ``?heartbeat=`` is the seconds between the
    process's heartbeats (5; a session that misses three ends); ``?replicas=N``
    makes each change wait until N replicas have it (``WAITAOF`` where the server has
    it, else ``WAIT``; ``?replicas_timeout=`` seconds, 1), or raise NotReplicated;
    ``?durability=``
    (always, everysec or none;
    everysec by default) is what the configuration audit (``corral redis-check``), run
    on connecting, holds the server's append-only file to: it logs a warning to the
    ``corral.redis`` logger for each setting that falls short. Other query fields are
    redis-py's connection options. Raises ConnectionError (an OSError) if Redis cannot
    be reached, ValueError if ``url`` is none of these."""
    where, _, fields = url.partition("?")  # (urlunsplit would spell unix:/// unix:/)
    query = parse_qsl(fields, keep_blank_values=True)
    ours = {"prefix": "co", "durability": "everysec", "heartbeat": str(_HEARTBEAT),
            "replicas": "0", "replicas_timeout": "1.0"}
    ours |= {key: value for key, value in query if key in ours}
    prefix, durability = ours["prefix"], ours["durability"]
    if durability not in DURABILITIES:
        raise InvalidArgument(f"durability is one of {', '.join(DURABILITIES)}, not "
                              f"{durability!r}")
    try:
        heartbeat = float(ours["heartbeat"])
    except ValueError:
        heartbeat = -1.0
    if not 0 < heartbeat < math.inf:
        raise InvalidArgument(f"heartbeat is a number of seconds > 0, not "
                              f"{ours['heartbeat']!r}")
    try:
        replicas, replicas_timeout = int(ours["replicas"]), float(ours["replicas_timeout"])
    except ValueError:
        raise InvalidArgument(f"replicas is an int and replicas_timeout a number of "
                              f"seconds, not {ours['replicas']!r}, "
                              f"{ours['replicas_timeout']!r}") from None
    rest = urlencode([(key, value) for key, value in query if key not in ours])
    client: Any = None
    try:
        client = _client(where, rest, connect_timeout)  # a cluster's connects at once
        # (RedisCorral takes any client with redis.Redis's commands: RedisCluster too)
        corral = RedisCorral(client, prefix=prefix, url=_shown(url), close_client=True,
                             heartbeat=heartbeat, replicas=replicas,
                             replicas_timeout=replicas_timeout)
        if not isinstance(client, RedisCluster):  # (each node: corral redis-check)
            warn_on(audit(client, durability=durability))
        return corral
    except (redis.ConnectionError, redis.RedisClusterException) as error:
        if client is not None:
            client.close()
        raise ConnectionError(f"cannot reach Redis at {_shown(url)}: {error}") from error
    except BaseException:
        if client is not None:
            client.close()
        raise
