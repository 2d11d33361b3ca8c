"""The error hierarchy: one root, every failure typed.

A command that raises one of these has changed nothing (atomic failure).
"""

from __future__ import annotations

import queue

__all__ = [
    "AlreadyExists",
    "Closed",
    "CorralError",
    "Empty",
    "InvalidArgument",
    "JobFailed",
    "LeaseLost",
    "LimitExceeded",
    "NotFound",
    "WrongKind",
]


class CorralError(Exception):
    """Root of every error corral raises."""


class Empty(CorralError, queue.Empty):
    """Nothing to pop, or a wait timed out.

    Also a :class:`queue.Empty`, so code written against :mod:`queue` keeps working.
    """


class NotFound(CorralError, LookupError):
    """No such container, key, index, property, session, waiter or job."""


class WrongKind(CorralError, TypeError):
    """The container exists with another kind, or the operation is not one of its kind's."""


class AlreadyExists(CorralError):
    """An insert met a key that is present."""


class InvalidArgument(CorralError, ValueError):
    """An argument is malformed: a non-string map key, a negative timeout, ..."""


class LeaseLost(CorralError):
    """A job call came with a stale claim: an older attempt, an expired or retracted job."""


class LimitExceeded(CorralError):
    """A bounded container is full."""


class Closed(CorralError):
    """The facade, connection or subscription was closed while in use."""


class JobFailed(CorralError):
    """A job failed for good: it is stalled (its attempts ran out, or a worker stalled
    it), so its result will not come unless someone retries it. The message is the
    job's recorded error: for a worker's exception, Python's traceback text, ending in
    the exception's ``Type: message`` line (``remote_type``, ``remote_message``)."""

    @property
    def error(self) -> str:
        """The job's recorded error, whole."""
        return str(self.args[0]) if self.args else ""

    @property
    def remote_type(self) -> str | None:
        """The failed exception's type name, if the error names one."""
        head, sep, _ = self._last_line().partition(": ")
        return head if sep and head.replace(".", "").replace("_", "").isalnum() else None

    @property
    def remote_message(self) -> str:
        """The failed exception's message (the error's last line, less the type)."""
        line = self._last_line()
        return line.partition(": ")[2] if self.remote_type else line

    def _last_line(self) -> str:
        lines = [line for line in self.error.splitlines() if line.strip()]
        return lines[-1].strip() if lines else ""
