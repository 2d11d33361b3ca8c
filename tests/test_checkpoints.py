"""Every call of the trio facade is a checkpoint, as trio's own are: embedded and over
a connection, whether it completes at once, fails, or waits."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
from conftest import serving
from trio.testing import assert_checkpoints

from corral.adapters.client import open_client
from corral.adapters.trio import Facade, open_corral
from corral.kernel import Empty, NotFound


async def _calls(corral: Facade) -> list[tuple[str, Callable[[], Awaitable[Any]]]]:
    lst = await corral.list("l")
    m = await corral.map("m")
    q = await corral.queue("q")
    jobs = await corral.jobs("j")
    feed = await corral.feed("f")
    await lst.push_back("x")
    await q.put("y")
    await jobs.put("z")
    await m.set("k", 1)
    return [
        ("list", lambda: corral.list("l")),
        ("push_back", lambda: lst.push_back(1)),
        ("count", lst.count),
        ("query", lst.query),
        ("wait_pop_next at once", lambda: lst.wait_pop_next(timeout=0)),
        ("pop_front on empty", lst.pop_back),
        ("get missing", lambda: lst.get(99)),
        ("map set", lambda: m.set("a", 2)),
        ("wait_pop_key at once", lambda: m.wait_pop_key("k")),
        ("queue put", lambda: q.put("w")),
        ("queue get", lambda: q.get(timeout=0)),
        ("jobs claim", lambda: jobs.claim(timeout=0)),
        ("publish", lambda: feed.publish("p")),
        ("statistics", lst.statistics),
        ("subscribe", lst.subscribe),
        ("a wait that times out", lambda: lst.wait_pop_next(timeout=0.01)),
    ]


async def _check(corral: Facade) -> None:
    for name, call in await _calls(corral):
        with assert_checkpoints():
            try:
                await call()
            except (Empty, NotFound):
                pass  # failing is still a checkpoint
            except Exception as error:  # pragma: no cover - says which call
                raise AssertionError(f"{name}: {error!r}") from error


def test_embedded_calls_are_checkpoints() -> None:
    """Every embedded call checkpoints."""
    async def main() -> None:
        async with open_corral() as corral:
            await _check(corral)

    trio.run(main)


@pytest.mark.parametrize("transport", ["tcp", "zmq"])
def test_remote_calls_are_checkpoints(transport: str) -> None:
    """Every call over a connection checkpoints."""
    async def main(url: str) -> None:
        async with open_client(url) as corral:
            with trio.fail_after(20):
                await _check(corral)

    with serving() as urls:
        trio.run(main, getattr(urls, transport))


def test_a_cancelled_call_does_nothing() -> None:
    """A call made in a cancelled scope raises Cancelled before it is sent."""
    async def main(url: str) -> None:
        async with open_client(url) as corral:
            lst = await corral.list("l")
            with trio.CancelScope() as scope:
                scope.cancel()
                await lst.push_back("never")
            assert 0 == await lst.count()

    with serving() as urls:
        trio.run(main, urls.tcp)
