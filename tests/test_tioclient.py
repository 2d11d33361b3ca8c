"""Tio's classic Python client (ported to Python 3, tests/tioclient.py) against corral
serve: the seed's factorial cluster as it was written, and the classic API's shapes."""

from __future__ import annotations

import random
from math import factorial
from typing import Any

import pytest
import tioclient
from conftest import serving, start


def test_the_seeds_factorial_cluster_runs_unchanged() -> None:
    """The producer and processor of Tio's wiki, word for word but for Python 3's print
    (here: appends) and a way to stop: a value of 0 ends a processor."""
    items, processors = 300, 3
    with serving(zmq=False) as urls:
        url = f"tio://127.0.0.1:{urls.port}"
        # Producer, as the seed has it.
        tio = tioclient.Connect(url)
        source = tio.CreateContainer("factorial_cluster/source", "volatile_list")
        destination = tio.CreateContainer("factorial_cluster/destination", "volatile_list")
        source.set_property("destination", "factorial_cluster/destination")
        results: list[str] = []

        def OnItemDone(container: Any, event_name: str, key: Any, value: Any,  # noqa: N802
                       metadata: Any) -> None:
            results.append(value)
            if len(results) == items:
                tio.Stop()

        destination.subscribe(OnItemDone)

        # Processor, as the seed has it, each on its own connection and thread.
        calculated: list[int] = []

        def processor() -> None:
            tio = tioclient.Connect(url)
            source = tio.CreateContainer("factorial_cluster/source", "volatile_list")
            destination_name = source.get_property("destination")
            destination = tio.OpenContainer(destination_name)

            def GottaWorkToDo(container: Any, event_name: str, key: Any, value: Any,  # noqa: N802
                              metadata: Any) -> None:
                if value == 0:
                    tio.Stop()
                    return
                calculated.append(value)
                destination.push_back("%d!=%s" % (value, factorial(value)))  # noqa: UP031
                source.wait_and_pop_next(GottaWorkToDo)

            source.wait_and_pop_next(GottaWorkToDo)
            tio.RunLoop()
            tio.close()

        threads = [start(processor) for _ in range(processors)]
        rng = random.Random(7)
        numbers = [rng.randint(1, 500) for _ in range(items)]
        for n in numbers:
            source.append(n)
        tio.RunLoop()  # until OnItemDone has seen every result
        for _ in threads:
            source.append(0)
        for thread in threads:
            thread.join(10)
        assert not any(thread.is_alive() for thread in threads)
        assert sorted(numbers) == sorted(calculated)  # each item once
        assert sorted(f"{n}!={factorial(n)}" for n in numbers) == sorted(results)
        assert 0 == len(source)
        tio.close()


def test_the_classic_api_shapes() -> None:
    """What the classic client reads by position, and its list- and dict-like access."""
    with serving(zmq=False) as urls:
        tio = tioclient.Connect(f"tio://127.0.0.1:{urls.port}")
        lst = tio.CreateContainer("l", "volatile_list")
        assert "volatile_list" == lst.type
        lst.extend(["a", 2, 3.5])
        lst.push_front("z", "meta")
        assert 4 == len(lst)
        assert ["z", "a", 2, 3.5] == lst.query() == lst[0:4]
        assert (0, "z", "meta") == lst.get(0, withKeyAndMetadata=True)
        lst[1] = ("A", "m")
        assert "A" == lst[1]
        del lst[1]
        assert 3.5 == lst.pop_back() and "z" == lst.pop_front()
        assert [(0, 2, None)] == lst.query_with_key_and_metadata()

        m = tio.CreateContainer("m", "volatile_map")
        m["b"], m["a"] = 2, 1
        assert ["a", "b"] == m.keys() and [1, 2] == m.values()  # sorted by key
        popped: list[tuple[Any, Any]] = []
        m.wait_and_pop_key("c", lambda c, e, k, v, md: popped.append((k, v)))
        m.set("c", "see")  # the event comes before set's answer: queued by then
        tio.DispatchAllEvents()
        assert [("c", "see")] == popped and ["a", "b"] == m.keys()

        events: list[tuple[str, Any]] = []
        lst.subscribe(lambda c, e, k, v, md: events.append((e, v)))
        lst.append("x")
        tio.DispatchAllEvents()
        assert [("push_back", "x")] == events

        assert "pong" == tio.ping()[2]
        with pytest.raises(Exception, match='^answer error not_found .* - "get 1 key int 1"$'):
            lst.get(9)
        tio.close()
