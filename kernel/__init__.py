"""corral.kernel: the deterministic, sans-IO coordination state machine.

It depends on nothing but the standard library, attrs and sortedcontainers, and never
reads a clock, does I/O, starts a thread or draws a random number.
"""

from ._errors import (
    AlreadyExists,
    Closed,
    CorralError,
    Empty,
    InvalidArgument,
    LeaseLost,
    LimitExceeded,
    NotFound,
    WrongKind,
)
from ._kernel import GIVEN_BACK, Kernel
from ._model import (
    TERMINAL_STATES,
    Cancelled,
    ContainerStatistics,
    Delivered,
    Effect,
    Event,
    Job,
    JobState,
    JobStatistics,
    Kind,
    Notified,
    Popped,
    Record,
    Unsubscribed,
    Waiting,
)

__all__ = [
    "GIVEN_BACK",
    "AlreadyExists",
    "Cancelled",
    "Closed",
    "ContainerStatistics",
    "CorralError",
    "Delivered",
    "Effect",
    "Empty",
    "Event",
    "InvalidArgument",
    "Job",
    "JobState",
    "JobStatistics",
    "Kernel",
    "Kind",
    "LeaseLost",
    "LimitExceeded",
    "NotFound",
    "Notified",
    "Popped",
    "Record",
    "TERMINAL_STATES",
    "Unsubscribed",
    "Waiting",
    "WrongKind",
]
