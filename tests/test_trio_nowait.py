"""The trio facade's sync calls, ``len(handle)`` and ``queue.get_nowait()``: at once
and without a checkpoint embedded, as trio's own ``_nowait`` calls; a TypeError that
says what to await instead over a connection."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from conftest import serving

from corral.adapters.client import open_client
from corral.adapters.trio import open_corral
from corral.kernel import Closed, Empty


def test_get_nowait_embedded_takes_at_once_and_routes_effects() -> None:
    """get_nowait takes the next item with no checkpoint; the slot it frees admits a
    parked putter, whose task is woken; subscribers hear the get."""
    async def main() -> None:
        async with open_corral() as corral:
            q = await corral.queue("q", max_length=1)
            sub = await q.subscribe()
            await q.put("first")
            admitted: list[str] = []

            async def put_patiently() -> None:
                await q.put("second", timeout=None)
                admitted.append("second")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(put_patiently)
                await trio.testing.wait_all_tasks_blocked()
                assert 1 == (await q.statistics()).waiters
                with trio.testing.assert_no_checkpoints():
                    assert "first" == q.get_nowait()
                    assert 1 == len(q)
            assert ["second"] == admitted
            assert ["put", "get", "put"] == [
                (await sub.get(timeout=1)).name for _ in range(3)]
            with trio.testing.assert_no_checkpoints():
                assert "second" == q.get_nowait()
                with pytest.raises(Empty):
                    q.get_nowait()
            corral.close()
            with pytest.raises(Closed):
                q.get_nowait()

    trio.run(main)


def test_sync_calls_over_a_connection_say_what_to_await() -> None:
    """Over a connection len() and get_nowait() would need a round trip: TypeError,
    and the queue is untouched."""
    async def main(url: str) -> None:
        async with open_client(url) as corral:
            q = await corral.queue("q")
            await q.put("kept")
            with pytest.raises(TypeError, match=r"await queue\.get\(timeout=0\)"):
                q.get_nowait()
            with pytest.raises(TypeError, match=r"await handle\.count\(\)"):
                len(q)
            assert "kept" == await q.get(timeout=0)

    with serving() as urls:
        trio.run(main, urls.tcp)
