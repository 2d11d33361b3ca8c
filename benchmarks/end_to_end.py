"""End to end: one producer, four workers, no-op jobs, across job systems, in one run.

Every system runs the same workload: this process produces, four workers (processes,
except corral embedded: threads) run no-op jobs, each job's result is its item and
goes back to the producer. After an untimed warm-up of 16 jobs put at once (every
worker up and connected), N jobs "one at a time" (put one, wait for its result, put
the next: jobs/s, and latency p50/p99 from put to the result seen by the producer),
then N "all at once" (N put calls, one job each, then every result awaited in order:
jobs/s). Every worker records the items it ran and reports them when it stops: each
job put must have run exactly once, or the system's run is reported as failed.

- corral server: ``corral serve`` started here on 127.0.0.1; four worker processes,
  each a ``corral.adapters.workers.Worker`` over ``connect("corral://127.0.0.1:PORT")``;
  the producer ``jobs.put(...)`` and ``jobs.result(id, timeout=)``.
- corral embedded: the same in one process, an embedded
  ``corral.adapters.threads.Corral`` and four ``Worker`` threads.
- the Python job libraries on one redis-server started here (over 127.0.0.1 as the
  others, or ``--via unix``): RQ, Celery, dramatiq, huey, arq, saq, with the drivers of
  ``on_redis.py`` (Celery's is here: a ``solo`` pool, one job at a time, the Redis
  result backend, which waits for a result through pub/sub), and beside them the least
  a job system on Redis can do (four redis-py processes in BLPOP, each result RPUSHed
  to a key of its job that the producer BLPOPs: a floor, not a library). A library
  that is not installed is skipped with a note, one that fails is reported as failed.
- beanstalkd with greenstalk: the producer puts ``id|item`` to a tube; four worker
  processes reserve, put ``id|item`` on a results tube, then delete the job (the
  at-least-once order); the producer reserves and deletes the results, keeping those
  that come early.

Then one more measure: job cycles (put, claim, finish; ``result_ttl=0``) in a loop in
one corral client process over TCP against ``corral serve``, against the same loop of
greenstalk put, reserve, delete against beanstalkd (best of three, interleaved, each in
a fresh process).

Every process (servers, this one, workers) is pinned to CPU 0 as ``on_redis.py`` and
``network.py`` pin them, unless ``--no-pin``. Bounded: fixed counts (``--jobs``,
``--cycles``), a 30 s time-out on every result, a watchdog (``--budget`` seconds), and
every process started here is stopped at the end. ``--json PATH`` also writes the
results for ``report.py``.

    python benchmarks/end_to_end.py [--jobs N] [--cycles N] [--quick] [--via tcp|unix]
                                    [--no-pin] [--peers rq,celery] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from _common import PIN, beanstalkd_missing, free_port, pin_self, process, redis_missing
from on_redis import (
    CORRAL_WORKER,
    PEERS,
    WORKER_PRELUDE,
    WORKERS,
    Pool,
    Server,
    end_to_end,
    raw_e2e,
    redis_server,
    workers,
)

ONE, P50, P99, ALL = "one at a time, jobs/s", "p50 ms", "p99 ms", "all at once, jobs/s"
CORRAL_SERVER, CORRAL_EMBEDDED = "corral server", "corral embedded"
RAW, BEANSTALKD = "redis-py BLPOP (floor)", "beanstalkd"
RESULT_TIMEOUT = 30.0
TARGETS = {"end to end / fastest library": 1.5, "job cycles / beanstalkd": 1.5}


# -- corral ----------------------------------------------------------------------------------


@contextlib.contextmanager
def corral_serve() -> Iterator[str]:
    """``corral serve`` on 127.0.0.1 and a free port, pinned; its URL."""
    port = free_port()
    with process([sys.executable, "-m", "corral.adapters.cli", "serve", "--host",
                  "127.0.0.1", "--port", str(port)], port):
        yield f"corral://127.0.0.1:{port}"


def wait_for_workers(jobs: Any, count: int, limit: float = 10.0) -> None:
    """Until ``count`` workers are parked in claim() (or ``limit`` seconds)."""
    give_up = time.monotonic() + limit
    while jobs.statistics().waiters < count and time.monotonic() < give_up:
        time.sleep(0.01)


def corral_server_e2e(url: str, n: int) -> dict[str, float]:
    from corral.adapters.client import connect

    with connect(url) as corral:
        jobs = corral.jobs("e2e", result_ttl=60.0)
        with workers([CORRAL_WORKER.format(name=jobs.name, url=url)] * WORKERS) as pool:
            wait_for_workers(jobs, WORKERS)
            result = end_to_end(n, jobs.put,
                                lambda id: jobs.result(id, timeout=RESULT_TIMEOUT))
    pool.check_exactly_once(n)
    return result


def corral_embedded_e2e(n: int) -> dict[str, float]:
    from corral.adapters.threads import Corral
    from corral.adapters.workers import Worker

    ran: list[int] = []

    def noop(item: int) -> int:
        ran.append(item)
        return item

    with Corral() as corral:
        jobs = corral.jobs("e2e", result_ttl=60.0)
        threads = []
        try:
            for i in range(WORKERS):
                threads.append(Worker(jobs.name, noop, corral=corral, name=f"w{i}").start())
            wait_for_workers(jobs, WORKERS)
            result = end_to_end(n, jobs.put,
                                lambda id: jobs.result(id, timeout=RESULT_TIMEOUT))
        finally:
            for worker in threads:
                worker.stop(5)
    pool = Pool()
    pool.ran = ran
    pool.check_exactly_once(n)
    return result


# -- Celery ----------------------------------------------------------------------------------

CELERY_APP = """
from celery import Celery
app = Celery("bench", broker={url!r}, backend={url!r})
app.conf.update(task_default_queue={queue!r}, worker_prefetch_multiplier=1,
                broker_connection_retry_on_startup=True, result_expires=600,
                worker_hijack_root_logger=False, worker_redirect_stdouts=False)
"""

CELERY_WORKER = WORKER_PRELUDE + CELERY_APP + """
import warnings
from celery.platforms import SecurityWarning
warnings.simplefilter("ignore", SecurityWarning)  # run as root in a container: no matter

@app.task(name="noop")
def noop(x):
    ran.append(x)
    return x

worker = app.Worker(pool_cls="solo", concurrency=1, queues=[{queue!r}], quiet=True,
                    without_gossip=True, without_mingle=True, without_heartbeat=True,
                    loglevel="WARNING")
stop_on_eof(signal_self(signal.SIGTERM))  # SIGTERM: Celery's warm shutdown
print("ready", flush=True)
try:
    worker.start()
except SystemExit:
    pass
report()
"""


def celery_url(server: Server) -> str:
    if server.via == "unix":
        return f"redis+socket://{server.sock}"
    return server.raw_url()


def celery_e2e(server: Server, n: int, r: int) -> dict[str, float]:
    url, queue = celery_url(server), f"celery{r}"
    scope: dict[str, Any] = {"__name__": "bench_celery"}
    exec(CELERY_APP.format(url=url, queue=queue), scope)
    app = scope["app"]
    code = CELERY_WORKER.format(url=url, queue=queue)
    try:
        with workers([code] * WORKERS) as pool:
            outcome = end_to_end(n, lambda i: app.send_task("noop", args=[i], queue=queue),
                                 lambda res: res.get(timeout=RESULT_TIMEOUT))
    finally:
        app.close()
    pool.check_exactly_once(n)
    return outcome


# name, module to import, driver; in the order the table prints them
LIBRARIES: list[tuple[str, str, Callable[[Server, int, int], dict[str, float]]]] = [
    ("RQ", "rq", PEERS["RQ"][1]), ("Celery", "celery", celery_e2e),
    ("dramatiq", "dramatiq", PEERS["dramatiq"][1]), ("huey", "huey", PEERS["huey"][1]),
    ("arq", "arq", PEERS["arq"][1]), ("saq", "saq", PEERS["saq"][1])]


# -- beanstalkd ------------------------------------------------------------------------------


@contextlib.contextmanager
def beanstalkd() -> Iterator[tuple[str, int]]:
    port = free_port()
    with process(["beanstalkd", "-l", "127.0.0.1", "-p", str(port)], port):
        yield ("127.0.0.1", port)


BEANSTALK_WORKER = WORKER_PRELUDE + """
import greenstalk
c = greenstalk.Client({address!r}, use="results", watch="e2e")
print("ready", flush=True)
while True:
    job = c.reserve()
    if job.body == "stop":
        c.delete(job)
        break
    id, _, item = job.body.partition("|")
    ran.append(int(item))
    c.put(job.body)  # the result, then the job deleted: at least once
    c.delete(job)
c.close()
report()
"""


def beanstalkd_e2e(address: tuple[str, int], n: int) -> dict[str, float]:
    import greenstalk

    client = greenstalk.Client(address, use="e2e", watch="results")
    ids = iter(range(10 ** 9))
    early: dict[int, int] = {}  # results reserved before their turn

    def put(i: int) -> int:
        id = next(ids)
        client.put(f"{id}|{i}")
        return id

    def result(id: int) -> int:
        while id not in early:
            try:
                job = client.reserve(timeout=int(RESULT_TIMEOUT))
            except greenstalk.TimedOutError:
                raise TimeoutError(f"beanstalkd job {id}: no result in 30 s") from None
            got, _, item = job.body.partition("|")
            client.delete(job)
            early[int(got)] = int(item)
        return early.pop(id)

    try:
        with workers([BEANSTALK_WORKER.format(address=address)] * WORKERS) as pool:
            try:
                outcome = end_to_end(n, put, result)
            finally:
                for _ in range(WORKERS):
                    client.put("stop", priority=2 ** 32 - 1)  # after every job
    finally:
        client.close()
    pool.check_exactly_once(n)
    return outcome


# -- job cycles in a loop --------------------------------------------------------------------

CORRAL_CYCLES = """
import json, time
from corral.adapters.client import connect
with connect({url!r}) as c:
    jobs = c.jobs({name!r}, result_ttl=0.0)
    jobs.put(-1)  # the sessions made outside the timing
    jobs.claim(timeout=0).finish()
    start = time.perf_counter()
    for i in range({n}):
        jobs.put(i)
        jobs.claim(timeout=0).finish()
    print(json.dumps({n} / (time.perf_counter() - start)), flush=True)
"""

BEANSTALK_CYCLES = """
import json, time
import greenstalk
c = greenstalk.Client({address!r}, use={tube!r}, watch={tube!r})
c.put("-1")
c.delete(c.reserve(timeout=1))
start = time.perf_counter()
for i in range({n}):
    c.put(str(i))
    c.delete(c.reserve(timeout=1))
print(json.dumps({n} / (time.perf_counter() - start)), flush=True)
c.close()
"""


def run_loop(code: str, limit: float = 120.0) -> float:
    """The rate a fresh pinned process running ``code`` prints."""
    proc = subprocess.run(PIN + [sys.executable, "-c", code], capture_output=True,
                          timeout=limit, check=False)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode(errors="replace")[-500:])
    return float(json.loads(proc.stdout.splitlines()[-1]))


def cycles(url: str, address: tuple[str, int] | None, n: int, rounds: int = 3
           ) -> dict[str, Any]:
    best: dict[str, float] = {}
    for r in range(rounds):  # interleaved, so both see the same machine weather
        if address is not None:
            rate = run_loop(BEANSTALK_CYCLES.format(address=address, tube=f"cycle{r}", n=n))
            best[BEANSTALKD] = max(best.get(BEANSTALKD, 0.0), rate)
        rate = run_loop(CORRAL_CYCLES.format(url=url, name=f"cycle{r}", n=n))
        best["corral"] = max(best.get("corral", 0.0), rate)
    return best


# -- the run ---------------------------------------------------------------------------------


def attempt(results: dict[str, Any], name: str, run: Callable[[], dict[str, float]]) -> None:
    """Run one system; a failure is noted and the rest go on."""
    print(f"  {name} ...", end="", flush=True)
    began = time.perf_counter()
    try:
        results[name] = run()
        print(f" {time.perf_counter() - began:.0f} s", flush=True)
    except Exception as error:  # a system that fails: say so, go on with the rest
        results[name] = f"failed: {type(error).__name__}: {error}"[:300]
        print(f" {results[name]}", flush=True)


def version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def run(n: int, n_cycles: int, via: str, wanted: list[str] | None) -> dict[str, Any]:
    systems: dict[str, Any] = {}
    kinds: dict[str, str] = {CORRAL_SERVER: "corral", CORRAL_EMBEDDED: "corral",
                             RAW: "floor", BEANSTALKD: "beanstalkd"}
    versions: dict[str, str | None] = {CORRAL_SERVER: version("corral"),
                                       CORRAL_EMBEDDED: version("corral")}
    servers: dict[str, str] = {}
    cycle: dict[str, Any] = {}
    missing_beanstalkd = beanstalkd_missing()
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(corral_serve())
        address = None
        if missing_beanstalkd is None:
            address = stack.enter_context(beanstalkd())
            servers["beanstalkd"] = subprocess.run(
                ["beanstalkd", "-v"], capture_output=True, text=True, check=False
            ).stdout.strip()  # "beanstalkd 1.12"
        attempt(systems, CORRAL_SERVER, lambda: corral_server_e2e(url, n))
        attempt(systems, CORRAL_EMBEDDED, lambda: corral_embedded_e2e(n))
        if address is not None:
            attempt(systems, BEANSTALKD, lambda: beanstalkd_e2e(address, n))
        else:
            systems[BEANSTALKD] = f"skipped: {missing_beanstalkd}"
        versions[BEANSTALKD] = servers.get("beanstalkd", "").rpartition(" ")[2] or None
        missing_redis = redis_missing()
        for name, module, _ in LIBRARIES:
            kinds[name] = "library"
            if missing_redis:
                systems[name] = f"skipped: {missing_redis}"
            elif wanted is not None and name.lower() not in wanted:
                systems[name] = "skipped: not asked for (--peers)"
            elif importlib.util.find_spec(module) is None:
                systems[name] = f"skipped: {module} not installed"
            else:
                versions[name] = version(module)
        if missing_redis is None:
            server = stack.enter_context(redis_server(via))
            raw = server.client()
            stack.callback(raw.close)
            servers["redis"] = "redis-server " + raw.info("server")["redis_version"]
            attempt(systems, RAW, lambda: raw_e2e(server, raw, n, 0))
            for name, _, driver in LIBRARIES:
                if name not in systems:
                    attempt(systems, name, lambda driver=driver: driver(server, n, 0))
        else:
            systems[RAW] = f"skipped: {missing_redis}"
        print(f"  job cycles in a loop, {n_cycles:,} per round, best of 3 ...", end="",
              flush=True)
        try:
            cycle = cycles(url, address, n_cycles)
            print(" done", flush=True)
        except Exception as error:
            cycle = {"failed": f"{type(error).__name__}: {error}"[:300]}
            print(f" {cycle['failed']}", flush=True)
    order = [CORRAL_SERVER, CORRAL_EMBEDDED, BEANSTALKD, RAW] + [n for n, _, _ in LIBRARIES]
    systems = {name: systems[name] for name in order if name in systems}
    return {"jobs": n, "cycles per round": n_cycles, "workers": WORKERS,
            "pinned": bool(PIN), "redis via": via, "servers": servers,
            "systems": systems, "kinds": kinds, "versions": versions,
            "ratios": ratios(systems, cycle), "cycle": cycle,
            "python": platform.python_version()}


def fastest_library(systems: dict[str, Any], measure: str) -> tuple[str, float] | None:
    rates = [(name, result[measure]) for name, _, _ in LIBRARIES
             if isinstance(result := systems.get(name), dict)]
    return max(rates, key=lambda nr: nr[1]) if rates else None


def ratios(systems: dict[str, Any], cycle: dict[str, Any]) -> dict[str, Any]:
    """corral's rates over the fastest library's and beanstalkd's (above 1: corral is
    faster), one at a time and all at once; and the job-cycle loop's."""
    out: dict[str, Any] = {}
    for ours in (CORRAL_SERVER, CORRAL_EMBEDDED):
        mine = systems.get(ours)
        if not isinstance(mine, dict):
            continue
        for measure, short in ((ONE, "one at a time"), (ALL, "all at once")):
            best = fastest_library(systems, measure)
            if best is not None:
                out[f"{ours} / fastest library, {short}"] = {
                    "ratio": mine[measure] / best[1], "peer": best[0],
                    "target": TARGETS["end to end / fastest library"]}
            bean = systems.get(BEANSTALKD)
            if isinstance(bean, dict):
                out[f"{ours} / beanstalkd, {short}"] = {
                    "ratio": mine[measure] / bean[measure], "peer": BEANSTALKD}
    if "corral" in cycle and BEANSTALKD in cycle:
        out["job cycles / beanstalkd"] = {"ratio": cycle["corral"] / cycle[BEANSTALKD],
                                          "peer": BEANSTALKD,
                                          "target": TARGETS["job cycles / beanstalkd"]}
    return out


def print_report(results: dict[str, Any]) -> None:
    systems, versions = results["systems"], results["versions"]
    print(f"\n{results['jobs']:,} no-op jobs each way, {results['workers']} workers, every "
          "job checked to run exactly once" + ("; every process on CPU 0" if results["pinned"]
                                               else "; not pinned"))
    print(f"{'system':<28}{'one at a time':>15}{'p50 ms':>9}{'p99 ms':>9}{'all at once':>14}")
    for name, result in systems.items():
        label = name + (f" {versions[name]}" if versions.get(name) else "")
        if isinstance(result, str):
            print(f"{label:<28}  ({result})")
            continue
        print(f"{label:<28}{result[ONE]:>11,.0f} j/s{result[P50]:>9.2f}{result[P99]:>9.2f}"
              f"{result[ALL]:>10,.0f} j/s")
    print("ratios (above 1: corral is faster):")
    for measure, ratio in results["ratios"].items():
        line = f"  {measure:<50} {ratio['ratio']:6.2f}x  ({ratio['peer']})"
        if "target" in ratio:
            met = "met" if ratio["ratio"] >= ratio["target"] else "NOT met"
            line += f"   target >= {ratio['target']:.1f}x: {met}"
        print(line)
    cycle = results["cycle"]
    if "failed" in cycle:
        print(f"job cycles in a loop: failed: {cycle['failed']}")
    else:
        line = (f"job cycles in a loop (put, claim, finish; one client process over TCP): "
                f"corral {cycle['corral']:,.0f}/s")
        if BEANSTALKD in cycle:
            line += f", beanstalkd (put, reserve, delete) {cycle[BEANSTALKD]:,.0f}/s"
        print(line)


class Overtime(BaseException):  # not an Exception: no system's failure handler takes it
    pass


def _overtime(signum: int, frame: Any) -> None:
    raise Overtime("the run took longer than --budget seconds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=None,
                        help="jobs one at a time, and again all at once (default 5,000)")
    parser.add_argument("--cycles", type=int, default=None,
                        help="job cycles per round of the loop measure (default 5,000)")
    parser.add_argument("--quick", action="store_true", help="500 jobs, 1,000 cycles")
    parser.add_argument("--via", choices=("tcp", "unix"), default="tcp",
                        help="how the Redis libraries reach redis-server (default tcp, "
                        "as corral and beanstalkd)")
    parser.add_argument("--no-pin", action="store_true",
                        help="let the servers and every process run on any CPU")
    parser.add_argument("--peers", type=lambda s: [p.strip().lower() for p in s.split(",")],
                        default=None, help="only these job libraries (comma-separated: "
                        + ",".join(name.lower() for name, _, _ in LIBRARIES) + ")")
    parser.add_argument("--budget", type=float, default=1800,
                        help="seconds after which a hung run gives up")
    parser.add_argument("--json", metavar="PATH", help="also write the results here")
    args = parser.parse_args()
    n = args.jobs or (500 if args.quick else 5000)
    n_cycles = args.cycles or (1000 if args.quick else 5000)
    if args.no_pin:
        PIN.clear()
    pin_self()
    signal.signal(signal.SIGALRM, _overtime)
    signal.alarm(int(args.budget))
    began = time.perf_counter()
    try:
        results = run(n, n_cycles, args.via, args.peers)
    finally:
        signal.alarm(0)
    results["seconds"] = time.perf_counter() - began
    print_report(results)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)
    print(f"({results['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
