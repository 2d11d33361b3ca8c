"""The trio facade on Redis (``open_client("unix://...")``, ``TrioRedisCorral``): every
kind's commands, waits served across tasks, cancellation that withdraws a wait or
returns what served it, Ctrl-C that gives back what served a caller that is gone, a
cancellation storm where every item is accounted for exactly once, and the bound on
its threads. A thread facade (``connect``) on the same Redis stands for another
process."""

from __future__ import annotations

import random
import signal
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import trio
import trio.testing
from conftest import start, wait_until

from corral.adapters import _trio_handles
from corral.adapters import trio as corral_trio
from corral.adapters._redis_client import RedisCorral
from corral.adapters._redis_trio import TrioRedisCorral, open_trio_redis
from corral.adapters.client import connect, open_client
from corral.kernel import (
    AlreadyExists,
    Closed,
    Empty,
    InvalidArgument,
    LimitExceeded,
    NotFound,
    WrongKind,
)


@pytest.fixture
def other(url: str) -> Iterator[RedisCorral]:
    """The thread facade on the same Redis and prefix: another process, as far as the
    trio facade can tell."""
    with connect(url) as corral:
        assert isinstance(corral, RedisCorral)
        yield corral


def run(url: str, test: Callable[[TrioRedisCorral], Awaitable[None]],
        limit: float = 30) -> None:
    """Run ``test`` on ``open_client(url)``, bounded in time."""

    async def main() -> None:
        with trio.fail_after(limit):
            async with open_client(url) as corral:
                assert isinstance(corral, TrioRedisCorral)
                await test(corral)

    trio.run(main)


def waiters(redis_server: Any, prefix: str, name: str, key: str | None = None) -> int:
    """How many waiters Redis has queued on ``name`` (or map ``name``'s ``key``)."""
    queue = f"{prefix}:{{{name}}}:w" if key is None else f"{prefix}:{{{name}}}:wk:{key}"
    return int(redis_server.llen(queue))


async def parked(redis_server: Any, prefix: str, name: str, count: int,
                 key: str | None = None) -> None:
    """Until ``count`` waiters are parked on ``name`` in Redis."""
    while waiters(redis_server, prefix, name, key) != count:
        await trio.sleep(0.001)


def test_open_client_gives_the_trio_facade_on_redis(url: str, redis_server: Any) -> None:
    """A Redis URL gives the trio facade with the trio handles; a token is refused;
    once the block exits the corral is closed."""
    kept: list[TrioRedisCorral] = []

    async def test(corral: TrioRedisCorral) -> None:
        assert isinstance(corral, corral_trio.Facade)
        kept.append(corral)
        assert type(await corral.list("l")) is _trio_handles.ListHandle
        assert type(await corral.map("m")) is _trio_handles.MapHandle
        assert type(await corral.feed("f")) is _trio_handles.FeedHandle
        assert type(await corral.sorted_feed("s")) is _trio_handles.SortedFeedHandle
        assert type(await corral.queue("q")) is _trio_handles.QueueHandle
        assert "RedisCorral" in repr(corral) and not corral.closed
        await corral.wait_connected()

    run(url, test)
    assert kept[0].closed

    async def after() -> None:
        with pytest.raises(Closed):
            await kept[0].list("l")
        with pytest.raises(Closed):
            await kept[0].wait_connected()
        path = redis_server.connection_pool.connection_kwargs["path"]
        with pytest.raises(InvalidArgument, match="token"):
            async with open_client(f"unix://{path}", token="t"):
                pass  # pragma: no cover

    trio.run(after)


def test_list_commands(url: str, other: RedisCorral) -> None:
    """A list's commands, seen by the thread facade too."""
    async def test(corral: TrioRedisCorral) -> None:
        lst = await corral.list("l")
        await lst.push_back(1)
        await lst.push_back({"two": [2]}, metadata="m")
        await lst.push_front(0)
        assert [0, 1, {"two": [2]}] == [r.value for r in other.list("l").query()]
        assert "m" == (await lst.query(-1))[0].metadata
        assert 3 == await lst.count()
        await lst.set(1, "one")
        await lst.insert(1, "half")
        assert "one" == await lst.get(2) and "half" == await lst.get(-3)
        await lst.delete(0)
        assert "half" == await lst.pop_front() and {"two": [2]} == await lst.pop_back()
        assert "one" == await lst.wait_pop_next(timeout=0)
        with pytest.raises(Empty):
            await lst.pop_front()
        with pytest.raises(NotFound):
            await lst.get(0)
        await lst.set_property("owner", "trio")
        assert "trio" == other.list("l").get_property("owner")
        with pytest.raises(NotFound):
            await lst.get_property("nobody")
        stats = await lst.statistics()
        assert (0, 0, 0) == (stats.records, stats.waiters, stats.subscribers)
        other.list("l").push_back("x")
        await lst.clear()
        assert 0 == other.list("l").count()
        with pytest.raises(TypeError):  # a round trip: ``await count()``
            len(lst)

    run(url, test)


def test_map_commands(url: str, other: RedisCorral) -> None:
    """A map's commands, seen by the thread facade too."""
    async def test(corral: TrioRedisCorral) -> None:
        m = await corral.map("m")
        await m.set("b", 2)
        other.map("m").insert("a", 1, metadata={"k": 1})
        with pytest.raises(AlreadyExists):
            await m.insert("a", 3)
        assert ["a", "b"] == await m.keys()
        assert 1 == await m.get("a") and {"k": 1} == (await m.query(0, 1))[0].metadata
        await m.delete("b")
        with pytest.raises(NotFound):
            await m.delete("b")
        assert 1 == await m.wait_pop_key("a", timeout=0)
        with pytest.raises(Empty):
            await m.wait_pop_key("a", timeout=0)
        with pytest.raises(WrongKind):
            await corral.list("m")

    run(url, test)


def test_feed_and_sorted_feed_commands(url: str, other: RedisCorral) -> None:
    """Feeds' and sorted feeds' commands, seen by the thread facade too."""
    async def test(corral: TrioRedisCorral) -> None:
        feed = await corral.feed("news")
        first = await feed.publish("hello")
        assert "h" == await feed.publish("hi", id="h")
        assert [first, "h"] == await feed.ids() == other.feed("news").ids()
        assert "hi" == await feed.get("h")
        await feed.retract(first)
        assert [("h", "hi")] == await feed.items()
        with pytest.raises(NotFound):
            await feed.get(first)
        sf = await corral.sorted_feed("sf")
        b = await sf.append("b")
        a = await sf.prepend("a")
        c = await sf.insert_after(b, "c")
        await sf.insert_before(a, "start")
        await sf.edit(c, "C")
        await sf.move_first(c)
        await sf.move_last(a)
        await sf.move_before(b, a)
        await sf.move_after(b, c)
        assert ["start", "a", "b", "C"] == [item for _, item in await sf.items()]
        assert await sf.ids() == other.sorted_feed("sf").ids()
        with pytest.raises(InvalidArgument):
            await sf.move_before(a, a)

    run(url, test)


def test_queue_commands(url: str, other: RedisCorral) -> None:
    """A queue's commands: priorities, a bounded queue that refuses or parks a put."""
    async def test(corral: TrioRedisCorral) -> None:
        q = await corral.queue("q")
        await q.put("low", priority=-1)
        await q.put("high", priority=5)
        await q.put("mid")
        assert 3 == (await q.statistics()).records
        assert ["high", "mid"] == [await q.get(timeout=0), other.queue("q").get(timeout=0)]
        assert "low" == await q.get()
        with pytest.raises(Empty):
            await q.get(timeout=0)
        with pytest.raises(TypeError):  # a round trip: ``await get(timeout=0)``
            q.get_nowait()
        bounded = await corral.queue("bounded", max_length=1)
        await bounded.put("first")
        with pytest.raises(LimitExceeded):
            await bounded.put("refused")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(bounded.put, "second", 0, 30.0)  # parks: the queue is full
            while (await bounded.statistics()).waiters != 1:
                await trio.sleep(0.001)
            assert "first" == await bounded.get(timeout=0)
        assert "second" == await bounded.get(timeout=0)

    run(url, test)


def test_batch_job_commands(url: str, other: RedisCorral, redis_server: Any,
                            prefix: str) -> None:
    """put_many, claim_many and finish_and_claim through the trio facade: at once,
    parked and served by another process, cancelled (withdrawn), and None when no
    job comes (the finish standing)."""

    async def test(corral: TrioRedisCorral) -> None:
        jobs = await corral.jobs("j")
        ids = await jobs.put_many(["a", "b", "c"])
        assert 3 == len(set(ids)) and (await jobs.statistics()).ready == 3
        got = await jobs.claim_many(2, timeout=0)
        assert ["a", "b"] == [job.item for job in got]
        following = await got[0].finish_and_claim("A", timeout=0)
        assert following is not None and following.item == "c"
        assert "A" == other.jobs("j").result(ids[0], timeout=0)
        assert None is await following.finish_and_claim("C", timeout=0)
        assert None is await got[1].finish_and_claim("B", timeout=0.1)
        assert ["A", "B", "C"] == [other.jobs("j").result(id, timeout=0) for id in ids]
        with trio.move_on_after(0.2) as scope:  # cancelled while parked: withdrawn
            await jobs.claim_many(2)
        assert scope.cancelled_caught and 0 == waiters(redis_server, prefix, "j")
        served: list[Any] = []

        async def claim_many() -> None:
            served.extend(await jobs.claim_many(3, timeout=10))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(claim_many)
            await parked(redis_server, prefix, "j", 1)
            await trio.to_thread.run_sync(other.jobs("j").put_many, ["d", "e"])
        assert ["d"] == [job.item for job in served]
        await served[0].finish("D")
        assert ["e"] == [job.item for job in await jobs.claim_many(3, timeout=0)]

    run(url, test)


def test_deleting_answers_as_the_thread_facade(url: str, other: RedisCorral) -> None:
    """delete_container: NotFound for a container that is not there, as the thread
    facade on Redis says; a container that is there goes, for every process."""

    async def test(corral: TrioRedisCorral) -> None:
        with pytest.raises(NotFound):
            await corral.delete_container("l")
        await (await corral.list("l")).push_back(1)
        await corral.delete_container("l")
        with pytest.raises(NotFound):
            other.delete_container("l")

    with pytest.raises(NotFound):
        other.delete_container("l")
    run(url, test)


def test_calls_are_checkpoints(url: str) -> None:
    """A command, a wait that completes at once and a call that fails: each is a
    checkpoint, as trio's own calls are."""

    async def test(corral: TrioRedisCorral) -> None:
        lst = await corral.list("l")
        with trio.testing.assert_checkpoints():
            await lst.push_back(1)
        with trio.testing.assert_checkpoints():
            await lst.wait_pop_next(timeout=0)
        with trio.testing.assert_checkpoints(), pytest.raises(Empty):
            await lst.pop_front()
        with trio.testing.assert_checkpoints(), pytest.raises(Empty):
            await lst.wait_pop_next(timeout=0)

    run(url, test)


def test_parked_waits_are_served_by_other_tasks_in_order(url: str, redis_server: Any,
                                                         prefix: str) -> None:
    """Tasks parked on a list, a map key and a queue are served by pushes from another
    task, first come, first served."""

    async def test(corral: TrioRedisCorral) -> None:
        lst, m, q = await corral.list("l"), await corral.map("m"), await corral.queue("q")
        got: list[tuple[str, int, Any]] = []

        async def wait(what: str, i: int, call: Callable[[], Awaitable[Any]]) -> None:
            got.append((what, i, await call()))

        async with trio.open_nursery() as nursery:
            for i in range(3):
                nursery.start_soon(wait, "list", i, lst.wait_pop_next)
                await parked(redis_server, prefix, "l", i + 1)
                nursery.start_soon(wait, "map", i, lambda: m.wait_pop_key("k"))
                await parked(redis_server, prefix, "m", i + 1, "k")
                nursery.start_soon(wait, "queue", i, q.get)
                await parked(redis_server, prefix, "q", i + 1)
            for i in range(3):
                await lst.push_back(f"l{i}")
                await q.put(f"q{i}")
            for i in range(3):
                await m.set("k", f"m{i}")
                while len([g for g in got if g[0] == "map"]) <= i:  # taken before the next
                    await trio.sleep(0.001)
        assert sorted(got) == sorted(
            [("list", i, f"l{i}") for i in range(3)] + [("map", i, f"m{i}") for i in range(3)]
            + [("queue", i, f"q{i}") for i in range(3)])

    run(url, test)


def test_cancelling_a_parked_wait_leaves_the_item_for_the_next(url: str, redis_server: Any,
                                                                prefix: str) -> None:
    """A parked wait cancelled by its cancel scope is withdrawn in Redis: the next push
    goes to the next waiter, or stays."""

    async def test(corral: TrioRedisCorral) -> None:
        lst, m, q = await corral.list("l"), await corral.map("m"), await corral.queue("q")
        for name, key, call in (("l", None, lst.wait_pop_next), ("q", None, q.get),
                                ("m", "k", lambda: m.wait_pop_key("k"))):
            with trio.move_on_after(0.3) as scope:
                await call()
            assert scope.cancelled_caught
            assert 0 == waiters(redis_server, prefix, name, key)
        got: list[Any] = []
        first = trio.CancelScope()

        async def cancelled_wait() -> None:
            with first:
                got.append(("first", await lst.wait_pop_next()))

        async def next_wait() -> None:
            got.append(("next", await lst.wait_pop_next()))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(cancelled_wait)
            await parked(redis_server, prefix, "l", 1)
            nursery.start_soon(next_wait)
            await parked(redis_server, prefix, "l", 2)
            first.cancel()
            await parked(redis_server, prefix, "l", 1)
            await lst.push_back("item")
        assert [("next", "item")] == got
        await lst.push_back("kept")
        await q.put("kept")
        await m.set("k", "kept")
        assert ["kept"] == [r.value for r in await lst.query()]
        assert "kept" == await q.get(timeout=0) == await m.get("k")

    run(url, test)


def test_a_wait_cancelled_after_it_was_served_returns_what_served_it(
        url: str, redis_server: Any, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cancel comes once the waiter was served, before its thread returned: the
    call returns the item (trio's rule for an operation that completed, as over a
    connection), and nothing is left in Redis."""
    interrupted = threading.Event()
    receive, interrupt = RedisCorral._receive, RedisCorral.interrupt
    scope = trio.CancelScope()
    token: list[trio.lowlevel.TrioToken] = []

    def served_then_cancelled(self: RedisCorral, parked: Any, deadline: Any) -> str:
        message = receive(self, parked, deadline)  # served: the outcome is read
        token[0].run_sync_soon(scope.cancel)
        assert interrupted.wait(10)  # the withdrawal came, too late
        return message

    def interrupt_seen(self: RedisCorral, thread: threading.Thread) -> None:
        interrupt(self, thread)
        interrupted.set()

    monkeypatch.setattr(RedisCorral, "_receive", served_then_cancelled)
    monkeypatch.setattr(RedisCorral, "interrupt", interrupt_seen)

    async def test(corral: TrioRedisCorral) -> None:
        token.append(trio.lowlevel.current_trio_token())
        lst = await corral.list("l")
        got: list[Any] = []

        async def wait() -> None:
            with scope:
                got.append(await lst.wait_pop_next())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            await parked(redis_server, prefix, "l", 1)
            await lst.push_back("served")
        assert ["served"] == got and scope.cancel_called
        assert 0 == await lst.count() and 0 == waiters(redis_server, prefix, "l")
        monkeypatch.undo()
        for _ in range(3):  # the interrupt that came too late ends no later wait
            with pytest.raises(Empty, match="timed out"):
                await lst.wait_pop_next(timeout=0.05)

    run(url, test)


def test_ctrl_c_while_parked_withdraws_the_wait(url: str, other: RedisCorral,
                                                redis_server: Any, prefix: str) -> None:
    """A SIGINT while the main task is parked: KeyboardInterrupt, and no waiter left."""
    main = threading.get_ident()
    start(lambda: (wait_until(lambda: waiters(redis_server, prefix, "l") == 1),
                   signal.pthread_kill(main, signal.SIGINT)))

    async def test(corral: TrioRedisCorral) -> None:
        await (await corral.list("l")).wait_pop_next()

    with pytest.raises(KeyboardInterrupt):
        run(url, test)
    assert 0 == waiters(redis_server, prefix, "l")
    other.list("l").push_back("kept")
    assert ["kept"] == [r.value for r in other.list("l").query()]
    assert [] == redis_server.keys(f"{prefix}:*:mb:*")  # every wait's session is closed


@pytest.mark.parametrize("kind", ["list", "map", "queue"])
def test_ctrl_c_after_being_served_gives_the_item_back(
        url: str, other: RedisCorral, redis_server: Any, prefix: str, kind: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The Ctrl-C lands once the wait was served, before its thread returned: the caller
    is gone, so the item goes back (a list's to the front, a map's key if still absent,
    a queue's item to its place) and KeyboardInterrupt is raised."""
    main = threading.get_ident()
    interrupted = threading.Event()
    receive, interrupt = RedisCorral._receive, RedisCorral.interrupt

    def served_then_interrupted(self: RedisCorral, parked: Any, deadline: Any) -> str:
        message = receive(self, parked, deadline)
        signal.pthread_kill(main, signal.SIGINT)
        assert interrupted.wait(10)
        return message

    def interrupt_seen(self: RedisCorral, thread: threading.Thread) -> None:
        interrupt(self, thread)
        interrupted.set()

    monkeypatch.setattr(RedisCorral, "_receive", served_then_interrupted)
    monkeypatch.setattr(RedisCorral, "interrupt", interrupt_seen)
    key = "k" if kind == "map" else None
    serve: dict[str, Callable[[], None]] = {
        "list": lambda: other.list("c").push_back("served"),
        "map": lambda: other.map("c").set("k", "served"),
        "queue": lambda: other.queue("c").put("served")}
    start(lambda: (wait_until(lambda: waiters(redis_server, prefix, "c", key) == 1),
                   serve[kind]()))

    async def test(corral: TrioRedisCorral) -> None:
        if kind == "list":
            await (await corral.list("c")).wait_pop_next()
        elif kind == "map":
            await (await corral.map("c")).wait_pop_key("k")
        else:
            await (await corral.queue("c")).get()

    with pytest.raises(KeyboardInterrupt):
        run(url, test)
    monkeypatch.undo()
    assert 0 == waiters(redis_server, prefix, "c", key)
    if kind == "list":
        assert ["served"] == [r.value for r in other.list("c").query()]
    elif kind == "map":
        assert "served" == other.map("c").get("k")
    else:
        other.queue("c").put("came later")
        assert ["served", "came later"] == [other.queue("c").get(timeout=0),
                                            other.queue("c").get(timeout=0)]
    assert [] == redis_server.keys(f"{prefix}:*:mb:*")


def test_ctrl_c_on_a_get_that_took_an_item_at_once_hands_it_over_then_raises(
        url: str, other: RedisCorral, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C while a queue get is on its way, which takes an item at once: the item
    cannot go back to its place (its order key is not known), so the caller gets it,
    and KeyboardInterrupt comes at its next checkpoint."""
    main = threading.get_ident()
    interrupted = threading.Event()
    wait, interrupt = RedisCorral._wait, RedisCorral.interrupt

    def interrupted_on_the_way(self: RedisCorral, *args: Any, **kwargs: Any) -> Any:
        signal.pthread_kill(main, signal.SIGINT)
        assert interrupted.wait(10)
        return wait(self, *args, **kwargs)

    def interrupt_seen(self: RedisCorral, thread: threading.Thread) -> None:
        interrupt(self, thread)
        interrupted.set()

    other.queue("q").put("there")
    got: list[Any] = []

    async def test(corral: TrioRedisCorral) -> None:
        q = await corral.queue("q")
        monkeypatch.setattr(RedisCorral, "_wait", interrupted_on_the_way)
        monkeypatch.setattr(RedisCorral, "interrupt", interrupt_seen)
        got.append(await q.get())
        await trio.lowlevel.checkpoint()
        got.append("not reached")  # pragma: no cover

    with pytest.raises(KeyboardInterrupt):
        run(url, test)
    monkeypatch.undo()
    assert ["there"] == got
    assert 0 == other.queue("q").count()


def test_close_ends_parked_waits_with_closed(url: str, redis_server: Any,
                                             prefix: str) -> None:
    """Closing the corral while tasks are parked: they get Closed, Redis keeps no
    waiter, and calls after it raise Closed."""

    async def test(corral: TrioRedisCorral) -> None:
        lst, m = await corral.list("l"), await corral.map("m")
        outcomes: list[Any] = []

        async def wait(call: Callable[[], Awaitable[Any]]) -> None:
            try:
                outcomes.append(await call())
            except Closed as error:
                outcomes.append(error)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait, lst.wait_pop_next)
            nursery.start_soon(wait, lambda: m.wait_pop_key("k"))
            await parked(redis_server, prefix, "l", 1)
            await parked(redis_server, prefix, "m", 1, "k")
            corral.close()
        assert 2 == len(outcomes) and all(isinstance(o, Closed) for o in outcomes)
        await corral.aclose()
        assert corral.closed
        with pytest.raises(Closed):
            await lst.push_back(1)
        with pytest.raises(Closed):
            await lst.wait_pop_next(timeout=0)

    run(url, test)
    assert 0 == waiters(redis_server, prefix, "l") == waiters(redis_server, prefix, "m", "k")


def test_threads_are_bounded_and_parked_waits_never_hold_up_commands(
        url: str, redis_server: Any, prefix: str) -> None:
    """With ``max_waits=2``, a third wait queues for a thread (a fourth is cancelled
    there, with nothing done) while commands still run; each wait is served in turn."""

    async def main() -> None:
        with trio.fail_after(30):
            async with open_trio_redis(url, max_waits=2, max_commands=1) as corral:
                lst = await corral.list("l")
                got: list[Any] = []

                async def wait() -> None:
                    got.append(await lst.wait_pop_next())

                async with trio.open_nursery() as nursery:
                    for _ in range(3):
                        nursery.start_soon(wait)
                    await parked(redis_server, prefix, "l", 2)
                    with trio.move_on_after(0.05):  # a fourth, cancelled in the queue
                        await lst.wait_pop_next()
                    await trio.testing.wait_all_tasks_blocked()
                    assert 2 == (await lst.statistics()).waiters  # a command runs
                    for i in range(3):
                        await lst.push_back(i)
                assert [0, 1, 2] == sorted(got)
                assert 0 == await lst.count()

    trio.run(main)


def test_a_cancellation_storm_loses_and_duplicates_nothing(url: str, redis_server: Any,
                                                           prefix: str) -> None:
    """50 tasks wait on a queue again and again, each time cancelled after a random
    moment, while a producer puts 300 items: every item is received by exactly one
    task or still in the queue."""
    rng = random.Random(14)
    tasks, items, rounds = 50, 300, 6

    async def test(corral: TrioRedisCorral) -> None:
        q = await corral.queue("q")
        received: list[Any] = []

        async def consume(seed: int) -> None:
            mine = random.Random(seed)
            for _ in range(rounds):
                with trio.move_on_after(mine.uniform(0, 0.03)):
                    received.append(await q.get())

        async def produce() -> None:
            for i in range(items):
                await q.put(i)
                if i % 10 == 0:
                    await trio.sleep(rng.uniform(0, 0.01))

        async with trio.open_nursery() as nursery:
            for _ in range(tasks):
                nursery.start_soon(consume, rng.randrange(1 << 30))
            nursery.start_soon(produce)
        left = []
        while True:
            try:
                left.append(await q.get(timeout=0))
            except Empty:
                break
        counted = Counter(received + left)
        assert {i: 1 for i in range(items)} == dict(counted)
        assert len(received) > 0
        assert 0 == (await q.statistics()).waiters

    run(url, test, limit=120)
    assert [] == redis_server.keys(f"{prefix}:*:mb:*")  # every wait's session is closed


def test_subscriptions_on_redis_reach_trio(url: str, other: RedisCorral) -> None:
    """Another process's changes arrive in order, after the snapshot; closing the
    subscription ends it."""

    async def test(corral: TrioRedisCorral) -> None:
        other.list("l").push_back("before")
        lst = await corral.list("l")
        events = await lst.subscribe(start=0)
        other.list("l").push_back("after")
        other.list("l").pop_front()
        with trio.fail_after(10):
            heard = [(e.name, e.key, e.value) for e in [await events.get() for _ in range(3)]]
        assert heard == [("push_back", 0, "before"), ("push_back", 1, "after"),
                         ("pop_front", 0, "before")]
        await events.close()
        with pytest.raises(Closed):
            await events.get(timeout=1)
        with trio.fail_after(10):
            while (await lst.statistics()).subscribers:
                await trio.sleep(0.01)

    run(url, test)
