"""What the thread and trio facades share: routing the kernel's effects to the parked
callers and subscriptions of one session."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from typing import Any, Generic, Protocol, TypeVar

from corral.kernel import (
    GIVEN_BACK,
    Cancelled,
    Closed,
    Delivered,
    Event,
    Kernel,
    LeaseLost,
    Notified,
    Unsubscribed,
)
from corral.transports.journal import Journal, JournaledKernel

__all__ = ["EffectRouter", "Routed", "route_events", "wait_value"]

class Routed(Protocol):
    """A subscription of either facade: what its events are handed to."""

    def _put(self, event: Event) -> None: ...

    def _end(self, reason: str) -> None: ...


P = TypeVar("P")  # how a parked caller is woken
S = TypeVar("S", bound=Routed)  # a subscription


def route_events(subscriptions: dict[int, Any],
                 effects: Iterable[Notified | Unsubscribed]) -> None:
    """Hand a client's subscription events to their subscriptions (an ended one is
    forgotten); events for one closed meanwhile are dropped."""
    for effect in effects:
        subscription = subscriptions.get(effect.subscription)
        if subscription is None:
            continue
        if isinstance(effect, Notified):
            subscription._put(effect.event)
        else:
            del subscriptions[effect.subscription]
            subscription._end(effect.reason)


def journaled_kernel(directory: str | os.PathLike[str], fsync: str, now: float
                     ) -> JournaledKernel:
    """A kernel kept in the journal in ``directory`` (replayed), for an embedded
    facade: each command is committed before it returns. The sessions of the process
    that last used it are closed, as a disconnect would close them."""
    kernel = JournaledKernel(Journal(directory, fsync=fsync), autocommit=True)
    for session in kernel.sessions():
        kernel.close_session(session, now=now)
    kernel.take_effects()
    return kernel


def wait_value(got: Any) -> Any:
    """A wait's value: from the Event that served it, or from its immediate pair."""
    return got.value if type(got) is Event else got[0]


class EffectRouter(Generic[P, S]):
    """Owns one kernel session and routes its effects.

    Subclasses say how to wake a parked caller (``_wake``); subscriptions take their
    events themselves (``Routed``).
    """

    def __init__(self, kernel: Any = None) -> None:
        self._kernel: Kernel = kernel if kernel is not None else Kernel()
        self._session = self._kernel.open_session()
        self._parked: dict[int, P] = {}
        self._subscriptions: dict[int, S] = {}
        self._closed = False

    def _wake(self, parked: P, event: Event | None, error: BaseException | None) -> None:
        raise NotImplementedError

    def _dispatch(self) -> None:
        """Deliver every queued effect, in the kernel's order."""
        if not self._kernel.effects:
            return
        for effect in self._kernel.take_effects():
            if type(effect) is Notified:
                self._subscriptions[effect.subscription]._put(effect.event)
            elif isinstance(effect, Delivered):
                self._wake(self._parked.pop(effect.waiter), effect.event, None)
            elif isinstance(effect, Cancelled):
                self._wake(self._parked.pop(effect.waiter), None, effect.error)
            elif type(effect) is Unsubscribed:
                self._subscriptions.pop(effect.subscription)._end(effect.reason)

    def _check_open(self) -> None:
        if self._closed:
            raise Closed("this corral is closed")

    def _shut(self) -> None:
        """Close the session; wake every parked caller with Closed and end every
        subscription."""
        self._closed = True
        self._kernel.close_session(self._session)
        self._dispatch()
        parked, self._parked = self._parked, {}
        for p in parked.values():
            self._wake(p, None, Closed("the corral was closed while waiting"))
        subscriptions, self._subscriptions = self._subscriptions, {}
        for s in subscriptions.values():
            s._end("the corral was closed")

    def _give_back(self, event: Event, now: float) -> None:
        """Return what was served to a caller interrupted before taking it (rare: a
        KeyboardInterrupt while parked), with the kernel's exact inverse of the
        delivery. A put that was admitted and a result that was read stay as they are;
        a claim whose lease is already gone needs nothing."""
        if event.name in GIVEN_BACK:
            with contextlib.suppress(LeaseLost):
                self._kernel.give_back(self._session, event.container, event, now=now)
            self._dispatch()
