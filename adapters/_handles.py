"""The handles of the thread facade: one class per kind of container, the single
description of each command's call.

A handle names each call by a method of its facade's ``_kernel`` and passes it to the
facade's ``_run`` (a command) or ``_wait`` (one that may wait): an embedded ``Corral``
applies it to its kernel, a client sends it to a server.

The trio facade's handles (``_trio_handles.py``) are generated from this module by
``python -m corral.adapters._gen_trio``: edit this one, then regenerate that one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import attrs

from corral import kernel
from corral.kernel import (
    ContainerStatistics,
    Empty,
    Event,
    JobInfo,
    JobState,
    JobStatistics,
    Record,
)

from ._facade import wait_value

if TYPE_CHECKING:
    from .threads import Facade, Subscription

__all__ = [
    "FeedHandle",
    "Job",
    "JobsHandle",
    "ListHandle",
    "MapHandle",
    "QueueHandle",
    "SortedFeedHandle",
]


class _Handle:
    """What every kind has: a name, properties, count, statistics, subscribe."""

    def __init__(self, corral: Facade, name: str) -> None:
        self._corral = corral
        self._kernel = corral._kernel
        self.name = name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    def __len__(self) -> int:
        """How many records it holds (in trio, embedded only: over a connection it
        takes a round trip, ``await count()``)."""
        return self._corral._len(self.name)

    def statistics(self) -> ContainerStatistics:
        """A snapshot: kind and how many records, waiters and subscribers it has."""
        result: ContainerStatistics = self._corral._run(self._kernel.statistics, self.name)
        return result

    def count(self) -> int:
        """How many records it holds."""
        result: int = self._corral._run(self._kernel.count, self.name)
        return result

    def set_property(self, key: str, value: str) -> None:
        """Set a string property."""
        self._corral._run(self._kernel.set_property, self.name, key, value)

    def get_property(self, key: str) -> str:
        """A string property. Raises NotFound if it is not set."""
        result: str = self._corral._run(self._kernel.get_property, self.name, key)
        return result

    def subscribe(self, start: int | None = None) -> Subscription:
        """Receive this container's events from now on.

        With ``start`` (a position; 0 for everything), the records from there on come
        first, as the events that add them: push_back (lists), set (maps), publish
        (feeds and sorted feeds) or put (queues and job queues).
        """
        return self._corral._subscribe(self.name, start)


class _RecordsHandle(_Handle):
    """What lists and maps add: records with a key and metadata, by position."""

    def query(self, start: int = 0, end: int | None = None) -> list[Record]:
        """The records at positions ``[start:end]`` (slice rules), with key and metadata."""
        result: list[Record] = self._corral._run(self._kernel.query, self.name, start, end)
        return result

    def clear(self) -> None:
        """Remove every record."""
        self._corral._run(self._kernel.clear, self.name)

    def delete(self, key: Any) -> None:
        """Remove the record at ``key``. Raises NotFound."""
        self._corral._run(self._kernel.delete, self.name, key)


class ListHandle(_RecordsHandle):
    """A list: records by index; negative indexes count from the end."""

    def push_back(self, value: Any, metadata: Any = None) -> None:
        """Append; the oldest ``wait_pop_next`` caller, if any, receives it."""
        self._corral._run(self._kernel.push_back, self.name, value, metadata)

    def push_front(self, value: Any, metadata: Any = None) -> None:
        """Prepend; the oldest ``wait_pop_next`` caller, if any, receives it."""
        self._corral._run(self._kernel.push_front, self.name, value, metadata)

    def pop_front(self) -> Any:
        """Remove and return the first value. Raises Empty."""
        record: Record = self._corral._run(self._kernel.pop_front, self.name)
        return record.value

    def pop_back(self) -> Any:
        """Remove and return the last value. Raises Empty."""
        record: Record = self._corral._run(self._kernel.pop_back, self.name)
        return record.value

    def get(self, index: int) -> Any:
        """The value at ``index``. Raises NotFound."""
        record: Record = self._corral._run(self._kernel.get, self.name, index)
        return record.value

    def set(self, index: int, value: Any, metadata: Any = None) -> None:
        """Replace the record at ``index``. Raises NotFound."""
        self._corral._run(self._kernel.set, self.name, index, value, metadata)

    def insert(self, index: int, value: Any, metadata: Any = None) -> None:
        """Insert before ``index`` (``len`` appends). Raises NotFound."""
        self._corral._run(self._kernel.insert, self.name, index, value, metadata)

    def wait_pop_next(self, timeout: float | None = None) -> Any:
        """Pop the first value, waiting for one if the list is empty.

        Callers are served first come, first served. Raises Empty after ``timeout``
        seconds (None waits forever), Closed if the corral closes meanwhile. Cancelling
        the call (trio), or Ctrl-C in it (threads), withdraws it without losing an item.
        """
        return wait_value(self._corral._wait(self._kernel.wait_pop_next, self.name,
                                             timeout=timeout))


class MapHandle(_RecordsHandle):
    """A map: records by string key, in key order."""

    def set(self, key: str, value: Any, metadata: Any = None) -> None:
        """Insert or replace ``key``; the oldest ``wait_pop_key(key)`` caller receives it."""
        self._corral._run(self._kernel.set, self.name, key, value, metadata)

    def insert(self, key: str, value: Any, metadata: Any = None) -> None:
        """Add ``key``. Raises AlreadyExists if it is present."""
        self._corral._run(self._kernel.insert, self.name, key, value, metadata)

    def get(self, key: str) -> Any:
        """The value at ``key``. Raises NotFound."""
        record: Record = self._corral._run(self._kernel.get, self.name, key)
        return record.value

    def keys(self) -> list[str]:
        """Every key, in order."""
        result: list[str] = self._corral._run(self._kernel.keys, self.name)
        return result

    def wait_pop_key(self, key: str, timeout: float | None = None) -> Any:
        """Pop ``key``'s value, waiting until it is set if it is absent.

        As :meth:`ListHandle.wait_pop_next`, with callers queued per key.
        """
        return wait_value(self._corral._wait(self._kernel.wait_pop_key, self.name, key,
                                             timeout=timeout))


class _ByIdHandle(_Handle):
    """What feeds and sorted feeds share: items by id."""

    def get(self, id: Any) -> Any:
        """The item ``id``. Raises NotFound."""
        record: Record = self._corral._run(self._kernel.get, self.name, id)
        return record.value

    def retract(self, id: Any) -> None:
        """Remove item ``id``. Raises NotFound."""
        self._corral._run(self._kernel.retract, self.name, id)

    def ids(self) -> list[Any]:
        """Every id, in order."""
        result: list[Any] = self._corral._run(self._kernel.ids, self.name)
        return result

    def items(self) -> list[tuple[Any, Any]]:
        """Every ``(id, item)``, in order."""
        result: list[tuple[Any, Any]] = self._corral._run(self._kernel.items, self.name)
        return result


class FeedHandle(_ByIdHandle):
    """A feed: items by string id, oldest first; events publish, edit, retract."""

    def publish(self, item: Any, id: str | None = None) -> str:
        """Publish ``item``; returns its id. An existing id is edited and moves last;
        a bounded feed retracts its oldest items first."""
        result: str = self._corral._run(self._kernel.publish, self.name, item, id)
        return result


class SortedFeedHandle(_ByIdHandle):
    """A sorted feed: items by int id in an order set by hand; events publish, edit,
    position, retract."""

    def append(self, item: Any) -> int:
        """Add ``item`` last; returns its id."""
        result: int = self._corral._run(self._kernel.append, self.name, item)
        return result

    def prepend(self, item: Any) -> int:
        """Add ``item`` first; returns its id."""
        result: int = self._corral._run(self._kernel.prepend, self.name, item)
        return result

    def insert_before(self, rel_id: int, item: Any) -> int:
        """Add ``item`` just before ``rel_id``; returns its id. Raises NotFound."""
        result: int = self._corral._run(self._kernel.insert_before, self.name, rel_id,
                                        item)
        return result

    def insert_after(self, rel_id: int, item: Any) -> int:
        """Add ``item`` just after ``rel_id``; returns its id. Raises NotFound."""
        result: int = self._corral._run(self._kernel.insert_after, self.name, rel_id,
                                        item)
        return result

    def edit(self, id: int, item: Any) -> None:
        """Replace item ``id`` in place. Raises NotFound."""
        self._corral._run(self._kernel.edit, self.name, id, item)

    def move_before(self, rel_id: int, id: int) -> None:
        """Move ``id`` just before ``rel_id`` (InvalidArgument if they are the same)."""
        self._corral._run(self._kernel.move_before, self.name, rel_id, id)

    def move_after(self, rel_id: int, id: int) -> None:
        """Move ``id`` just after ``rel_id`` (InvalidArgument if they are the same)."""
        self._corral._run(self._kernel.move_after, self.name, rel_id, id)

    def move_first(self, id: int) -> None:
        """Move ``id`` to the start."""
        self._corral._run(self._kernel.move_first, self.name, id)

    def move_last(self, id: int) -> None:
        """Move ``id`` to the end."""
        self._corral._run(self._kernel.move_last, self.name, id)


class QueueHandle(_Handle):
    """A queue: each item taken once, highest priority first, FIFO within a priority."""

    def put(self, item: Any, priority: int = 0, timeout: float | None = 0.0) -> None:
        """Add ``item``. A full bounded queue raises LimitExceeded at once (timeout 0),
        or after waiting ``timeout`` seconds for room (None: as long as it takes)."""
        served = self._corral._wait(self._kernel.queue_put, self.name, item,
                                    priority=priority, timeout=timeout)
        assert served is None or type(served) is Event

    def get(self, timeout: float | None = None) -> Any:
        """Take the next item, waiting up to ``timeout`` seconds (None: forever).
        Raises Empty on timeout."""
        return wait_value(self._corral._wait(self._kernel.queue_get, self.name,
                                             timeout=timeout))

    def get_nowait(self) -> Any:
        """Take the next item, at once. Raises Empty if there is none.

        In trio it is not a checkpoint, as trio's own ``_nowait`` calls are not, so it
        works embedded only: over a connection, use ``await get(timeout=0)``.
        """
        return wait_value(self._corral._nowait(self._kernel.queue_get, self.name))


@attrs.frozen
class Job(kernel.Job):
    """A claimed job: ``id``, ``item``, ``attempt`` (1 for the first claim), and the
    calls that end or extend its claim."""

    _jobs: JobsHandle = attrs.field(eq=False, repr=False)

    def finish(self, result: Any = None, result_ttl: float | None = None) -> None:
        """Finish with ``result``. Raises LeaseLost if this claim is no longer current."""
        self._jobs.finish(self, result, result_ttl)

    def cancel(self, delay: float | None = None, reason: str | None = None) -> None:
        """Give the job back as failed, ``reason`` being its error: ready again after
        ``delay`` seconds (None: the queue's backoff), or stalled once its attempts
        are spent. Raises LeaseLost if stale."""
        self._jobs.cancel(self, delay, reason)

    def stall(self, reason: str | None = None) -> None:
        """Park the job until retried. Raises LeaseLost if stale."""
        self._jobs.stall(self, reason)

    def touch(self, lease: float | None = None) -> None:
        """Extend the claim by ``lease`` seconds from now. Raises LeaseLost if stale."""
        self._jobs.touch(self, lease)

    def finish_and_claim(self, result: Any = None, timeout: float | None = None,
                         lease: float | None = None, result_ttl: float | None = None
                         ) -> Job | None:
        """Finish with ``result`` and claim the next job, in one command: a worker's
        loop without a second round trip. Returns the next job, or None if none came
        within ``timeout`` seconds (None: wait as long as it takes); the finish stands
        either way. Raises LeaseLost (nothing done) if this claim is stale."""
        return self._jobs.finish_and_claim(self, result, timeout, lease, result_ttl)


class JobsHandle(_Handle):
    """A job queue: jobs claimed under a lease until finished, exactly once."""

    def _bind(self, job: kernel.Job) -> Job:
        return Job(job.id, job.item, job.attempt, self)

    def put(self, item: Any, priority: int = 0, delay: float = 0.0, id: str | None = None
            ) -> str:
        """Add a job (ready after ``delay`` seconds); returns its id."""
        result: str = self._corral._run(self._kernel.put, self.name, item,
                                        priority=priority, delay=delay, id=id,
                                        now=self._corral._clock())
        return result

    def claim(self, timeout: float | None = None, lease: float | None = None) -> Job:
        """Claim the next job, waiting up to ``timeout`` seconds (None: forever), under
        a lease of ``lease`` seconds (the queue's default if None). Raises Empty.
        Cancelling the call (trio) withdraws the claim."""
        got = self._corral._wait(self._kernel.claim, self.name, timeout=timeout,
                                 lease=lease)
        return self._bind(got.value if type(got) is Event else got)

    def put_many(self, items: Iterable[Any], priority: int = 0, delay: float = 0.0
                 ) -> list[str]:
        """Add a job for each of ``items``, in order, in one command; returns their ids.
        All or none."""
        result: list[str] = self._corral._run(self._kernel.put_many, self.name,
                                              list(items), priority=priority, delay=delay,
                                              now=self._corral._clock())
        return result

    def claim_many(self, n: int, timeout: float | None = None, lease: float | None = None
                   ) -> list[Job]:
        """Claim up to ``n`` ready jobs in one command, each under its own lease; with
        none ready, wait up to ``timeout`` seconds (None: forever) for one. Raises
        Empty. Jobs claimed ahead wait in the claimer's hands, not for idle workers,
        and come back if their leases run out first."""
        got = self._corral._wait(self._kernel.claim_many, self.name, n, timeout=timeout,
                                 lease=lease)
        if type(got) is Event:  # it parked, and one job served it
            got = got.value
        return [self._bind(job) for job in (got if isinstance(got, list) else [got])]

    def finish_and_claim(self, job: kernel.Job, result: Any = None,
                         timeout: float | None = None, lease: float | None = None,
                         result_ttl: float | None = None) -> Job | None:
        """Finish a claimed job and claim the next (see ``Job.finish_and_claim``)."""
        try:
            got = self._corral._wait(self._kernel.finish_claim, self.name, job, result,
                                     timeout=timeout, lease=lease, result_ttl=result_ttl)
        except Empty:
            if timeout == 0:  # no job was ready, so nothing was done: finish alone
                self.finish(job, result, result_ttl)
            return None
        return self._bind(got.value if type(got) is Event else got)

    def finish(self, job: kernel.Job, result: Any = None, result_ttl: float | None = None
               ) -> None:
        """Finish a claimed job with ``result``. Raises LeaseLost if the claim is stale."""
        self._corral._run(self._kernel.finish, self.name, job, result,
                          result_ttl=result_ttl, now=self._corral._clock())

    def cancel(self, job: kernel.Job, delay: float | None = None,
               reason: str | None = None) -> None:
        """Give a claimed job back as failed, ``reason`` being its error: ready again
        after ``delay`` seconds (None: the queue's backoff), or stalled once
        max_attempts claims have failed."""
        self._corral._run(self._kernel.cancel, self.name, job, delay=delay, reason=reason,
                          now=self._corral._clock())

    def stall(self, job: kernel.Job, reason: str | None = None) -> None:
        """Park a claimed job until it is retried."""
        self._corral._run(self._kernel.stall, self.name, job, reason)

    def touch(self, job: kernel.Job, lease: float | None = None) -> None:
        """Extend a claim to ``lease`` seconds from now."""
        self._corral._run(self._kernel.touch, self.name, job, lease=lease,
                          now=self._corral._clock())

    def retry(self, id: str) -> None:
        """Make a stalled job ready again. Raises InvalidArgument if it is not stalled."""
        self._corral._run(self._kernel.retry, self.name, id, now=self._corral._clock())

    def retry_all(self) -> int:
        """Make every stalled job ready again; returns how many."""
        result: int = self._corral._run(self._kernel.retry_all, self.name,
                                        now=self._corral._clock())
        return result

    def retract(self, id: str) -> None:
        """Withdraw a job that has not ended, whatever its state."""
        self._corral._run(self._kernel.retract, self.name, id)

    def result(self, id: str, timeout: float | None = None) -> Any:
        """Job ``id``'s result, waiting up to ``timeout`` seconds for it to finish.
        Raises Empty on timeout, NotFound for a retracted or forgotten job, and
        JobFailed (with the job's error) as soon as the job is stalled."""
        return wait_value(self._corral._wait(self._kernel.result, self.name, id,
                                             timeout=timeout))

    def state(self, id: str) -> JobState:
        """Job ``id``'s state. Raises NotFound once it is forgotten."""
        result: JobState = self._corral._run(self._kernel.state, self.name, id)
        return result

    def info(self, id: str) -> JobInfo:
        """Everything about job ``id``: item, state, attempt, priority, times, lease
        deadline, last error, result. Raises NotFound once it is forgotten."""
        result: JobInfo = self._corral._run(self._kernel.info, self.name, id)
        return result

    def statistics(self) -> JobStatistics:
        """Jobs per state, parked claimers (``waiters``) and result readers."""
        result: JobStatistics = self._corral._run(self._kernel.statistics, self.name)
        return result

    def ids(self, state: JobState | None = None, start: int = 0, end: int | None = None
            ) -> list[str]:
        """The ids of the jobs in ``state`` (None: those that have not ended), in the
        order they were put; ``[start:end]`` of them, to page through a long queue."""
        result: list[str] = self._corral._run(self._kernel.ids, self.name, state=state,
                                              start=start, end=end)
        return result
