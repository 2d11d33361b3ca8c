"""The one timer a trio adapter arms for its kernel."""

from __future__ import annotations

import math
from collections.abc import Callable

import trio

from corral.kernel import Kernel

__all__ = ["Alarm"]


class Alarm:
    """Sleeps until the kernel's next deadline, then advances the kernel and calls
    ``fired`` (to route the effects). ``rearm()`` after a command wakes it if that
    command armed an earlier deadline. Run ``run()`` as a task."""

    def __init__(self, kernel: Kernel, fired: Callable[[], None]) -> None:
        self._kernel = kernel
        self._fired = fired
        self._changed = trio.lowlevel.ParkingLot()
        self._at: float | None = None  # the deadline it sleeps toward
        self.offset = 0.0  # the kernel's time minus trio's

    def rearm(self) -> None:
        deadline = self._kernel.next_deadline()
        if deadline is not None and (self._at is None or deadline < self._at):
            self._at = deadline
            self._changed.unpark_all()

    def stop(self) -> None:
        self._at = -math.inf
        self._changed.unpark_all()

    async def run(self) -> None:
        while self._at != -math.inf:
            deadline = self._at = self._kernel.next_deadline()
            with trio.move_on_at(math.inf if deadline is None else deadline - self.offset):
                await self._changed.park()
                continue
            self._kernel.advance(trio.current_time() + self.offset)
            self._fired()
