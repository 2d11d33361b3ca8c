"""Bookkeeping shared by every container: sessions, waiters, timers and the effect outbox."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from ._errors import Empty, InvalidArgument, NotFound
from ._model import Cancelled, Delivered, Effect, Event, Notified, Waiting
from ._timers import Timers
from ._waiters import Waiter, WaiterQueue

if TYPE_CHECKING:
    from ._containers import Container

__all__ = ["Core", "Session", "Subscription"]


@attrs.define(eq=False)
class Session:
    """What a session owns, so that closing it leaves no trace."""

    id: int
    waiters: dict[int, Waiter] = attrs.Factory(dict)
    subscriptions: dict[int, Subscription] = attrs.Factory(dict)
    leases: dict[tuple[str, str], None] = attrs.Factory(dict)  # (jobs container, job id)


@attrs.define(eq=False)
class Subscription:
    """Session ``session`` receives the events of ``container``."""

    id: int
    session: int
    container: str


def check_timeout(op: str, name: str, timeout: float | None) -> None:
    """Reject a timeout that is not None or a non-negative number."""
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
        raise InvalidArgument(
            f"{op} on {name!r}: timeout must be None or a number >= 0, not {timeout!r}"
        )


_MASK = (1 << 64) - 1
_SEED = 2605


class Core:
    """The kernel's shared state; containers call it to park, serve and notify."""

    def __init__(self) -> None:
        self.now = 0.0
        self.effects: list[Effect] = []
        self.sessions: dict[int, Session] = {}
        self.waiters: dict[int, Waiter] = {}
        self.timers: Timers[Any] = Timers()  # payloads have .container and .timer
        self._last_id = 0
        self._rng = _SEED  # splitmix64's state: jitter that replays bit for bit

    def random(self) -> float:
        """A number in [0, 1) from the kernel's own generator (splitmix64, seeded the
        same in every kernel): what looks random, such as the jitter of a retry's
        backoff, is the same on every replay of the same commands."""
        self._rng = (self._rng + 0x9E3779B97F4A7C15) & _MASK
        z = self._rng
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return ((z ^ (z >> 31)) >> 11) / float(1 << 53)

    def next_id(self) -> int:
        """A fresh id, unique across sessions, waiters and subscriptions."""
        self._last_id += 1
        return self._last_id

    def tick(self, now: float) -> float:
        """Move the kernel's notion of time forward to ``now`` (never backward)."""
        if now > self.now:
            self.now = now
        return self.now

    def session(self, session: int) -> Session:
        try:
            return self.sessions[session]
        except KeyError:
            raise NotFound(f"no open session {session!r}") from None

    def park(
        self,
        queue: WaiterQueue,
        session: int,
        op: str,
        container: str,
        key: Any,
        timeout: float | None,
        now: float,
        payload: Any = None,
    ) -> Waiting:
        """Queue a waiter; a finite timeout arms its timer. The session must be open."""
        owner = self.session(session)
        waiter = Waiter(self.next_id(), session, op, container, key, payload,
                        since=self.tick(now))
        if timeout is not None:
            waiter.timer = self.timers.add(waiter.since + timeout, waiter)
        queue.append(waiter)
        owner.waiters[waiter.id] = waiter
        self.waiters[waiter.id] = waiter
        return Waiting(waiter=waiter.id)

    def forget(self, waiter: Waiter) -> None:
        """Drop every index entry of a waiter its container queue has already let go."""
        del self.waiters[waiter.id]
        del self.sessions[waiter.session].waiters[waiter.id]
        if waiter.timer is not None:
            self.timers.cancel(waiter.timer)
            waiter.timer = None

    def serve(self, waiter: Waiter, event: Event) -> None:
        """Hand ``event`` to a waiter its container queue has already let go."""
        self.forget(waiter)
        self.effects.append(Delivered(waiter.session, waiter.id, event))

    def cancel(self, waiter: Waiter, error: Exception) -> None:
        """End a waiter its container queue has already let go, telling its session why."""
        self.forget(waiter)
        self.effects.append(Cancelled(session=waiter.session, waiter=waiter.id, error=error))

    def notify(self, container: Container, name: str, key: Any = None, value: Any = None,
               metadata: Any = None) -> None:
        """Fan an event out to the container's subscribers, in subscription order."""
        event = Event(container.name, name, key, value, metadata)
        self.effects.extend(
            Notified(sub.session, sub.id, event)
            for sub in container.subscribers.values()
        )

    def timed_out(self, waiter: Waiter) -> Empty:
        return Empty(f"{waiter.op} on {waiter.container!r} timed out")
