"""Over a real connection, the promises the embedded facades keep: cancelling or
interrupting a wait loses nothing, reopening a container takes no new server handle,
and clients and workers outlive a server restart."""

from __future__ import annotations

import dis
import inspect
import random
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

import pytest
import trio
import zmq
from conftest import serving, start, wait_until

from corral.adapters.client import Reconnect, connect, open_client
from corral.adapters.workers import Tasks, push_task, task_result
from corral.kernel import Closed, Empty, Job, JobState

KINDS = ("list", "queue", "jobs")
ITEMS = 300


def _stored(corral: Any, kind: str) -> list[Any]:
    """What is still in the container: items of a list or queue, ready jobs."""
    if kind == "list":
        return [r.value for r in corral.list("c").query()]
    if kind == "queue":
        queue, items = corral.queue("c"), []
        while True:
            try:
                items.append(queue.get(timeout=0))
            except Empty:
                return items
    jobs = corral.jobs("c")
    stored = []
    while True:
        try:
            stored.append(jobs.claim(timeout=0).item)
        except Empty:
            return stored


def _account(produced: list[Any], got: list[Any], stored: list[Any]) -> None:
    assert len(got) == len(set(got)), "an item was taken twice"
    assert set() == set(got) & set(stored), "an item was taken and is still stored"
    assert sorted(produced) == sorted(got + stored), "an item was lost"


@pytest.mark.parametrize("transport", ["tcp", "zmq"])
@pytest.mark.parametrize("kind", KINDS)
def test_trio_cancellation_storm_loses_nothing(transport: str, kind: str) -> None:
    """A trio consumer cancels its waits after 1-3 ms while a producer feeds items:
    every item is taken once or still stored, and trio does not crash."""
    rng = random.Random(11)

    async def main(url: str) -> tuple[list[Any], list[Any]]:
        got: list[Any] = []
        async with open_client(url) as consumer, open_client(url) as producer:
            if kind == "list":
                source: Any = await producer.list("c")
                take: Any = (await consumer.list("c")).wait_pop_next
                put: Any = source.push_back
            elif kind == "queue":
                take = (await consumer.queue("c")).get
                put = (await producer.queue("c")).put
            else:
                take = (await consumer.jobs("c")).claim
                put = (await producer.jobs("c")).put
            done = trio.Event()

            async def produce() -> None:
                for i in range(ITEMS):
                    await put(i)
                    if i % 7 == 0:
                        await trio.sleep(0.001)
                done.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(produce)
                with trio.fail_after(60):
                    while not done.is_set():
                        with trio.move_on_after(rng.uniform(0.001, 0.003)):
                            item = await take()
                            if isinstance(item, Job):  # taken once it is finished
                                with trio.CancelScope(shield=True):
                                    await item.finish()
                                item = item.item
                            got.append(item)
        return got, list(range(ITEMS))

    with serving() as urls:
        url = getattr(urls, transport)
        got, produced = trio.run(main, url)
        with connect(url) as corral:
            _account(produced, got, _stored(corral, kind))


@pytest.mark.parametrize("transport", ["tcp", "zmq"])
@pytest.mark.parametrize("kind", KINDS)
def test_thread_interrupt_storm_loses_nothing(transport: str, kind: str) -> None:
    """A consumer thread waits without a timeout while another thread interrupts it
    at random and a producer feeds items: every item is taken once or still stored."""
    rng = random.Random(5)
    with serving() as urls, connect(getattr(urls, transport)) as consumer, \
            connect(getattr(urls, transport)) as producer:
        if kind == "list":
            take: Any = consumer.list("c").wait_pop_next
            put: Any = producer.list("c").push_back
        elif kind == "queue":
            take, put = consumer.queue("c").get, producer.queue("c").put
        else:
            take, put = consumer.jobs("c").claim, producer.jobs("c").put
        got: list[Any] = []
        stop = threading.Event()

        def consume() -> None:
            while not stop.is_set():
                try:
                    item = take()
                except Empty:
                    continue
                if isinstance(item, Job):  # taken once it is finished
                    item.finish()
                    item = item.item
                got.append(item)

        thread = start(consume)
        for i in range(ITEMS):
            put(i)
            if i % 3 == 0:
                consumer.interrupt(thread)
                time.sleep(rng.uniform(0, 0.001))
        stop.set()
        for _ in range(100):  # bounded: its wait ends at the next interrupt
            consumer.interrupt(thread)
            thread.join(0.05)
            if not thread.is_alive():
                break
        assert not thread.is_alive()
        _account(list(range(ITEMS)), got, _stored(producer, kind))


def _blocking_calls(function: Any, text: str) -> tuple[CodeType, set[int]]:
    """The code of ``function`` and the offsets of its calls on the line holding
    ``text``: where a thread is while it blocks there."""
    code = function.__code__
    source, first = inspect.getsourcelines(function)
    line = first + next(i for i, s in enumerate(source) if text in s)
    return code, {i.offset for i in dis.get_instructions(code)
                  if i.opname.startswith(("CALL", "PRECALL")) and i.positions
                  and i.positions.lineno == line}


@contextmanager
def _interrupted_while_parked() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt as a Ctrl-C does while a wait is parked: in the
    poll that blocks on the socket, and nowhere else. (One that lands after a read
    returned cuts the stream, and the client drops the connection: at-most-once, as
    any loss; nor can a library hand back a value a call returned.)"""
    from corral.transports.remote import SocketWire
    from corral.transports.zeromq import ZmqWire

    tcp_code, tcp_offsets = _blocking_calls(SocketWire.recv, "self._poll.poll(")

    def handler(signum: int, frame: FrameType | None) -> None:
        if frame is None:
            return
        if frame.f_code is tcp_code and frame.f_lasti in tcp_offsets:
            raise KeyboardInterrupt  # in TCP's poll
        if frame.f_code is zmq.Poller.poll.__code__ and frame.f_back is not None and (
                frame.f_back.f_code is ZmqWire.recv.__code__):
            raise KeyboardInterrupt  # in ZeroMQ's poll (pyzmq's own Python frame)
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("transport", ["tcp", "zmq"])
def test_keyboard_interrupts_while_parked_lose_nothing(transport: str) -> None:
    """Ctrl-C while the main thread is parked in wait_pop_next, as an item arrives for
    it: each interrupted wait is withdrawn or gives its item back, nothing is lost."""
    rng = random.Random(3)
    with serving() as urls, connect(getattr(urls, transport)) as consumer, \
            connect(getattr(urls, transport)) as producer:
        lst, source = consumer.list("c"), producer.list("c")
        got: list[Any] = []
        interrupts = 0
        with _interrupted_while_parked():
            for i in range(150):
                push = threading.Timer(rng.uniform(0, 0.003), source.push_back, (i,))
                ctrl_c = threading.Timer(rng.uniform(0, 0.003), signal.pthread_kill,
                                         (threading.main_thread().ident, signal.SIGINT))
                push.start()
                ctrl_c.start()
                try:
                    got.append(lst.wait_pop_next(timeout=5))
                except KeyboardInterrupt:
                    interrupts += 1
                push.join(10)
                ctrl_c.join(10)
        assert interrupts > 0
        _account(list(range(150)), got, _stored(producer, "list"))


def test_reopening_containers_takes_no_new_handles() -> None:
    """5,000 reopens of one container and 4,500 named tasks on one connection: each
    name keeps its one server handle."""
    tasks = Tasks()
    tasks.task(lambda x: x * 2, name="double")
    with serving() as urls, connect(urls.tcp) as client:
        for i in range(5000):
            client.jobs("reopened").put(i)
        assert 5000 == client.jobs("reopened").statistics().ready
        with tasks.worker("tasks", corral=urls.tcp, concurrency=4):
            ids = [push_task("double", i, corral=client) for i in range(4500)]
            assert [i * 2 for i in range(4500)] == [
                task_result(id, timeout=30, corral=client) for id in ids]
        assert 3 >= len(client.stats()["containers"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def _server_process(port: int, journal: Path) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-m", "corral.adapters.cli", "serve",
                                "--port", str(port), "--journal", str(journal)])
    try:
        wait_until(lambda: _listening(port), 30)
        yield process
    finally:
        process.kill()
        process.wait(10)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


WORKER = textwrap.dedent("""
    import logging, sys
    from corral.adapters.workers import Worker
    logging.basicConfig(level=logging.WARNING)
    url, ran = sys.argv[1], sys.argv[2]
    def work(item):
        with open(ran, "a") as out:
            out.write(f"{item}\\n")
        return item * 10
    Worker("restart", work, corral=url, lease=2.0, concurrency=2).run()
""")


def test_a_server_restart_under_a_worker_and_a_client(tmp_path: Path) -> None:
    """A journaled server is killed and started again under a running Worker process
    and a connected client: both come back by themselves, every job is finished
    exactly once, and the client's handles and subscription go on (told that it may
    have missed events)."""
    port, journal, ran = _free_port(), tmp_path / "journal", tmp_path / "ran"
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    url = f"corral://127.0.0.1:{port}"
    with _server_process(port, journal):
        client = connect(url, reconnect=Reconnect(first=0.05, cap=0.2))
        jobs = client.jobs("restart", lease=2.0)
        events = client.list("events").subscribe()
        ids = [jobs.put(i) for i in range(40)]
        log = tmp_path / "worker.log"
        with log.open("wb") as err:
            worker = subprocess.Popen([sys.executable, str(script), url, str(ran)],
                                      stderr=err)
        try:
            assert 0 == jobs.result(ids[0], timeout=30)
        except BaseException:
            worker.kill()
            raise
    try:
        with pytest.raises(Closed):  # down: calls fail at once, they do not hang
            jobs.put("during")
        with _server_process(port, journal):
            assert client.wait_connected(30)
            ids += [jobs.put(i) for i in range(40, 80)]
            results = [jobs.result(id, timeout=60) for id in ids]
            client.list("events").push_back("after")
            names = [events.get(timeout=10).name for _ in range(2)]
            states = {jobs.state(id) for id in ids}
            worker.send_signal(signal.SIGTERM)
            assert 0 == worker.wait(30)
    finally:
        worker.kill()
        client.close()
    assert [i * 10 for i in range(80)] == results
    assert {JobState.FINISHED} == states
    assert ["reconnected", "push_back"] == names
    runs = ran.read_text().split()
    assert set(map(str, range(80))) == set(runs)  # some may have run twice, none lost
    stderr = log.read_text()
    assert 1 == stderr.count("lost") and "Traceback" not in stderr, stderr
