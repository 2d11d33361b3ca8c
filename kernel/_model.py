"""Values the kernel hands out: records, events, effects and container kinds.

The ones made on every operation (records, events and the effects that carry them) are
frozen attrs classes without slots and with positional arguments: attrs builds those
through the instance dict, and the kernel builds them positionally, which together
cost 260 ns where keyword-only slotted ones cost 730 ns: a third of a hand-off.
"""

from __future__ import annotations

import enum
from bisect import bisect_left
from typing import Any

import attrs

__all__ = [
    "Cancelled",
    "ContainerMetrics",
    "ContainerStatistics",
    "Delivered",
    "Distribution",
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
    "SessionInfo",
    "Tally",
    "Unsubscribed",
    "WaiterInfo",
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
    the first claim is attempt 1; a token from an older attempt is stale.

    This is the kernel's plain record. A facade's ``claim`` returns its subclass with
    the calls on it, ``job.finish(...)`` and so on: annotate with ``corral.Job`` (the
    thread facade's and the clients') or ``corral.adapters.trio.Job``."""

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


# Upper bounds (seconds) of the buckets a Tally counts in: a millisecond to an hour.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
           30.0, 60.0, 300.0, 900.0, 3600.0)


@attrs.frozen(kw_only=True)
class Distribution:
    """How many durations fell in each bucket: ``counts[i]`` those at most
    ``bounds[i]`` and above the bound before; the last count, those above every bound.
    ``total`` is their sum in seconds, ``count`` how many."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total: float
    count: int


class Tally:
    """A running histogram of durations (the kernel's: fixed buckets, O(log n) each)."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds

    def forget(self, seconds: float) -> None:
        """Undo ``observe(seconds)``."""
        self.counts[bisect_left(BUCKETS, seconds)] -= 1
        self.total -= seconds

    def __getstate__(self) -> tuple[list[int], float]:
        return self.counts, self.total

    def __setstate__(self, state: tuple[list[int], float]) -> None:
        self.counts, self.total = state

    def distribution(self) -> Distribution:
        return Distribution(bounds=BUCKETS, counts=tuple(self.counts), total=self.total,
                            count=sum(self.counts))


@attrs.frozen(kw_only=True)
class ContainerMetrics:
    """What a container has seen since it was made, for monitoring: ``added`` records
    or items came in (pushed, inserted, set at a new key, published under a new id,
    put), ``taken`` went out (popped, got, deleted, retracted, trimmed, cleared), so
    that ``added - taken`` is the count; a give-back undoes its delivery's count.

    For a job queue, ``added`` counts the jobs put and ``taken`` the claims; then the
    claims that ended each way (``failed``: cancelled, or released by a closing
    session; ``expired``: the lease ran out; ``stalled``: the job was dead-lettered,
    by a stall or a failure with no attempts left), how long jobs waited ready before
    a claim (``waited``) and how long claims ran until they ended (``ran``), and when
    the oldest ready job became ready (``oldest_ready``, on the kernel's clock)."""

    kind: Kind
    added: int
    taken: int
    finished: int = 0
    failed: int = 0
    expired: int = 0
    stalled: int = 0
    waited: Distribution | None = None
    ran: Distribution | None = None
    oldest_ready: float | None = None


@attrs.frozen(kw_only=True)
class WaiterInfo:
    """One parked call, for inspection: session ``session`` waits in ``op`` on
    ``container`` (for ``key``: a map's key, a job's id for ``result``) since
    ``since`` until ``deadline`` (None: no timeout), on the kernel's clock."""

    id: int
    session: int
    op: str
    container: str
    key: Any
    since: float
    deadline: float | None


@attrs.frozen(kw_only=True)
class SessionInfo:
    """What one session holds: its parked calls, its subscriptions as ``(id,
    container)`` and its claims as ``(job queue, job id)``."""

    id: int
    waiters: tuple[WaiterInfo, ...]
    subscriptions: tuple[tuple[int, str], ...]
    claims: tuple[tuple[str, str], ...]


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
