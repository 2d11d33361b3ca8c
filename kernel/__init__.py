"""corral.kernel: the deterministic, sans-IO coordination state machine.

It depends on nothing but the standard library, attrs and sortedcontainers, and never
reads a clock, does I/O, starts a thread or draws from a random source: a retry's jitter
comes from its own seeded generator, part of its state, so that replays agree.
"""

from ._errors import (
    AlreadyExists,
    Closed,
    CorralError,
    Empty,
    InvalidArgument,
    JobFailed,
    LeaseLost,
    LimitExceeded,
    NotFound,
    WrongKind,
)
from ._kernel import GIVEN_BACK, Kernel
from ._model import (
    TERMINAL_STATES,
    Cancelled,
    ContainerMetrics,
    ContainerStatistics,
    Delivered,
    Distribution,
    Effect,
    Event,
    Job,
    JobInfo,
    JobState,
    JobStatistics,
    Kind,
    Notified,
    Popped,
    Record,
    SessionInfo,
    Unsubscribed,
    WaiterInfo,
    Waiting,
)
from ._values import MAX_DEPTH, check_value

__all__ = [
    "GIVEN_BACK",
    "AlreadyExists",
    "Cancelled",
    "Closed",
    "ContainerMetrics",
    "ContainerStatistics",
    "CorralError",
    "Delivered",
    "Distribution",
    "Effect",
    "Empty",
    "Event",
    "InvalidArgument",
    "Job",
    "JobFailed",
    "JobInfo",
    "JobState",
    "JobStatistics",
    "Kernel",
    "Kind",
    "LeaseLost",
    "LimitExceeded",
    "MAX_DEPTH",
    "NotFound",
    "Notified",
    "Popped",
    "Record",
    "SessionInfo",
    "TERMINAL_STATES",
    "Unsubscribed",
    "WaiterInfo",
    "Waiting",
    "WrongKind",
    "check_value",
]
