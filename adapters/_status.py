"""What the status page and ``/metrics`` show, read from a kernel: the views as JSON-ready
dicts, the actions, and the Prometheus collector. No HTTP here (that is ``web``).

A ``Source`` is where a kernel lives: a server (``ServerSource``, on the server's trio
loop), an embedded thread corral (``ThreadsSource``: every read holds its lock, so a
view is one instant) or an embedded trio corral (``TrioSource``). Every view is built in
one ``read`` from the kernel's inspection methods (``statistics``, ``metrics``, ``peek``,
``waiters``, ``session_info``, ``info``), which change nothing.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from corral import __version__
from corral.kernel import Empty, JobState, Kernel, Kind, WrongKind
from corral.transports.journal import Journal, JournaledKernel

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from corral.transports.server import Server

    from .threads import Corral as ThreadCorral
    from .trio import Corral as TrioCorral

__all__ = ["ServerSource", "Source", "ThreadsSource", "TrioSource", "Views", "show"]

T = TypeVar("T")
SHOWN = 200  # characters of a value shown


def show(value: Any) -> str:
    """A value as the page shows it: a str as it is, anything else as its repr; cut."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= SHOWN else text[:SHOWN - 1] + "…"


def _ago(now: float, moment: float | None) -> float | None:
    return None if moment is None else round(now - moment, 3)


def _until(now: float, moment: float | None) -> float | None:
    return None if moment is None else round(moment - now, 3)


def _journal(journal: Journal | None) -> dict[str, Any] | None:
    if journal is None:
        return None
    return {"path": str(journal.directory), "fsync": journal.fsync, "generation": journal.gen,
            "size": journal.end + journal.snapshot_bytes,
            "last_fsync_age": round(time.monotonic() - journal.last_sync, 3)}


class Source:
    """Where a kernel lives, for the views: how to read it at one instant and how to
    change it so that its effects reach whoever waits."""

    mode = "embedded"

    def __init__(self) -> None:
        self.started = time.monotonic()

    def read(self, fn: Callable[[Kernel], T]) -> T:
        raise NotImplementedError

    async def act(self, fn: Callable[[Kernel, float, int], T]) -> T:
        """Apply ``fn(kernel, now, session)``, a state change, and route its effects."""
        raise NotImplementedError

    def now(self) -> float:
        """The kernel's clock."""
        raise NotImplementedError

    def uptime(self) -> float:
        return time.monotonic() - self.started

    def who(self, session: int) -> str:
        return f"session {session}"

    def server(self) -> dict[str, Any]:
        return {"connections": None, "commands": None, "limits": None, "journal": None}

    def alive(self) -> bool:
        return True


class ServerSource(Source):
    """A server's kernel, read on the server's own trio loop."""

    mode = "server"

    def __init__(self, server: Server) -> None:
        super().__init__()
        self._server = server
        self._session: int | None = None  # opened for the first purge of a queue

    def read(self, fn: Callable[[Kernel], T]) -> T:
        return fn(self._server.kernel)

    async def act(self, fn: Callable[[Kernel, float, int], T]) -> T:
        server = self._server
        if self._session is None:
            self._session = server.kernel.open_session()
        try:
            return fn(server.kernel, server.now(), self._session)
        finally:
            server.route()
            server.flush()  # journaled: written (and synced, as the policy says) now

    def now(self) -> float:
        return self._server.now()

    def uptime(self) -> float:
        return self._server.uptime() if self._server.started is not None else 0.0

    def who(self, session: int) -> str:
        if session == self._session:
            return "the status page"
        conn = self._server.connections.get(session)
        return conn.peer if conn is not None else f"session {session}"

    def server(self) -> dict[str, Any]:
        server = self._server
        return {"connections": len(server.connections), "commands": server.commands,
                "limits": attrs.asdict(server.limits), "journal": _journal(server.journal)}


class _Embedded(Source):
    """An embedded corral (its kernel, clock and session); subclasses read and act."""

    def __init__(self, corral: ThreadCorral | TrioCorral) -> None:
        super().__init__()
        self._corral = corral

    def now(self) -> float:
        return self._corral._clock()

    def who(self, session: int) -> str:
        return "this corral" if session == self._corral._session else f"session {session}"

    def server(self) -> dict[str, Any]:
        kernel = self._corral._kernel
        journal = kernel.journal if isinstance(kernel, JournaledKernel) else None
        return {**super().server(), "journal": _journal(journal)}

    def alive(self) -> bool:
        return not self._corral.closed


class ThreadsSource(_Embedded):
    """An embedded thread corral: every read and action holds its lock."""

    _corral: ThreadCorral

    def read(self, fn: Callable[[Kernel], T]) -> T:
        corral = self._corral
        with corral._lock:
            corral._check_open()
            return fn(corral._kernel)

    async def act(self, fn: Callable[[Kernel, float, int], T]) -> T:
        corral = self._corral
        result: T = corral._run(lambda: fn(corral._kernel, corral._clock(), corral._session))
        return result


class TrioSource(_Embedded):
    """An embedded trio corral, read on its own trio loop (no lock needed)."""

    _corral: TrioCorral

    def read(self, fn: Callable[[Kernel], T]) -> T:
        corral = self._corral
        corral._check_open()
        return fn(corral._kernel)

    async def act(self, fn: Callable[[Kernel, float, int], T]) -> T:
        corral = self._corral
        result: T = await corral._run(
            lambda: fn(corral._kernel, corral._clock(), corral._session))
        return result


class Rates:
    """Records in and out per second over the last minute, from samples of each
    container's counters taken about once a second."""

    WINDOW = 60.0

    def __init__(self) -> None:
        self._samples: deque[tuple[float, dict[str, tuple[int, int]]]] = deque()

    def sample(self, counters: dict[str, tuple[int, int]], now: float | None = None
               ) -> None:
        now = time.monotonic() if now is None else now
        samples = self._samples
        samples.append((now, counters))
        while len(samples) > 2 and now - samples[1][0] >= self.WINDOW:
            samples.popleft()

    def rates(self, name: str, counters: tuple[int, int]) -> tuple[float, float]:
        """``name``'s rates in and out, its counters being ``counters`` now."""
        if not self._samples:
            return 0.0, 0.0
        then, old = self._samples[0]
        elapsed = time.monotonic() - then
        added, taken = old.get(name, (0, 0))
        if elapsed <= 0.5 or counters[0] < added:  # too soon, or the name was reused
            return 0.0, 0.0
        return (round((counters[0] - added) / elapsed, 2),
                round(max(counters[1] - taken, 0) / elapsed, 2))


def counters(kernel: Kernel) -> dict[str, tuple[int, int]]:
    out = {}
    for name in kernel.containers():
        metrics = kernel.metrics(name)
        out[name] = (metrics.added, metrics.taken)
    return out


@attrs.define(eq=False)
class Views:
    """The page's views and actions over one ``Source``."""

    source: Source
    rates: Rates = attrs.Factory(Rates)

    def sample(self) -> None:
        self.rates.sample(self.source.read(counters))

    def overview(self) -> dict[str, Any]:
        source = self.source

        def build(kernel: Kernel) -> list[dict[str, Any]]:
            now = source.now()
            rows = []
            for name, kind in kernel.containers().items():
                stats, metrics = kernel.statistics(name), kernel.metrics(name)
                rate_in, rate_out = self.rates.rates(name, (metrics.added, metrics.taken))
                row: dict[str, Any] = {
                    "name": name, "kind": kind.value, "depth": stats.records,
                    "waiters": stats.waiters, "subscribers": stats.subscribers,
                    "rate_in": rate_in, "rate_out": rate_out, "jobs": None}
                if kind is Kind.JOBS:
                    row["jobs"] = {state.value: getattr(stats, state.value)
                                   for state in JobState}
                    row["jobs"]["oldest_ready_age"] = _ago(now, metrics.oldest_ready)
                rows.append(row)
            return rows

        return {"title": "corral", "version": __version__, "mode": source.mode,
                "uptime": round(source.uptime(), 1), "containers": source.read(build)}

    def container(self, name: str, start: int = 0, limit: int = 50) -> dict[str, Any]:
        """Raises NotFound."""
        source = self.source

        def build(kernel: Kernel) -> dict[str, Any]:
            now = source.now()
            kind = kernel.open(name)
            stats = kernel.statistics(name)
            view: dict[str, Any] = {
                "name": name, "kind": kind.value, "depth": stats.records,
                "subscribers": stats.subscribers, "options": kernel.options(name),
                "waiters": [{"id": w.id, "session": w.session, "who": source.who(w.session),
                             "op": w.op, "key": None if w.key is None else show(w.key),
                             "age": _ago(now, w.since), "deadline_in": _until(now, w.deadline)}
                            for w in kernel.waiters(name)],
                "jobs": None}
            rows = [{"key": show(r.key), "value": show(r.value),
                     "metadata": None if r.metadata is None else show(r.metadata)}
                    for r in ([] if kind is Kind.JOBS
                              else kernel.peek(name, start, start + limit))]
            view["items"] = {"start": start, "limit": limit, "total": stats.records,
                             "rows": rows}
            if kind is Kind.JOBS:
                view["jobs"] = self._jobs(kernel, name, now, limit)
            return view

        return source.read(build)

    def _jobs(self, kernel: Kernel, name: str, now: float, limit: int) -> dict[str, Any]:
        stats, metrics = kernel.statistics(name), kernel.metrics(name)
        owners = {claim: session for session in kernel.sessions()
                  for claim in kernel.session_info(session).claims}
        stalled = kernel.ids(name, state=JobState.STALLED)
        first = set(stalled)
        ids = stalled + [id for id in kernel.ids(name) if id not in first]
        rows = []
        for id in ids[:limit]:
            info = kernel.info(name, id)
            owner = owners.get((name, id))
            claimed = info.state is JobState.CLAIMED
            rows.append({
                "id": id, "item": show(info.item), "state": info.state.value,
                "attempt": info.attempt, "owner": owner,
                "who": None if owner is None else self.source.who(owner),
                "lease_left": _until(now, info.deadline) if claimed else None,
                "ready_in": (_until(now, info.deadline)
                             if info.state is JobState.DELAYED else None),
                "age": _ago(now, info.created), "error": info.error})
        return {"counts": {state.value: getattr(stats, state.value) for state in JobState},
                "metrics": {"put": metrics.added, "claimed": metrics.taken,
                            "finished": metrics.finished, "failed": metrics.failed,
                            "expired": metrics.expired, "stalled": metrics.stalled},
                "rows": rows}

    def sessions(self) -> dict[str, Any]:
        source = self.source

        def build(kernel: Kernel) -> list[dict[str, Any]]:
            now = source.now()
            out = []
            for session in kernel.sessions():
                held = kernel.session_info(session)
                claims = []
                for container, id in held.claims:
                    info = kernel.info(container, id)
                    claims.append({"container": container, "id": id,
                                   "attempt": info.attempt,
                                   "lease_left": _until(now, info.deadline)})
                out.append({
                    "session": session, "who": source.who(session), "claims": claims,
                    "waits": [{"container": w.container, "op": w.op,
                               "key": None if w.key is None else show(w.key),
                               "age": _ago(now, w.since),
                               "deadline_in": _until(now, w.deadline)}
                              for w in held.waiters],
                    "subscriptions": [{"id": sid, "container": container}
                                      for sid, container in held.subscriptions]})
            return out

        return {"sessions": source.read(build)}

    def server(self) -> dict[str, Any]:
        source = self.source
        return {"mode": source.mode, "version": __version__,
                "uptime": round(source.uptime(), 1), **source.read(lambda _: source.server())}

    # -- actions ----------------------------------------------------------------------

    async def retry(self, name: str, id: str) -> dict[str, Any]:
        await self.source.act(lambda kernel, now, _: kernel.retry(name, id, now=now))
        return {"ok": True, "retried": 1}

    async def retract(self, name: str, id: str) -> dict[str, Any]:
        await self.source.act(lambda kernel, now, _: kernel.retract(name, id))
        return {"ok": True, "retracted": 1}

    async def retry_all(self, name: str) -> dict[str, Any]:
        count = await self.source.act(lambda kernel, now, _: kernel.retry_all(name, now=now))
        return {"ok": True, "retried": count}

    async def purge(self, name: str) -> dict[str, Any]:
        """Remove what waits to be taken: a list's or map's records, a queue's items, a
        job queue's ready and delayed jobs (retracted: their result readers hear)."""
        return {"ok": True, "purged": await self.source.act(
            lambda kernel, now, session: _purge(kernel, name, now, session))}

    # -- Prometheus ---------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        def family(cls: Any, name: str, text: str, labels: tuple[str, ...] = (
                "container", "kind")) -> Any:
            return cls(f"corral_{name}", text, labels=list(labels))

        added = family(CounterMetricFamily, "records_added",
                       "Records or items that came in (pushed, set, published, put)")
        taken = family(CounterMetricFamily, "records_taken",
                       "Records or items handed to a caller (popped, got, claimed)")
        ends = {end: family(CounterMetricFamily, f"jobs_{end}", f"Claims that {text}",
                            ("container",))
                for end, text in (("finished", "finished"), ("failed", "failed"),
                                  ("expired", "ran out of lease"),
                                  ("stalled", "stalled the job (dead-lettered)"))}
        puts = family(CounterMetricFamily, "jobs_put", "Jobs put", ("container",))
        claims = family(CounterMetricFamily, "jobs_claimed", "Jobs claimed", ("container",))
        depth = family(GaugeMetricFamily, "depth", "Records held (jobs: not ended)")
        waiters = family(GaugeMetricFamily, "waiters", "Parked calls")
        subscribers = family(GaugeMetricFamily, "subscribers", "Subscriptions")
        states = family(GaugeMetricFamily, "jobs", "Jobs in each state",
                        ("container", "state"))
        leased = family(GaugeMetricFamily, "jobs_leased", "Jobs claimed now",
                        ("container",))
        waited = family(HistogramMetricFamily, "job_wait_seconds",
                        "Time jobs waited ready before a claim", ("container",))
        ran = family(HistogramMetricFamily, "job_run_seconds",
                     "Time claims ran until they finished, failed or stalled",
                     ("container",))

        def build(kernel: Kernel) -> list[Metric]:
            for name, kind in kernel.containers().items():
                stats, metrics = kernel.statistics(name), kernel.metrics(name)
                labels = [name, kind.value]
                added.add_metric(labels, metrics.added)
                taken.add_metric(labels, metrics.taken)
                depth.add_metric(labels, stats.records)
                waiters.add_metric(labels, stats.waiters)
                subscribers.add_metric(labels, stats.subscribers)
                if kind is not Kind.JOBS:
                    continue
                puts.add_metric([name], metrics.added)
                claims.add_metric([name], metrics.taken)
                for end, metric in ends.items():
                    metric.add_metric([name], getattr(metrics, end))
                for state in JobState:
                    states.add_metric([name, state.value], getattr(stats, state.value))
                leased.add_metric([name], getattr(stats, "claimed", 0))
                for histogram, dist in ((waited, metrics.waited), (ran, metrics.ran)):
                    assert dist is not None
                    cumulative, buckets = 0, []
                    for bound, count in zip((*dist.bounds, float("inf")), dist.counts,
                                            strict=True):
                        cumulative += count
                        buckets.append((_bound(bound), cumulative))
                    histogram.add_metric([name], buckets, dist.total)
            return [added, taken, puts, claims, *ends.values(), depth, waiters,
                    subscribers, states, leased, waited, ran]

        yield from self.source.read(build)
        up = GaugeMetricFamily("corral_uptime_seconds", "Seconds since serving began")
        up.add_metric([], self.source.uptime())
        yield up
        server = self.source.read(lambda _: self.source.server())
        if server["connections"] is not None:
            yield GaugeMetricFamily("corral_connections", "Client connections",
                                    value=server["connections"])
            yield CounterMetricFamily("corral_commands", "Commands served",
                                      value=server["commands"])


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def _purge(kernel: Kernel, name: str, now: float, session: int) -> int:
    kind = kernel.open(name)
    if kind in (Kind.LIST, Kind.MAP):
        count = kernel.count(name)
        kernel.clear(name)
        return count
    if kind is Kind.QUEUE:
        count = 0
        while True:
            try:
                kernel.queue_get(session, name, timeout=0, now=now)
            except Empty:
                return count
            count += 1
    if kind is Kind.JOBS:
        ids = (kernel.ids(name, state=JobState.READY)
               + kernel.ids(name, state=JobState.DELAYED))
        for id in ids:
            kernel.retract(name, id)
        return len(ids)
    raise WrongKind(f"purge on {name!r}: a {kind.value} keeps its items (retract them "
                    "one by one)")

