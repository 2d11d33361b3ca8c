"""One rule for values on every backend (kernel/_values.py): the same table of values
goes into an in-memory corral, a journaled one (read live and after reopening), the
trio facade, a client of a server over TCP and Redis. What is kept comes back equal,
every tuple a list; what is not is refused with the kernel's own InvalidArgument,
word for word, and nothing changes."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from conftest import server_thread

from corral.adapters import trio as corral_trio
from corral.adapters.client import connect
from corral.adapters.threads import Corral, Facade
from corral.kernel import MAX_DEPTH, InvalidArgument, Kernel, check_value


class Colour(enum.IntEnum):
    RED = 1


def nested(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


# (value, what comes back)
KEPT = [
    ("text", "text"), ("", ""), ("h\u00e9llo \ud800", "h\u00e9llo \ud800"),
    (b"\x00raw\r\n", b"\x00raw\r\n"), (bytearray(b"ab"), b"ab"),
    (0, 0), (-7, -7), (10**40, 10**40), (Colour.RED, 1), (2.5, 2.5), (-0.0, -0.0),
    (1e308, 1e308), (True, True), (False, False), (None, None),
    ((1, 2), [1, 2]), ([1, (2, (3,))], [1, [2, [3]]]), ([], []), ((), []), ({}, {}),
    ({"a": (1, {"b": None}), "": 1.5}, {"a": [1, {"b": None}], "": 1.5}),
    (nested(MAX_DEPTH), nested(MAX_DEPTH)),
]
REFUSED = [
    {1, 2}, object(), float("nan"), float("inf"), -float("inf"), {1: "a"},
    {"a": {(1, 2): 3}}, [b"x"], {"k": bytearray(b"x")}, [1, [float("nan")]],
    nested(MAX_DEPTH + 1), 10**5000, [10**5000],
]


def ids(values: list[Any]) -> list[str]:
    return [type(v[0] if isinstance(v, tuple) and len(v) == 2 else v).__name__
            for v in values]


def store(corral: Facade, value: Any) -> None:
    """``value`` into every kind, as each kind's values come in."""
    corral.list("l").push_back(value, value)
    corral.map("m").set("k", value, value)
    corral.queue("q").put(value)
    corral.feed("f").publish(value, "1")
    corral.sorted_feed("s").append(value)
    jobs = corral.jobs("j")
    jobs.put(value, id="1")
    jobs.claim(timeout=0).finish(value)


def read(corral: Facade) -> list[Any]:
    """What ``store`` left, read back from every kind."""
    record = corral.list("l").query()[0]
    return [record.value, record.metadata, corral.map("m").get("k"),
            corral.queue("q").get(timeout=0), corral.feed("f").get("1"),
            corral.sorted_feed("s").get(1), corral.jobs("j").info("1").item,
            corral.jobs("j").result("1")]


def counts(corral: Facade) -> list[int]:
    return [len(corral.list("l")), len(corral.map("m")), len(corral.queue("q")),
            len(corral.feed("f")), len(corral.sorted_feed("s"))]


def refusals(corral: Facade, value: Any) -> list[str]:
    """The error of every call that takes ``value``, each asserted an InvalidArgument
    that changed nothing."""
    calls: list[Callable[[], Any]] = [
        lambda: corral.list("l").push_back(value),
        lambda: corral.list("l").push_back("ok", value),
        lambda: corral.map("m").set("k", value),
        lambda: corral.queue("q").put(value),
        lambda: corral.feed("f").publish(value),
        lambda: corral.sorted_feed("s").append(value),
        lambda: corral.jobs("j").put(value),
        lambda: corral.jobs("j").put_many(["ok", value]),
    ]
    messages = []
    for call in calls:
        with pytest.raises(InvalidArgument) as caught:
            call()
        messages.append(str(caught.value))
    jobs = corral.jobs("j")
    jobs.put("ok", id="1")
    job = jobs.claim(timeout=0)
    with pytest.raises(InvalidArgument) as caught:
        job.finish(value)
    messages.append(str(caught.value))
    job.finish("done")
    assert [0, 0, 0, 0, 0] == counts(corral)
    assert [] == jobs.ids()  # put_many put none
    return messages


def expected_refusals(value: Any) -> list[str]:
    with Corral() as corral:
        return refusals(corral, value)


@pytest.fixture
def tcp_port() -> Iterator[int]:
    with server_thread() as port:
        yield port


@pytest.fixture(params=["memory", "journaled", "tcp", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Any]:
    """How to open a corral of each backend."""
    if request.param == "memory":
        return Corral
    if request.param == "journaled":
        return lambda: Corral(journal=tmp_path)
    if request.param == "redis":
        url = request.getfixturevalue("url")
        return lambda: connect(url)
    port = request.getfixturevalue("tcp_port")
    return lambda: connect(f"corral://127.0.0.1:{port}")


@pytest.mark.parametrize(("value", "kept"), KEPT, ids=ids(KEPT))
def test_a_value_comes_back_as_it_is_kept(backend: Callable[[], Any], value: Any,
                                          kept: Any) -> None:
    """Every kind gives back what it was given, with every tuple a list."""
    with backend() as corral:
        store(corral, value)
        got = read(corral)
    assert [kept] * 8 == got
    assert [type(kept)] * 8 == [type(v) for v in got]


@pytest.mark.parametrize("value", REFUSED, ids=ids(REFUSED))
def test_what_cannot_be_kept_is_refused_in_the_kernels_words(
        backend: Callable[[], Any], value: Any) -> None:
    """Every call that takes a value refuses one that cannot be kept with the kernel's
    InvalidArgument, word for word, having changed nothing."""
    with backend() as corral:
        assert expected_refusals(value) == refusals(corral, value)


@pytest.mark.parametrize(("value", "kept"), KEPT, ids=ids(KEPT))
def test_a_journaled_corral_gives_back_after_reopening_what_it_gave_live(
        tmp_path: Path, value: Any, kept: Any) -> None:
    """Replayed from its journal, a corral holds what it held live."""
    with Corral(journal=tmp_path) as corral:
        store(corral, value)
        corral.jobs("j").put(value, id="2")
    with Corral(journal=tmp_path) as corral:
        got = read(corral)
        assert kept == corral.jobs("j").info("2").item
    assert [kept] * 8 == got


@pytest.mark.parametrize(("value", "kept"), KEPT, ids=ids(KEPT))
def test_the_trio_facade_keeps_values_by_the_same_rule(value: Any, kept: Any) -> None:
    """The trio facade gives back what the kernel keeps."""

    async def main() -> list[Any]:
        async with corral_trio.open_corral() as corral:
            lst, queue, jobs = (await corral.list("l"), await corral.queue("q"),
                                await corral.jobs("j"))
            await lst.push_back(value, value)
            await queue.put(value)
            await jobs.put(value, id="1")
            job = await jobs.claim(timeout=0)
            await job.finish(value)
            record = (await lst.query())[0]
            return [record.value, record.metadata, await queue.get(timeout=0), job.item,
                    await jobs.result("1")]

    assert [kept] * 5 == trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


@pytest.mark.parametrize("value", REFUSED, ids=ids(REFUSED))
def test_the_trio_facade_refuses_in_the_kernels_words(value: Any) -> None:
    """The trio facade's refusals are the kernel's."""

    async def main() -> list[str]:
        async with corral_trio.open_corral() as corral:
            messages = []
            with pytest.raises(InvalidArgument) as caught:
                await (await corral.list("l")).push_back(value)
            messages.append(str(caught.value))
            with pytest.raises(InvalidArgument) as caught:
                await (await corral.jobs("j")).put_many(["ok", value])
            messages.append(str(caught.value))
            return messages

    got = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert [m for i, m in enumerate(expected_refusals(value)) if i in (0, 7)] == got


def test_the_kernel_keeps_a_copy() -> None:
    """Changing a list after putting it in changes nothing kept."""
    kernel = Kernel()
    kernel.create("l", "volatile_list")
    value = {"a": [1]}
    kernel.push_back("l", value)
    value["a"].append(2)
    assert {"a": [1]} == kernel.pop_front("l").value


def test_check_value_names_the_call() -> None:
    """The message says the call, the container, the argument and why."""
    with pytest.raises(InvalidArgument) as caught:
        check_value({1, 2}, "put", "jobs", "item")
    assert ("put on 'jobs': item {1, 2} cannot be kept: set is none of None, bool, "
            "int, float, str, bytes, list, tuple or dict") == str(caught.value)
    with pytest.raises(InvalidArgument) as caught:
        check_value({"a": [b"x"]}, "set", "m", "metadata")
    assert ("set on 'm': metadata <dict> cannot be kept: bytes go only as a whole value, "
            "not inside a list or dict") == str(caught.value)


def test_put_many_and_claim_many_carry_every_kind_of_value(
        backend: Callable[[], Any]) -> None:
    """Each of put_many's items is a whole value, bytes too (over the wire the field
    lists which items are raw, and so does each row of claim_many's answer), and a job
    claimed so can be finished."""
    with backend() as corral:
        jobs = corral.jobs("many")
        items = [b"\x00raw\r\n", (1, 2), "text", None]
        assert 4 == len(jobs.put_many(items))
        claimed = jobs.claim_many(len(items), timeout=0)
        assert [b"\x00raw\r\n", [1, 2], "text", None] == [job.item for job in claimed]
        for job in claimed:
            job.finish(job.item)
        assert [] == jobs.ids()


def test_a_reason_that_is_not_text_is_refused_and_the_claim_stands(
        backend: Callable[[], Any]) -> None:
    """cancel and stall take a str reason (or None); anything else is refused before
    the claim is touched."""
    with backend() as corral:
        jobs = corral.jobs("reasons")
        jobs.put("x", id="1")
        job = jobs.claim(timeout=0)
        for call in (lambda: job.stall(5), lambda: job.cancel(reason=["no"])):  # type: ignore[arg-type]
            with pytest.raises(InvalidArgument, match="a reason is a str or None"):
                call()
        job.finish("done")
        assert "done" == jobs.result("1")


def test_put_many_of_bytes_is_journaled_and_replayed(tmp_path: Path) -> None:
    """A journal record of put_many wraps each bytes item; a reopened corral has them."""
    with Corral(journal=tmp_path) as corral:
        corral.jobs("j").put_many([b"\xffraw", "text", [1, 2]])
    with Corral(journal=tmp_path) as corral:
        assert [b"\xffraw", "text", [1, 2]] == [
            job.item for job in corral.jobs("j").claim_many(3, timeout=0)]


def test_put_many_field_lists_its_raw_items_and_refuses_bad_indexes() -> None:
    """The field round-trips; a raw index that names no base64 item is refused."""
    from corral.transports.commands import items_field, items_of

    items = [b"\x00", "text", {"items": [1]}, b""]
    assert items == items_of(items_field(items))
    assert ["plain", 1] == items_field(["plain", 1]) == items_of(["plain", 1])
    for bad in ([5], [1], [-1], ["0"]):
        with pytest.raises(InvalidArgument, match="raw index"):
            items_of({"items": ["QQ==", 2], "raw": bad})
