"""The trio facade over a connection: open_client(url) against a real server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing
from conftest import serving

from corral.adapters import trio as corral_trio
from corral.adapters.client import open_client
from corral.kernel import Closed, Empty, JobState, LeaseLost, NotFound


def run(test: Callable[[corral_trio.Corral], Awaitable[None]]) -> None:
    """Run ``test`` against a server over TCP, then over ZeroMQ."""
    for transport in ("tcp", "zmq"):
        with serving() as urls:
            async def main(url: str) -> None:
                async with open_client(url) as corral:
                    with trio.fail_after(20):
                        await test(corral)

            trio.run(main, getattr(urls, transport))


def test_hand_off_between_tasks_in_order() -> None:
    """Parked tasks get pushes first come, first served, through the server."""

    async def test(corral: corral_trio.Corral) -> None:
        lst = await corral.list("work")
        got: list[tuple[int, Any]] = []

        async def consume(i: int) -> None:
            got.append((i, await lst.wait_pop_next()))

        async with trio.open_nursery() as nursery:
            for i in range(3):
                nursery.start_soon(consume, i)
                while (await lst.statistics()).waiters < i + 1:
                    await trio.sleep(0.001)
            for value in "xyz":
                await lst.push_back(value)
        assert [(0, "x"), (1, "y"), (2, "z")] == got

    run(test)


def test_cancelling_a_remote_wait_loses_nothing() -> None:
    """A cancelled wait is withdrawn on the server; the next push stays in the list."""

    async def test(corral: corral_trio.Corral) -> None:
        lst = await corral.list("l")
        m = await corral.map("m")
        with trio.move_on_after(0.05):
            await lst.wait_pop_next()
        with trio.move_on_after(0.05):
            await m.wait_pop_key("k")
        assert 0 == (await lst.statistics()).waiters
        await lst.push_back("kept")
        await m.set("k", "kept too")
        assert ["kept"] == [r.value for r in await lst.query()]
        assert "kept too" == await m.get("k")

    run(test)


def test_jobs_results_and_the_fence() -> None:
    """Claims, results and LeaseLost, remotely."""

    async def test(corral: corral_trio.Corral) -> None:
        jobs = await corral.jobs("render", lease=0.2)
        jid = await jobs.put({"frame": 1})
        stale = await jobs.claim()
        again = await jobs.claim(timeout=5)  # after the first lease runs out
        assert 2 == again.attempt
        with pytest.raises(LeaseLost):
            await stale.finish("late")
        async with trio.open_nursery() as nursery:
            results: list[Any] = []

            async def read() -> None:
                results.append(await jobs.result(jid, timeout=5))

            nursery.start_soon(read)
            await again.finish("frame-1.png")
        assert ["frame-1.png"] == results
        assert JobState.FINISHED == await jobs.state(jid)
        with pytest.raises(NotFound):
            await jobs.state("nope")

    run(test)


def test_subscription_queue_and_timeouts() -> None:
    """Events stream in; a timed-out get raises Empty; closing ends a subscription."""

    async def test(corral: corral_trio.Corral) -> None:
        feed = await corral.feed("news")
        sub = await feed.subscribe()
        await feed.publish("hello", id="h")
        event = await sub.get(timeout=5)
        assert ("publish", "h", "hello") == (event.name, event.key, event.value)
        q = await corral.queue("q")
        with pytest.raises(Empty):
            await q.get(timeout=0.05)
        await q.put("a", priority=1)
        with pytest.raises(TypeError):  # sync, as trio's own _nowait: embedded only
            q.get_nowait()
        assert "a" == await q.get(timeout=0)
        await sub.close()
        with pytest.raises(Closed):
            await sub.get(timeout=1)

    run(test)
