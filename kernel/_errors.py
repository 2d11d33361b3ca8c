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
