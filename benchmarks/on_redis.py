"""corral on Redis against raw redis-py, on one redis-server started here, in one run.

Both sides talk to the same redis-server (``--save "" --appendonly no``, a unix socket
in a temporary directory and a 127.0.0.1 port; ``--via`` picks which the measures use),
redis-py with hiredis on both. Each corral command is one ``FCALL corral`` round trip;
a wait that has to park takes more (its session, the FCALL that parks it, a
heartbeat, the blocking read of its mailbox, the session's close). (The file is not
redis.py: a script's own directory comes first on sys.path, so a benchmarks/redis.py
would stand in for redis-py in every script here.)

1. job cycles per second: ``c.jobs(...)`` put, claim (timeout 0), finish (result_ttl
   0, as network.py) against three sequential redis-py round trips: LPUSH the item,
   RPOP it, SET a result key. Target: >= 0.83x (within 1.2x).
2. cross-process hand-off, a consumer process against this one:
   - ping-pong: the consumer waits in ``wait_pop_next`` (raw: BLPOP), this process
     pushes one item and waits for the consumer's ack on a second list the same way;
     every item wakes a blocked waiter on each side. Target: >= 0.9x.
   - ping-pong through a job queue: the consumer waits in ``claim()``, finishes the
     job and acks; the raw consumer BLPOPs, SETs a result and acks.
   - streamed: items pushed as fast as this process can, the consumer takes them
     (``wait_pop_next`` against BLPOP), from the first push to the last item taken.
3. pushes: N ``push_back`` calls and N job ``put`` calls, one round trip each (the
   thread facade on Redis has no batch call yet), against one redis-py pipeline of N
   RPUSH; the floor of pipelining what exists, N ``FCALL corral push_back`` (and
   ``put``) in one redis-py pipeline; and a sketch of a batch call (issue 16's
   put_many), one Lua script doing push_back's per-item commands for all N, with the
   per-call part once. Target for pipelined puts: >= 0.5x.
4. end to end: this process produces, four worker processes (``corral.adapters.workers.
   Worker`` on Redis, one thread each) run N no-op jobs. After an untimed warm-up of
   16 jobs, "one at a time": put a job, wait for its result, put the next (jobs/s,
   latency p50/p99 from put to result); "all at once": put all N, then wait for each
   result in order (jobs/s). Every job's result must be its item, and every worker
   records the items it ran and reports them when it stops: each job put must have
   run exactly once. Against the least a job system on Redis can do (four redis-py
   processes in BLPOP, each result RPUSHed to a key of its job that the producer
   BLPOPs) and, when importable (the ``bench`` extra), the Python job libraries with
   the same workload, each worker process running one job at a time:
   - RQ: ``SimpleWorker`` (jobs run in the worker process, BLPOP), the job
     ``__main__.noop`` of the worker's program, ``job.latest_result(timeout=)`` (XREAD
     BLOCK on the job's result stream);
   - huey: ``RedisHuey(results=True, notify_result=True)`` (BRPOP for tasks, BLPOP for
     a result, where huey's default polls), a consumer of one thread;
   - dramatiq: ``RedisBroker`` with the ``Results`` middleware on Redis, a ``Worker``
     of one thread with ``worker_timeout`` POLL (its consumer polls, backing off to
     that), ``message.get_result(block=True)``;
   - arq: ``Worker(max_jobs=1, poll_delay=POLL)`` (it polls a sorted set) and
     ``job.result(poll_delay=POLL)``; arq pins redis-py < 6, so the bench extra leaves
     it out (pip would downgrade the tests' redis-py): ``pip install --no-deps arq``;
   - saq: ``Worker(concurrency=1)`` (BLMOVE) on a ``RedisQueue``,
     ``job.refresh(until_complete=)`` (pub/sub).
   Each is stopped the library's own graceful way when the run ends; one that is not
   installed is skipped with a note, and one that fails (a wrong result, a job that
   did not run exactly once, a time-out) is reported as failed and dropped.
   ``--e2e-only`` runs only these; ``--peers rq,huey`` only those libraries.

Every process (redis-server, this one, consumers, workers) is pinned to CPU 0 as
network.py pins them, unless ``--no-pin``. Each round runs every measure, peer then
corral, and the best round of each counts. ``--profile`` then says where a corral
job cycle's time goes: Redis's own accounting per command (``INFO commandstats``:
inner ``redis.call`` commands per FCALL and microseconds), an empty Function and
corral's own ``tick`` for the cost of an FCALL itself, CPU per cycle in this process
and in redis-server, and cProfile of the client loop.

Bounded: fixed counts, a watchdog (``--budget`` seconds) ends a run that hangs, and
the server and every process started here are stopped at the end.

    python benchmarks/on_redis.py [--n N] [--e2e N] [--rounds R] [--via unix|tcp]
                                  [--no-pin] [--profile] [--e2e-only] [--peers A,B]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import importlib.util
import io
import json
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from _common import PIN, free_port, pin_self, process, redis_missing

PREFIX = "bench"
WORKERS = 4
WARM_UP = 4 * WORKERS  # end to end: untimed jobs first, every worker up and connected
TARGETS = {"job cycles/s": 1 / 1.2, "hand-off ping-pong/s": 0.9,
           "pushes/s, push_back one call each": 0.5,
           "pushes/s, pipelined FCALL push_back (floor)": 0.5}


# -- the server ------------------------------------------------------------------------------


class Server:
    """The redis-server started here, and how each side reaches it."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, sock: str, via: str) -> None:
        self.proc, self.port, self.sock, self.via = proc, port, sock, via

    def url(self) -> str:
        """corral's URL for it (the audit's durability warning off: this is a cache)."""
        query = f"?prefix={PREFIX}&durability=none"
        if self.via == "unix":
            return f"unix://{self.sock}{query}"
        return f"redis://127.0.0.1:{self.port}/0{query}"

    def raw_url(self) -> str:
        """A redis URL for it, as the peers take one."""
        if self.via == "unix":
            return f"unix://{self.sock}"
        return f"redis://127.0.0.1:{self.port}/0"

    def kwargs(self) -> dict[str, Any]:
        """redis.Redis's arguments for it."""
        if self.via == "unix":
            return {"unix_socket_path": self.sock}
        return {"host": "127.0.0.1", "port": self.port}

    def client(self) -> Any:
        import redis

        return redis.Redis(**self.kwargs())


@contextlib.contextmanager
def redis_server(via: str) -> Iterator[Server]:
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        port, sock = free_port(), os.path.join(tmp, "r.sock")
        with process(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                      "--unixsocket", sock, "--unixsocketperm", "700", "--save", "",
                      "--appendonly", "no", "--dir", tmp], port) as proc:
            server = Server(proc, port, sock, via)
            give_up = time.monotonic() + 10
            while True:  # the unix socket comes up just after the port
                try:
                    server.client().ping()
                    break
                except Exception:
                    if time.monotonic() > give_up:
                        raise
                    time.sleep(0.05)
            yield server


def spawn(code: str, stdin: bool = False) -> subprocess.Popen[bytes]:
    """A Python process running ``code`` (pinned with the rest), which prints "ready"
    when it is."""
    proc = subprocess.Popen(PIN + [sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stdin=subprocess.PIPE if stdin else None)
    assert proc.stdout is not None
    if b"ready" not in proc.stdout.readline():
        stop(proc)
        raise RuntimeError(f"a helper process did not start: {code[:200]!r}")
    return proc


def stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if proc.stdin:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout:
        proc.stdout.close()


def repeat(n: int, call: Callable[[], Any]) -> None:
    for _ in range(n):
        call()


def rate(n: int, run: Callable[[], Any]) -> float:
    start = time.perf_counter()
    run()
    return n / (time.perf_counter() - start)


# -- 1. job cycles ---------------------------------------------------------------------------


def corral_cycles(corral: Any, n: int, r: int) -> float:
    jobs = corral.jobs(f"cycle{r}", result_ttl=0.0)
    jobs.put(-1)  # the facade's sessions and the claim session are made outside the timing
    jobs.claim(timeout=0).finish()

    def run() -> None:
        for i in range(n):
            jobs.put(i)
            jobs.claim(timeout=0).finish()

    return rate(n, run)


def raw_cycles(raw: Any, n: int, r: int) -> float:
    def run() -> None:
        for i in range(n):
            raw.lpush("raw:cycle", i)
            raw.rpop("raw:cycle")
            raw.set(f"raw:result:{i}", i)

    return rate(n, run)


# -- 2. hand-off -----------------------------------------------------------------------------

CORRAL_CONSUMER = """
from corral.adapters.client import connect
c = connect({url!r})
items = c.list({items!r})
ack = c.list({ack!r}) if {pong} else None
print("ready", flush=True)
while (v := items.wait_pop_next()) != -1:
    if {pong}:
        ack.push_back(v)
print("done", flush=True)
c.close()
"""

CORRAL_CLAIMER = """
from corral.adapters.client import connect
c = connect({url!r})
jobs, ack = c.jobs({items!r}, result_ttl=0.0), c.list({ack!r})
print("ready", flush=True)
while True:
    job = jobs.claim()
    job.finish(job.item)
    if job.item == -1:
        break
    ack.push_back(job.item)
print("done", flush=True)
c.close()
"""

RAW_CONSUMER = """
import redis
r = redis.Redis(**{kwargs!r})
print("ready", flush=True)
while (v := int(r.blpop({items!r})[1])) != -1:
    if {result}:
        r.set("raw:result", v)
    if {pong}:
        r.rpush({ack!r}, v)
print("done", flush=True)
"""


def exchange(n: int, consumer: subprocess.Popen[bytes], push: Callable[[int], Any],
             ack: Callable[[], Any] | None) -> float:
    """Items/s handed to ``consumer``: each pushed then its ack awaited (ping-pong), or
    all pushed at once (``ack`` None) until the consumer says it took them all."""
    assert consumer.stdout is not None
    try:
        start = time.perf_counter()
        for i in range(n):
            push(i)
            if ack is not None:
                ack()
        push(-1)
        assert b"done" in consumer.stdout.readline()
        return n / (time.perf_counter() - start)
    finally:
        stop(consumer)


def corral_pingpong(server: Server, corral: Any, n: int, r: int) -> float:
    items, ack = corral.list(f"pp{r}"), corral.list(f"pp-ack{r}")
    consumer = spawn(CORRAL_CONSUMER.format(url=server.url(), items=items.name,
                                            ack=ack.name, pong=True))
    return exchange(n, consumer, items.push_back, ack.wait_pop_next)


def corral_claim_pingpong(server: Server, corral: Any, n: int, r: int) -> float:
    jobs, ack = corral.jobs(f"cpp{r}", result_ttl=0.0), corral.list(f"cpp-ack{r}")
    consumer = spawn(CORRAL_CLAIMER.format(url=server.url(), items=jobs.name,
                                           ack=ack.name))
    return exchange(n, consumer, jobs.put, ack.wait_pop_next)


def corral_streamed(server: Server, corral: Any, n: int, r: int) -> float:
    items = corral.list(f"stream{r}")
    consumer = spawn(CORRAL_CONSUMER.format(url=server.url(), items=items.name, ack="",
                                            pong=False))
    return exchange(n, consumer, items.push_back, None)


def raw_handoff(server: Server, raw: Any, n: int, *, pong: bool, result: bool = False
                ) -> float:
    raw.delete("raw:items", "raw:ack")
    consumer = spawn(RAW_CONSUMER.format(kwargs=server.kwargs(), items="raw:items",
                                         ack="raw:ack", pong=pong, result=result))
    return exchange(n, consumer, lambda i: raw.rpush("raw:items", i),
                    (lambda: raw.blpop("raw:ack")) if pong else None)


# -- 3. pushes -------------------------------------------------------------------------------


def corral_pushes(corral: Any, n: int, r: int) -> float:
    lst = corral.list(f"push{r}")
    return rate(n, lambda: [lst.push_back(i) for i in range(n)])


def corral_puts(corral: Any, n: int, r: int) -> float:
    jobs = corral.jobs(f"put{r}", result_ttl=0.0)
    return rate(n, lambda: [jobs.put(i) for i in range(n)])


def fcall_pipelined(corral: Any, raw: Any, n: int, r: int, op: str) -> float:
    """The floor of a batch call: N ``FCALL corral <op>`` in one redis-py pipeline, the
    arguments built as RedisKernel builds them (its internals: keys and packing)."""
    from corral.transports.redis_backend import RedisKernel, _pack

    name = f"fcall-{op}{r}"
    if op == "push_back":
        corral.list(name)
    else:
        corral.jobs(name, result_ttl=0.0)
    keys = RedisKernel(raw, prefix=PREFIX)._keys(name)

    def run() -> None:
        pipe = raw.pipeline(transaction=False)
        for i in range(n):
            extra = (0, "0.0", "") if op == "put" else ()
            pipe.fcall("corral", len(keys), *keys, op, "server", _pack(i, None), *extra)
        pipe.execute()

    return rate(n, run)


# What a batch push could cost in Lua: one script that does, for all N items, what
# ``FCALL corral push_back`` does for one (lists.lua: dispatch, clock and due timers once,
# then per item a record id, its value, its place and the waiter check). A sketch on
# keys of its own, not corral's code.
BATCH_SKETCH = """
local kind = redis.call("HGET", KEYS[1], "kind")
local t = redis.call("TIME")
local now = string.format("%.17g", tonumber(t[1]) + tonumber(t[2]) / 1e6)
redis.call("HGET", KEYS[1], "now")
redis.call("HSET", KEYS[1], "now", now)
redis.call("ZRANGEBYSCORE", KEYS[5], "-inf", now, "LIMIT", 0, 1)
for i = 1, #ARGV do
  local id = redis.call("HINCRBY", KEYS[1], "seq", 1)
  redis.call("HSET", KEYS[3], id, ARGV[i])
  redis.call("RPUSH", KEYS[2], id)
  redis.call("LLEN", KEYS[4])
end
return #ARGV
"""


def batch_sketch(raw: Any, n: int, r: int) -> float:
    from corral.transports.redis_backend import _pack

    script = raw.register_script(BATCH_SKETCH)
    keys = [f"sketch{r}:{{s}}:{k}" for k in ("meta", "o", "v", "w", "tm")]
    return rate(n, lambda: script(keys, [_pack(i, None) for i in range(n)]))


def raw_pipelined(raw: Any, n: int, r: int) -> float:
    def run() -> None:
        pipe = raw.pipeline(transaction=False)
        for i in range(n):
            pipe.rpush(f"raw:pipe{r}", i)
        pipe.execute()

    return rate(n, run)


# -- 4. end to end ---------------------------------------------------------------------------

# Every worker process, corral's, the raw one's and each library's, starts with this: its
# job function records each item it runs in ``ran``, and when its stdin closes the
# process stops its worker the library's own graceful way (``stop_on_eof``) and prints
# what it ran, which the producer checks: every job put ran exactly once.
WORKER_PRELUDE = """
import json, os, signal, sys, threading
ran = []

def stop_on_eof(stop):
    def wait():
        sys.stdin.read()
        stop()
    threading.Thread(target=wait, daemon=True).start()

def signal_self(signum):
    return lambda: os.kill(os.getpid(), signum)

def report():
    print("ran " + json.dumps(ran), flush=True)
"""

CORRAL_WORKER = WORKER_PRELUDE + """
from corral.adapters.workers import Worker

def noop(item):
    ran.append(item)
    return item

w = Worker({name!r}, noop, corral={url!r}).start()
print("ready", flush=True)
sys.stdin.read()
w.stop(5)
report()
"""

RAW_WORKER = WORKER_PRELUDE + """
import redis
r = redis.Redis(**{kwargs!r})
print("ready", flush=True)
while (v := r.blpop({queue!r})[1]) != b"stop":
    id, _, item = v.partition(b"|")
    ran.append(int(item))
    r.rpush({results!r} + id.decode(), item)
report()
"""


def percentile(sorted_values: list[float], p: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


def end_to_end(n: int, put: Callable[[int], Any], result: Callable[[Any], Any]
               ) -> dict[str, float]:
    """Untimed, a warm-up of a few jobs put at once (items 2n and up: every worker
    process up and connected, the producer's connections made); then one job at a time
    (items 0 to n-1: rate and latency from put to result), then all n put before any
    result is read (items n to 2n-1). Each job's result must be its item."""
    warm = [put(2 * n + i) for i in range(WARM_UP)]
    for i, handle in enumerate(warm):
        if result(handle) != 2 * n + i:
            raise AssertionError(f"warm-up job {2 * n + i}: wrong result")
    latencies = []
    start = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        if result(put(i)) != i:
            raise AssertionError(f"job {i}: wrong result")
        latencies.append(time.perf_counter() - t)
    one = n / (time.perf_counter() - start)
    start = time.perf_counter()
    handles = [put(n + i) for i in range(n)]
    for i, handle in enumerate(handles):
        if result(handle) != n + i:
            raise AssertionError(f"job {n + i}: wrong result")
    every = n / (time.perf_counter() - start)
    latencies.sort()
    return {"one at a time, jobs/s": one, "p50 ms": percentile(latencies, 0.5) * 1e3,
            "p99 ms": percentile(latencies, 0.99) * 1e3, "all at once, jobs/s": every}


class Pool:
    """The worker processes of one end-to-end run and, once they have stopped, the
    items each ran."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ran: list[int] = []

    def check_exactly_once(self, n: int) -> None:
        """Every job put by ``end_to_end(n, ...)`` ran exactly once, in one of the
        workers."""
        counts = Counter(self.ran)
        expected = range(2 * n + WARM_UP)
        missing = [i for i in expected if counts[i] == 0]
        twice = sorted(i for i, k in counts.items() if k > 1)
        stray = sorted(set(counts) - set(expected))
        if missing or twice or stray:
            raise AssertionError(f"not exactly once: {len(missing)} jobs never ran "
                                 f"{missing[:5]}, {len(twice)} ran more than once "
                                 f"{twice[:5]}, {len(stray)} not put {stray[:5]}")


@contextlib.contextmanager
def workers(codes: list[str], grace: float = 10.0) -> Iterator[Pool]:
    """Worker processes (``WORKER_PRELUDE`` programs), each told to stop when the block
    ends by closing its stdin (the raw workers by an item on their queue, put first);
    what each ran is read from its last line. One that has not stopped after ``grace``
    seconds is terminated, then killed, and its jobs count as never run."""
    pool = Pool()
    try:
        for code in codes:
            pool.procs.append(spawn(code, stdin=True))
        yield pool
    finally:
        for proc in pool.procs:  # all at once: they stop side by side
            if proc.stdin:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
                proc.stdin = None  # (communicate() would flush it)
        give_up = time.monotonic() + grace
        for proc in pool.procs:
            assert proc.stdout is not None
            try:
                out, _ = proc.communicate(timeout=max(0.1, give_up - time.monotonic()))
            except subprocess.TimeoutExpired:
                stop(proc, grace=2.0)
                continue
            for line in out.splitlines():
                if line.startswith(b"ran "):
                    pool.ran.extend(json.loads(line[4:]))


def corral_e2e(server: Server, corral: Any, n: int, r: int) -> dict[str, float]:
    jobs = corral.jobs(f"e2e{r}", result_ttl=60.0)
    code = CORRAL_WORKER.format(name=jobs.name, url=server.url())
    with workers([code] * WORKERS) as pool:
        give_up = time.monotonic() + 10  # each worker parked in claim() first
        while jobs.statistics().waiters < WORKERS and time.monotonic() < give_up:
            time.sleep(0.01)
        result = end_to_end(n, jobs.put, lambda id: jobs.result(id, timeout=30))
    pool.check_exactly_once(n)
    return result


def raw_e2e(server: Server, raw: Any, n: int, r: int) -> dict[str, float]:
    queue, results = f"raw:e2e{r}", f"raw:e2e{r}:result:"
    code = RAW_WORKER.format(kwargs=server.kwargs(), queue=queue, results=results)
    ids = iter(range(10 ** 9))
    with workers([code] * WORKERS) as pool:
        def put(i: int) -> int:
            id = next(ids)
            raw.rpush(queue, f"{id}|{i}")
            return id

        def result(id: int) -> int:
            got = raw.blpop(f"{results}{id}", timeout=30)
            if got is None:
                raise TimeoutError(f"raw job {id}: no result in 30 s")
            return int(got[1])

        try:
            outcome = end_to_end(n, put, result)
        finally:
            raw.rpush(queue, *[b"stop"] * WORKERS)
    pool.check_exactly_once(n)
    return outcome


# Peers: each library's worker process and producer, with the same workload: one worker
# process running one job at a time, results kept and waited for the library's own way.
# Where a library polls Redis instead of blocking, its poll interval is POLL (the
# libraries' defaults are 0.5 s to 1 s; this is the low-latency end of their settings).
POLL = 0.005

RQ_WORKER = WORKER_PRELUDE + """
import redis
from rq import Queue, SimpleWorker

def noop(x):  # the job function, "__main__.noop": this program is the worker's __main__
    ran.append(x)
    return x

conn = redis.Redis(**{kwargs!r})
worker = SimpleWorker([Queue({queue!r}, connection=conn)], connection=conn)
stop_on_eof(signal_self(signal.SIGTERM))  # SIGTERM: RQ's warm shutdown
print("ready", flush=True)
worker.work(logging_level="WARNING")
report()
"""

HUEY_TASKS = """
from huey import RedisHuey
huey = RedisHuey({queue!r}, results=True, url={url!r}, notify_result=True)

@huey.task(name="noop")
def noop(x):
    ran.append(x)
    return x
"""

HUEY_WORKER = WORKER_PRELUDE + HUEY_TASKS + """
consumer = huey.create_consumer(workers=1, worker_type="thread")
stop_on_eof(signal_self(signal.SIGINT))  # SIGINT: huey's graceful shutdown
print("ready", flush=True)
consumer.run()
report()
"""

DRAMATIQ_ACTORS = """
import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend
broker = RedisBroker(url={url!r})
broker.add_middleware(Results(backend=RedisBackend(url={url!r})))
dramatiq.set_broker(broker)

@dramatiq.actor(actor_name="noop", queue_name={queue!r}, store_results=True, max_retries=0)
def noop(x):
    ran.append(x)
    return x
"""

DRAMATIQ_WORKER = WORKER_PRELUDE + DRAMATIQ_ACTORS + """
worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout={poll_ms})
worker.start()
print("ready", flush=True)
sys.stdin.read()
worker.stop()
broker.close()
report()
"""

ARQ_WORKER = WORKER_PRELUDE + """
from arq.connections import RedisSettings
from arq.worker import Worker

async def noop(ctx, x):
    ran.append(x)
    return x

worker = Worker(functions=[noop], redis_settings=RedisSettings(**{settings!r}),
                queue_name={queue!r}, max_jobs=1, poll_delay={poll})
stopped = threading.Event()

def stop():  # SIGTERM: arq's handler cancels its main task. Under redis-py 6 and later
    while True:  # (arq pins redis-py < 6) that cancellation is now and then lost: again
        os.kill(os.getpid(), signal.SIGTERM)
        if stopped.wait(1):
            return

stop_on_eof(stop)
print("ready", flush=True)
worker.run()
stopped.set()
report()
"""

SAQ_WORKER = WORKER_PRELUDE + """
import asyncio
from redis.asyncio import Redis
from saq import Worker
from saq.queue.redis import RedisQueue

import logging
logging.getLogger("saq").setLevel(logging.ERROR)  # its stop cancels the idle dequeue, at WARNING

async def noop(ctx, *, x):
    ran.append(x)
    return x

async def main():  # (saq's Queue.from_url takes no unix:// URL: its RedisQueue, on a client)
    queue = RedisQueue(Redis(**{kwargs!r}), name={queue!r})
    worker = Worker(queue, functions=[noop], concurrency=1)
    stop_on_eof(signal_self(signal.SIGTERM))  # saq's handler stops the worker
    print("ready", flush=True)
    await worker.start()
    await queue.disconnect()

asyncio.run(main())
report()
"""


def rq_e2e(server: Server, n: int, r: int) -> dict[str, float]:
    from rq import Queue

    conn = server.client()
    queue = Queue(f"rq{r}", connection=conn)
    code = RQ_WORKER.format(kwargs=server.kwargs(), queue=queue.name)

    def result(job: Any) -> Any:
        got = job.latest_result(timeout=30)
        if got is None:
            raise TimeoutError(f"rq job {job.id}: no result in 30 s")
        return got.return_value

    try:
        with workers([code] * WORKERS) as pool:
            outcome = end_to_end(n, lambda i: queue.enqueue("__main__.noop", i), result)
    finally:
        conn.close()
    pool.check_exactly_once(n)
    return outcome


def huey_e2e(server: Server, n: int, r: int) -> dict[str, float]:
    tasks = HUEY_TASKS.format(queue=f"huey{r}", url=server.raw_url())
    scope: dict[str, Any] = {"__name__": "__main__", "ran": []}
    exec(tasks, scope)  # the same task, registered under the same name, on both sides
    noop = scope["noop"]
    code = HUEY_WORKER.format(queue=f"huey{r}", url=server.raw_url())
    try:
        with workers([code] * WORKERS) as pool:
            outcome = end_to_end(n, noop, lambda res: res.get(blocking=True, timeout=30))
    finally:
        scope["huey"].storage.pool.disconnect()
    pool.check_exactly_once(n)
    return outcome


def dramatiq_e2e(server: Server, n: int, r: int) -> dict[str, float]:
    url, queue = server.raw_url(), f"dramatiq{r}"
    scope: dict[str, Any] = {"__name__": "__main__", "ran": []}
    exec(DRAMATIQ_ACTORS.format(url=url, queue=queue), scope)
    noop = scope["noop"]
    code = DRAMATIQ_WORKER.format(url=url, queue=queue, poll_ms=int(POLL * 1000))
    try:
        with workers([code] * WORKERS) as pool:
            outcome = end_to_end(n, noop.send, lambda message: message.get_result(
                block=True, timeout=30_000))
    finally:
        scope["broker"].close()
    pool.check_exactly_once(n)
    return outcome


def arq_e2e(server: Server, n: int, r: int) -> dict[str, float]:
    from arq.connections import RedisSettings, create_pool

    settings = ({"unix_socket_path": server.sock} if server.via == "unix"
                else {"host": "127.0.0.1", "port": server.port})
    queue = f"arq{r}"
    code = ARQ_WORKER.format(settings=settings, queue=queue, poll=POLL)
    loop = asyncio.new_event_loop()
    pool = loop.run_until_complete(create_pool(RedisSettings(**settings)))

    def put(i: int) -> Any:
        return loop.run_until_complete(pool.enqueue_job("noop", i, _queue_name=queue))

    def result(job: Any) -> Any:
        return loop.run_until_complete(job.result(timeout=30, poll_delay=POLL))

    try:
        with workers([code] * WORKERS) as processes:
            outcome = end_to_end(n, put, result)
    finally:
        loop.run_until_complete(pool.aclose())
        loop.close()
    processes.check_exactly_once(n)
    return outcome


def saq_e2e(server: Server, n: int, r: int) -> dict[str, float]:
    from redis.asyncio import Redis
    from saq.queue.redis import RedisQueue

    name = f"saq{r}"
    loop = asyncio.new_event_loop()
    queue = RedisQueue(Redis(**server.kwargs()), name=name)
    loop.run_until_complete(queue.connect())

    def put(i: int) -> Any:
        return loop.run_until_complete(queue.enqueue("noop", x=i))

    def result(job: Any) -> Any:
        # refresh(until_complete=) reads the job, then subscribes to its notifications,
        # and unsubscribes after: a job that completes in between is only seen by the
        # next refresh, so wait a second at a time (30 at most).
        for _ in range(30):
            with contextlib.suppress(TimeoutError):
                loop.run_until_complete(job.refresh(until_complete=1))
            if job.status == "complete":
                return job.result
            if job.status in ("failed", "aborted"):
                raise RuntimeError(f"saq job {job.key}: {job.status}: {job.error}")
        raise TimeoutError(f"saq job {job.key}: {job.status} after 30 s")

    try:
        with workers([SAQ_WORKER.format(kwargs=server.kwargs(), queue=name)] * WORKERS) as pool:
            outcome = end_to_end(n, put, result)
    finally:
        loop.run_until_complete(queue.disconnect())
        loop.close()
    pool.check_exactly_once(n)
    return outcome


PEERS: dict[str, tuple[str, Callable[[Server, int, int], dict[str, float]]]] = {
    "RQ": ("rq", rq_e2e), "huey": ("huey", huey_e2e), "dramatiq": ("dramatiq", dramatiq_e2e),
    "arq": ("arq", arq_e2e), "saq": ("saq", saq_e2e)}


# -- rounds and report -----------------------------------------------------------------------


def keep_best(into: dict[str, float], key: str, value: float) -> None:
    into[key] = max(into.get(key, 0.0), value)


def keep_best_e2e(into: dict[str, dict[str, float]], key: str, result: dict[str, float]
                  ) -> None:
    """The round with the best one-at-a-time rate keeps its latencies; the all-at-once
    rate is the best of any round."""
    old = into.get(key)
    best_all = max(result["all at once, jobs/s"], old["all at once, jobs/s"] if old else 0.0)
    if old is None or result["one at a time, jobs/s"] > old["one at a time, jobs/s"]:
        into[key] = dict(result)
    into[key]["all at once, jobs/s"] = best_all


def run_rounds(server: Server, corral: Any, raw: Any, n: int, n_e2e: int, rounds: int,
               e2e_only: bool = False, peers_wanted: list[str] | None = None
               ) -> tuple[dict[str, float], dict[str, float], dict[str, Any]]:
    ours: dict[str, float] = {}
    peers: dict[str, float] = {}
    e2e: dict[str, Any] = {}
    n_pp = max(1, n // 2)
    for name, (module, _) in PEERS.items():
        if peers_wanted is not None and name.lower() not in peers_wanted:
            e2e[name] = "not asked for (--peers)"
        elif importlib.util.find_spec(module) is None:
            e2e[name] = f"{module} not importable in this environment"
    for r in range(rounds):
        if e2e_only:
            run_e2e_round(server, corral, raw, n_e2e, r, e2e)
            continue
        keep_best(peers, "cycles", raw_cycles(raw, n, r))
        keep_best(ours, "job cycles/s", corral_cycles(corral, n, r))
        keep_best(peers, "pingpong", raw_handoff(server, raw, n_pp, pong=True))
        keep_best(ours, "hand-off ping-pong/s", corral_pingpong(server, corral, n_pp, r))
        keep_best(peers, "claim pingpong", raw_handoff(server, raw, n_pp, pong=True,
                                                       result=True))
        keep_best(ours, "hand-off ping-pong via claim/s",
                  corral_claim_pingpong(server, corral, n_pp, r))
        keep_best(peers, "streamed", raw_handoff(server, raw, n, pong=False))
        keep_best(ours, "hand-off streamed/s", corral_streamed(server, corral, n, r))
        keep_best(peers, "pipelined", raw_pipelined(raw, n, r))
        keep_best(ours, "pushes/s, push_back one call each", corral_pushes(corral, n, r))
        keep_best(ours, "pushes/s, job put one call each", corral_puts(corral, n, r))
        keep_best(ours, "pushes/s, pipelined FCALL push_back (floor)",
                  fcall_pipelined(corral, raw, n, r, "push_back"))
        keep_best(ours, "pushes/s, pipelined FCALL put (floor)",
                  fcall_pipelined(corral, raw, n, r, "put"))
        keep_best(ours, "pushes/s, one script of N push_back (sketch)",
                  batch_sketch(raw, n, r))
        run_e2e_round(server, corral, raw, n_e2e, r, e2e)
    return ours, peers, e2e


def run_e2e_round(server: Server, corral: Any, raw: Any, n: int, r: int,
                  e2e: dict[str, Any]) -> None:
    keep_best_e2e(e2e, RAW_E2E, raw_e2e(server, raw, n, r))
    keep_best_e2e(e2e, CORRAL_E2E, corral_e2e(server, corral, n, r))
    for name, (_, bench) in PEERS.items():
        if isinstance(e2e.get(name), str):
            continue
        try:
            keep_best_e2e(e2e, name, bench(server, n, r))
        except Exception as error:  # a peer that fails: say so, go on with the rest
            e2e[name] = f"failed: {type(error).__name__}: {error}"


RAW_E2E, CORRAL_E2E = "raw redis-py (BLPOP)", "corral Worker"
PAIRS = [  # corral measure, peer measure, peer's name
    ("job cycles/s", "cycles", "LPUSH+RPOP+SET"),
    ("hand-off ping-pong/s", "pingpong", "BLPOP ping-pong"),
    ("hand-off ping-pong via claim/s", "claim pingpong", "BLPOP+SET ping-pong"),
    ("hand-off streamed/s", "streamed", "RPUSH -> BLPOP"),
    ("pushes/s, push_back one call each", "pipelined", "pipelined RPUSH"),
    ("pushes/s, job put one call each", "pipelined", "pipelined RPUSH"),
    ("pushes/s, pipelined FCALL push_back (floor)", "pipelined", "pipelined RPUSH"),
    ("pushes/s, pipelined FCALL put (floor)", "pipelined", "pipelined RPUSH"),
    ("pushes/s, one script of N push_back (sketch)", "pipelined", "pipelined RPUSH"),
]


def report(ours: dict[str, float], peers: dict[str, float], e2e: dict[str, Any]) -> None:
    for measure, peer, peer_name in PAIRS:
        if measure not in ours:  # --e2e-only
            continue
        ratio = ours[measure] / peers[peer]
        line = (f"{measure:<45} corral {ours[measure]:>9,.0f}   {peer_name:<20}"
                f"{peers[peer]:>9,.0f}   ratio {ratio:.2f}x")
        target = TARGETS.get(measure)
        if target is not None:
            line += f"   target >= {target:.2f}x: {'met' if ratio >= target else 'NOT met'}"
        print(line)
    print(f"end to end, {WORKERS} worker processes, no-op jobs, each checked to run exactly "
          "once; ratios one at a time / all at once: corral to the raw floor, and corral "
          "to each library (above 1: corral is faster):")
    ours_e2e = e2e.get(CORRAL_E2E)
    for name in [RAW_E2E, CORRAL_E2E, *PEERS]:
        result = e2e.get(name)
        if isinstance(result, str):
            print(f"  (skipped {name}: {result})")
            continue
        if result is None:
            continue
        one, every = result["one at a time, jobs/s"], result["all at once, jobs/s"]
        line = (f"  {name:<20} one at a time {one:>6,.0f} jobs/s (p50 {result['p50 ms']:5.2f}"
                f" ms, p99 {result['p99 ms']:6.2f} ms), all at once {every:>6,.0f} jobs/s")
        if isinstance(ours_e2e, dict) and result is not ours_e2e:
            line += (f"   corral/this {ours_e2e['one at a time, jobs/s'] / one:5.2f}x / "
                     f"{ours_e2e['all at once, jobs/s'] / every:5.2f}x")
        print(line)


# -- profile ---------------------------------------------------------------------------------

NOOP_LIBRARY = """#!lua name=corralbench
redis.register_function('noop', function(keys, args) return 1 end)
"""


def _cpu_ns(pid: int | str) -> int:
    """Nanoseconds a process's main thread has run (/proc schedstat: Linux only)."""
    with open(f"/proc/{pid}/schedstat") as stat:
        return int(stat.read().split()[0])


def _costs(n: int, server: Server, run: Callable[[], Any]) -> str:
    """Microseconds per iteration of ``run`` (n of them): wall, this process's CPU,
    redis-server's CPU, and the rest (neither running: switches and waits)."""
    s0, c0, w0 = _cpu_ns(server.proc.pid), _cpu_ns("self"), time.perf_counter_ns()
    run()
    w1, c1, s1 = time.perf_counter_ns(), _cpu_ns("self"), _cpu_ns(server.proc.pid)
    wall, mine, theirs = (w1 - w0) / n / 1e3, (c1 - c0) / n / 1e3, (s1 - s0) / n / 1e3
    return (f"wall {wall:6.1f}   client CPU {mine:6.1f}   server CPU {theirs:6.1f}   "
            f"rest {wall - mine - theirs:6.1f}")


def profile(server: Server, corral: Any, raw: Any, n: int) -> None:
    """Where a corral job cycle's time goes."""
    from corral.kernel import Empty
    from corral.transports.redis_backend import RedisKernel

    print("\nwhere a corral job cycle's time goes (microseconds):")
    jobs = corral.jobs("profile", result_ttl=0.0)
    jobs.put(-1)
    jobs.claim(timeout=0).finish()
    held: list[Any] = []
    steps: dict[str, Callable[[int], Any]] = {
        "put": jobs.put, "claim": lambda i: held.append(jobs.claim(timeout=0)),
        "finish": lambda i: held.pop().finish()}
    print("  in Redis, per FCALL (INFO commandstats; inner: the redis.call commands it ran):")
    for op, step in steps.items():
        raw.config_resetstat()
        for i in range(n):
            step(i)
        stats = raw.info("commandstats")
        fcall = stats["cmdstat_fcall"]
        inner = {key[8:]: value for key, value in stats.items()
                 if key not in ("cmdstat_fcall", "cmdstat_config|resetstat")}
        calls = sum(v["calls"] for v in inner.values()) / fcall["calls"]
        inner_us = sum(v["usec"] for v in inner.values()) / fcall["calls"]
        top = sorted(inner.items(), key=lambda kv: -kv[1]["calls"])[:6]
        print(f"    FCALL {op:<7} {fcall['usec_per_call']:5.1f} in all; inner: {calls:4.1f} "
              f"commands, {inner_us:4.1f} (" + ", ".join(
                  f"{k} {v['calls'] / fcall['calls']:.0f}" for k, v in top) + ")")
    raw.function_load(NOOP_LIBRARY, replace=True)
    keys = RedisKernel(raw, prefix=PREFIX)._keys("profile")
    alone = {
        "SET (a plain command)": lambda: raw.set("raw:x", 1),
        "FCALL of an empty function, 6 keys": lambda: raw.fcall("noop", 6, *keys),
        "FCALL corral tick (dispatch, clock, timers)":
            lambda: raw.fcall("corral", len(keys), *keys, "tick", "server"),
        "jobs.put through the facade": lambda: jobs.put(0),
    }
    print("  one round trip, alone:")
    for label, call in alone.items():
        print(f"    {label:<44} " + _costs(n, server, partial(repeat, n, call)))
    with contextlib.suppress(Empty):  # the puts above, taken
        while True:
            jobs.claim(timeout=0).finish()

    def corral_loop() -> None:
        for i in range(n):
            jobs.put(i)
            jobs.claim(timeout=0).finish()

    def raw_loop() -> None:
        for i in range(n):
            raw.lpush("raw:cycle", i)
            raw.rpop("raw:cycle")
            raw.set(f"raw:result:{i}", i)

    print("  a whole cycle:")
    for label, loop in (("corral put + claim + finish", corral_loop),
                        ("raw LPUSH + RPOP + SET", raw_loop)):
        print(f"    {label:<44} " + _costs(n, server, loop))
    profiler = cProfile.Profile()
    profiler.enable()
    corral_loop()
    profiler.disable()
    stats = pstats.Stats(profiler)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    split = {"corral's Python": 0.0, "redis-py's Python": 0.0,
             "socket send/recv (pinned: holds the server's turn)": 0.0, "the rest": 0.0}
    for (file, _, func), (_, _, own, *_) in stats.stats.items():  # type: ignore[attr-defined]
        if file.startswith(root + os.sep) and ".venv" not in file:
            split["corral's Python"] += own
        elif f"{os.sep}redis{os.sep}" in file:
            split["redis-py's Python"] += own
        elif "_socket.socket" in func:
            split["socket send/recv (pinned: holds the server's turn)"] += own
        else:
            split["the rest"] += own
    print("  cProfile of the cycle loop, own time per cycle (the profiler inflates Python):")
    print("    " + ",  ".join(f"{k} {v / n * 1e6:.0f}" for k, v in split.items()))
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(f"{root}{os.sep}(adapters|transports|kernel)", 8)
    body = out.getvalue().splitlines()
    start = next(i for i, line in enumerate(body) if "ncalls" in line)
    print("    corral's functions by own time:")
    for line in body[start:]:
        if line.strip():
            print("      " + line.strip().replace(root + os.sep, "")[:140])


# -- main ------------------------------------------------------------------------------------


class Overtime(Exception):
    pass


def _overtime(signum: int, frame: Any) -> None:
    raise Overtime("the run took longer than --budget seconds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000,
                        help="operations per measure (hand-off ping-pong: half of it)")
    parser.add_argument("--e2e", type=int, default=500, help="jobs per end-to-end run")
    parser.add_argument("--rounds", type=int, default=3,
                        help="best of this many rounds, corral and peers interleaved")
    parser.add_argument("--via", choices=("unix", "tcp"), default="unix",
                        help="how every client reaches redis-server")
    parser.add_argument("--no-pin", action="store_true",
                        help="let the server and every process run on any CPU")
    parser.add_argument("--profile", action="store_true",
                        help="then say where a corral job cycle's time goes")
    parser.add_argument("--budget", type=float, default=600,
                        help="seconds after which a hung run gives up")
    parser.add_argument("--e2e-only", action="store_true",
                        help="run only the end-to-end measures (4.)")
    parser.add_argument("--peers", type=lambda s: [p.strip().lower() for p in s.split(",")],
                        default=None, help="end to end, only these job libraries "
                        "(comma-separated: " + ",".join(PEERS).lower() + "); default all")
    args = parser.parse_args()
    missing = redis_missing()
    if missing:
        sys.exit(f"skipped: {missing}")
    if args.no_pin:
        PIN.clear()
    pin_self()
    signal.signal(signal.SIGALRM, _overtime)
    signal.alarm(int(args.budget))
    from corral.adapters.client import connect

    began = time.perf_counter()
    print(f"{args.n:,} operations per measure, {args.e2e:,} jobs end to end, best of "
          f"{args.rounds}, over {'a unix socket' if args.via == 'unix' else '127.0.0.1'}"
          + ("; every process on CPU 0" if PIN else "; not pinned"))
    with redis_server(args.via) as server:
        raw = server.client()
        print(f"redis-server {raw.info('server')['redis_version']}, redis-py with hiredis")
        with connect(server.url()) as corral:
            ours, peers, e2e = run_rounds(server, corral, raw, args.n, args.e2e, args.rounds,
                                          args.e2e_only, args.peers)
            report(ours, peers, e2e)
            if args.profile and not args.e2e_only:
                profile(server, corral, raw, args.n)
        raw.close()
    signal.alarm(0)
    print(f"({time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
