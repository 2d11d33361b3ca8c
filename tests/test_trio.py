"""The trio facade, on a MockClock: no real sleeps."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing

from corral.adapters.trio import Corral, open_corral
from corral.kernel import AlreadyExists, Closed, Empty, Event, NotFound, Record, WrongKind


def run(test: Callable[[Corral], Awaitable[None]]) -> None:
    """Run ``test`` inside open_corral() on a MockClock that jumps when all tasks sleep."""

    async def main() -> None:
        async with open_corral() as corral:
            await test(corral)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_list_and_map_surface() -> None:
    """The list and map operations, awaited."""

    async def test(corral: Corral) -> None:
        lst = await corral.list("l")
        await lst.push_back("b", metadata="mb")
        await lst.push_front("a")
        await lst.insert(-1, "a2")
        await lst.set(0, "A")
        assert ["A", "a2", "b"] == [r.value for r in await lst.query()]
        assert 3 == len(lst) == await lst.count()
        assert "b" == await lst.get(-1)
        await lst.delete(1)
        assert "A" == await lst.pop_front()
        assert "b" == await lst.pop_back()
        with pytest.raises(Empty):
            await lst.pop_back()
        await lst.set_property("p", "v")
        assert "v" == await lst.get_property("p")
        m = await corral.map("m")
        await m.set("k", 1)
        with pytest.raises(AlreadyExists):
            await m.insert("k", 2)
        assert ["k"] == await m.keys()
        assert 1 == await m.get("k")
        assert [Record(key="k", value=1)] == await m.query()
        await m.delete("k")
        with pytest.raises(NotFound):
            await m.get("k")
        await m.clear()
        with pytest.raises(WrongKind):
            await corral.list("m")

    run(test)


def test_tasks_are_served_in_order() -> None:
    """Parked tasks receive pushes first come, first served."""

    async def test(corral: Corral) -> None:
        lst = await corral.list("l")
        got: list[tuple[int, Any]] = []

        async def consume(i: int) -> None:
            got.append((i, await lst.wait_pop_next()))

        async with trio.open_nursery() as nursery:
            for i in range(3):
                nursery.start_soon(consume, i)
                await trio.testing.wait_all_tasks_blocked()
            for value in "xyz":
                await lst.push_back(value)
        assert [(0, "x"), (1, "y"), (2, "z")] == got

    run(test)


def test_wait_pop_key_hand_off() -> None:
    """A task parked on a key is served by the set of that key only."""

    async def test(corral: Corral) -> None:
        m = await corral.map("m")
        got: list[Any] = []

        async def consume() -> None:
            got.append(await m.wait_pop_key("rodrigo"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            await trio.testing.wait_all_tasks_blocked()
            await m.set("linus", "tovards")
            await trio.testing.wait_all_tasks_blocked()
            assert [] == got
            await m.set("rodrigo", "Surname")
        assert ["Surname"] == got
        assert ["linus"] == await m.keys()

    run(test)


def test_timeout_fires_at_its_deadline() -> None:
    """A wait with a timeout raises Empty exactly when the clock reaches its deadline."""

    async def test(corral: Corral) -> None:
        lst = await corral.list("l")
        start = trio.current_time()
        with pytest.raises(Empty):
            await lst.wait_pop_next(timeout=5)
        assert start + 5 == trio.current_time()
        m = await corral.map("m")
        with pytest.raises(Empty):
            await m.wait_pop_key("k", timeout=2)
        assert start + 7 == trio.current_time()
        assert 0 == (await lst.statistics()).waiters

    run(test)


def test_earlier_deadline_armed_later_fires_first() -> None:
    """The alarm re-arms when a shorter timeout arrives after a longer one."""

    async def test(corral: Corral) -> None:
        lst = await corral.list("l")
        fired: list[tuple[float, float]] = []

        async def wait(timeout: float) -> None:
            with pytest.raises(Empty):
                await lst.wait_pop_next(timeout=timeout)
            fired.append((timeout, trio.current_time()))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait, 10)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(wait, 1)
        assert [(1, 1.0), (10, 10.0)] == fired

    run(test)


def test_cancelling_a_wait_withdraws_it() -> None:
    """A cancelled wait leaves no waiter behind; the next push stays in the list."""

    async def test(corral: Corral) -> None:
        lst = await corral.list("l")
        with trio.move_on_after(3):
            await lst.wait_pop_next()
        assert 0 == (await lst.statistics()).waiters
        await lst.push_back("kept")
        assert ["kept"] == [r.value for r in await lst.query()]

    run(test)


def test_a_cancelled_call_does_nothing() -> None:
    """A call made inside a cancelled scope raises Cancelled before it pops anything."""

    async def test(corral: Corral) -> None:
        lst = await corral.list("l")
        await lst.push_back("kept")
        with trio.CancelScope() as scope:
            scope.cancel()
            await lst.pop_front()
        assert scope.cancelled_caught
        assert 1 == len(lst)

    run(test)


def test_close_wakes_parked_tasks() -> None:
    """Closing the corral wakes parked tasks with Closed."""

    async def test(corral: Corral) -> None:
        lst = await corral.list("l")
        errors: list[BaseException] = []

        async def wait() -> None:
            try:
                await lst.wait_pop_next()
            except Closed as error:
                errors.append(error)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            nursery.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()
            corral.close()
        assert 2 == len(errors)
        with pytest.raises(Closed):
            await lst.push_back(1)

    run(test)


def test_subscription() -> None:
    """Events arrive in order; get times out with Empty; iteration ends after close."""

    async def test(corral: Corral) -> None:
        lst = await corral.list("l")
        await lst.push_back("old")
        sub = await lst.subscribe(start=0)
        await lst.push_back("new")
        assert Event(container="l", name="push_back", key=0, value="old") == await sub.get()
        assert "new" == (await sub.get()).value
        with pytest.raises(Empty):
            await sub.get(timeout=1)
        await lst.clear()
        await sub.close()
        await lst.push_back("unseen")
        assert ["clear"] == [event.name async for event in sub]
        with pytest.raises(Closed):
            await sub.get()

    run(test)


def test_factorial_cluster_with_tasks() -> None:
    """Tio's factorial cluster with 4 consumer tasks: each item processed once."""

    async def test(corral: Corral) -> None:
        source, destination = await corral.list("source"), await corral.list("destination")
        results = await destination.subscribe()

        async def consumer() -> None:
            while (n := await source.wait_pop_next()) is not None:
                await destination.push_back((n, n * 2))

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(consumer)
            for n in range(200):
                await source.push_back(n)
            got = [(await results.get()).value for _ in range(200)]
            for _ in range(4):
                await source.push_back(None)
        assert [[n, n * 2] for n in range(200)] == sorted(got)

    run(test)
