"""Values the kernel hands out: records, events, effects and container kinds.

The ones made on every operation (records, events and the effects that carry them) are
frozen attrs classes without slots and with positional arguments: attrs builds those
through the instance dict, and the kernel builds them positionally, which together
cost 260 ns where keyword-only slotted ones cost 730 ns: a third of a hand-off.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

__all__ = [
    "Cancelled",
    "ContainerStatistics",
    "Delivered",
    "Effect",
    "Event",
    "Job",
    "JobInfo",
    "JobState",
    "JobStatistics",
    "Kind",
    "TERMINAL_STATES",
    "Notified",
    "Popped",
    "Record",
    "Unsubscribed",
    "Waiting",
]


class Kind(enum.Enum):
    """A container's kind; the value is its name on the wire."""

    LIST = "volatile_list"  # ordered records addressed by index; wait_pop_next
    MAP = "volatile_map"  # records addressed by string key, sorted by key; wait_pop_key
    FEED = "feed"  # items by id in publish order, optionally bounded; broadcast events
    SORTED_FEED = "sorted_feed"  # items by int id in an order set by hand
    QUEUE = "queue"  # items taken once, by priority then FIFO; optionally bounded
    JOBS = "job"  # items claimed under a lease until finished


class JobState(enum.Enum):
    """Where a job is in its life. Only FINISHED and RETRACTED are terminal."""

    READY = "ready"  # waiting for a claim, by priority then age
    DELAYED = "delayed"  # becomes ready at a deadline (put or cancel with a delay)
    CLAIMED = "claimed"  # leased to one claimer until its lease deadline
    STALLED = "stalled"  # parked until retried (stall, or max_attempts reached)
    FINISHED = "finished"  # done; its result is kept for the result TTL
    RETRACTED = "retracted"  # withdrawn; remembered for the result TTL


TERMINAL_STATES = frozenset({JobState.FINISHED, JobState.RETRACTED})


@attrs.frozen
class Job:
    """A claim on a job: the lease token a claimer passes back to finish, cancel, stall
    or touch it. ``attempt`` counts the claims since the job was put (or retried), so
    the first claim is attempt 1; a token from an older attempt is stale."""

    id: str
    item: Any
    attempt: int


@attrs.frozen(kw_only=True)
class JobInfo:
    """Everything about one job, for inspection. Times are on the kernel's clock (the
    ``now`` its callers pass: a server's wall clock with a journal).

    ``attempt`` counts the claims since the job was put or retried; ``claimed`` is when
    the last one began and ``ended`` when the job finished or was retracted;
    ``deadline`` is when its lease ends (claimed) or it becomes ready (delayed);
    ``error`` is the last failure's text (bounded), ``result`` the finished job's."""

    id: str
    item: Any
    state: JobState
    attempt: int
    priority: int
    created: float
    claimed: float | None = None
    ended: float | None = None
    deadline: float | None = None
    error: str | None = None
    result: Any = None


@attrs.frozen(kw_only=True)
class ContainerStatistics:
    """A snapshot of one container: its kind and how many records, waiters and
    subscribers it has."""

    kind: Kind
    records: int
    waiters: int
    subscribers: int


@attrs.frozen(kw_only=True)
class JobStatistics(ContainerStatistics):
    """A job queue's snapshot: ``records`` counts the jobs that have not ended,
    ``waiters`` the parked claimers; then the jobs in each state and the parked result
    readers."""

    ready: int
    delayed: int
    claimed: int
    stalled: int
    finished: int
    retracted: int
    result_waiters: int


@attrs.frozen(slots=False)
class Record:
    """One record of a container, as reads return it.

    ``key`` is the index for a list and the string key for a map.
    """

    key: Any
    value: Any
    metadata: Any = None


@attrs.frozen(slots=False)
class Event:
    """Something that happened to a container, named as Tio names it.

    ``name`` is one of push_back, push_front, pop_front, pop_back, set, insert, delete,
    clear (for subscribers) or wnp_next, wnp_key (for the waiter that was served).
    """

    container: str
    name: str
    key: Any = None
    value: Any = None
    metadata: Any = None


Popped = tuple[Any, Any]
"""What a wait command returns when a record was there: its ``(value, metadata)``.

A plain pair rather than an event: the caller knows the container, the key and what it
asked for, and this is the hottest path in the kernel.
"""


@attrs.frozen(kw_only=True)
class Waiting:
    """Returned by a wait command that could not complete at once: the waiter is parked.

    Its outcome arrives later as a :class:`Delivered` or :class:`Cancelled` effect with the
    same ``waiter`` id.
    """

    waiter: int


def _same_error(a: Exception, b: Exception) -> bool:
    # Exceptions compare by identity; effects compare by value, so replays can be compared.
    return type(a) is type(b) and a.args == b.args


@attrs.frozen(slots=False)
class Delivered:
    """Effect: the parked waiter ``waiter`` of ``session`` was served ``event``."""

    session: int
    waiter: int
    event: Event


@attrs.frozen(kw_only=True)
class Cancelled:
    """Effect: the parked waiter ended without an item; ``error`` says why.

    :class:`~corral.kernel.Empty` when its timeout fired, :class:`~corral.kernel.NotFound`
    when its container was deleted.
    """

    session: int
    waiter: int
    error: Exception = attrs.field(eq=attrs.cmp_using(eq=_same_error))


@attrs.frozen(slots=False)
class Notified:
    """Effect: subscription ``subscription`` of ``session`` sees ``event``."""

    session: int
    subscription: int
    event: Event


@attrs.frozen(kw_only=True)
class Unsubscribed:
    """Effect: subscription ``subscription`` of ``session`` ended; ``reason`` says why."""

    session: int
    subscription: int
    reason: str


Effect = Delivered | Cancelled | Notified | Unsubscribed
