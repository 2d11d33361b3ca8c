"""The command table (``corral.transports.commands``) against everything that reads it:
the kernel's methods and signatures, the journal, the server's handlers, the client
core's methods, docs/protocol.md; and every described command, sent by the client core
through a server, against the same call made on a kernel directly."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest

from corral.kernel import CorralError, JobFailed, JobState, Kernel, Kind, Waiting
from corral.transports import handlers, protocol, requests
from corral.transports.commands import (
    ANSWERS,
    COMMANDS,
    KERNEL_ONLY,
    REQUIRED,
    by_kernel,
    journaled,
)
from corral.transports.connection import ClientConnection
from corral.transports.journal import MUTATING, Journal, JournaledKernel
from corral.transports.server import Connection, Server

DOCS = Path(__file__).parent.parent / "docs" / "protocol.md"


def test_every_kernel_method_is_described_once() -> None:
    """Each public kernel method is a command's, or one the table names as the
    kernel's own (with whether it changes state): a new method cannot be left out of
    the journal unnoticed."""
    public = {n for n in dir(Kernel) if not n.startswith("_") and callable(getattr(Kernel, n))}
    described = {c.kernel for c in COMMANDS if c.kernel is not None}
    assert public == described | set(KERNEL_ONLY)
    assert not described & set(KERNEL_ONLY)
    assert len({c.wire for c in COMMANDS}) == len(COMMANDS)


@pytest.mark.parametrize("command", list(by_kernel().values()), ids=lambda c: c.wire)
def test_arguments_are_the_kernels(command: Any) -> None:
    """A command's arguments are its kernel method's, in order, with its defaults:
    the session, the name, ``now`` (the server's) and a queue get's ``receipt`` (the
    server's business) aside."""
    params = list(inspect.signature(getattr(Kernel, command.kernel)).parameters.values())
    params = [p for p in params[1:] if p.name not in ("session", "name", "now", "receipt")]
    assert [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD] == [
        a.name for a in command.args if not a.keyword]
    assert {p.name for p in params if p.kind is p.KEYWORD_ONLY} == {
        a.name for a in command.args if a.keyword}
    for p in params:
        arg = next(a for a in command.args if a.name == p.name)
        expected = REQUIRED if p.default is p.empty else p.default
        assert arg.default == expected or (arg.default is expected), p.name
    assert command.clock == ("now" in inspect.signature(getattr(Kernel, command.kernel))
                             .parameters)


def test_the_journal_records_the_mutating_methods(tmp_path: Path) -> None:
    """The journal wraps exactly the methods the table marks as changing state; and
    those it leaves alone do not change it: each, called on a kernel holding every kind
    of container, leaves its snapshot as it was."""
    assert set(MUTATING) == set(journaled())
    for name in MUTATING:
        assert getattr(JournaledKernel, name) is not getattr(Kernel, name), name
    kernel = JournaledKernel(Journal(tmp_path))
    session = kernel.open_session()
    for kind in Kind:
        kernel.create(kind.value, kind)
    kernel.push_back("volatile_list", "v")
    kernel.set("volatile_map", "k", "v")
    kernel.set_property("volatile_list", "p", "v")
    fid = kernel.publish("feed", "item")
    sid = kernel.append("sorted_feed", "item")
    kernel.queue_put(session, "queue", "item")
    jid = kernel.put("job", "item", now=1.0)
    kernel.claim(session, "job", now=1.0)
    kernel.take_effects()
    reads: dict[str, list[tuple[Any, ...]]] = {
        "count": [(k.value,) for k in Kind],
        "statistics": [(k.value,) for k in Kind],
        "get": [("volatile_list", 0), ("volatile_map", "k"), ("feed", fid),
                ("sorted_feed", sid), ("job", jid)],
        "query": [("volatile_list",), ("volatile_map",)],
        "keys": [("volatile_map",)], "ids": [("feed",), ("sorted_feed",), ("job",)],
        "items": [("feed",), ("sorted_feed",)], "state": [("job", jid)],
        "info": [("job", jid)],
        "get_property": [("volatile_list", "p")], "open": [("queue",)],
        "containers": [()], "options": [("job",)], "sessions": [()],
        "next_deadline": [()], "take_effects": [()],
        "metrics": [(k.value,) for k in Kind], "peek": [(k.value,) for k in Kind],
        "waiters": [(k.value,) for k in Kind], "session_info": [(session,)],
        "dump_state": [()], "load_state": [(kernel.dump_state(),)],
    }
    read_only = {c.kernel for c in COMMANDS if c.kernel and not c.mutates} | {
        name for name, mutates in KERNEL_ONLY.items() if not mutates}
    assert read_only == set(reads)
    before = kernel.snapshot()
    for name, calls in reads.items():
        for args in calls:
            getattr(kernel, name)(*args)
            assert before == kernel.snapshot(), (name, args)
    kernel.journal.close()


def test_server_and_client_read_every_shape() -> None:
    assert set(handlers.HANDLERS) == {c.wire for c in COMMANDS}
    assert set(handlers._ANSWERS) | {"served", "special"} == set(ANSWERS)
    assert set(requests.DECODE) | {"served", "special"} == set(ANSWERS)
    for command in by_kernel().values():
        assert callable(getattr(ClientConnection, command.kernel))
    assert protocol.DATA_COMMANDS == {c.wire for c in COMMANDS if c.takes_fields}


def test_the_docs_list_the_commands() -> None:
    """docs/protocol.md's command tables name exactly the table's commands."""
    documented = set()
    text = DOCS.read_text()
    tables = text[text.index("## Classic commands"):text.index("## Giving a delivery back")]
    for line in tables.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            documented |= {m.group(1) for m in re.finditer(r"`([a-z_]+)", first)}
    assert documented == {c.wire for c in COMMANDS}


# -- every command, over the wire and embedded ----------------------------------------


class Memory(Connection):
    def flush(self) -> None:
        pass

    def drop(self, reason: str, *, flush: bool = False) -> None:
        raise AssertionError(reason)


def _world(kernel: Kernel, session: int) -> dict[str, Any]:
    """The same few containers in every kernel; what later calls refer to."""
    for kind in Kind:
        kernel.create(kind.value, kind)
    kernel.push_back("volatile_list", "a", {"m": 1})
    kernel.push_back("volatile_list", "b")
    kernel.set("volatile_map", "k", [1, 2])
    kernel.set_property("volatile_map", "p", "v")
    kernel.publish("feed", "one", "f1")
    first = kernel.append("sorted_feed", "x")
    second = kernel.append("sorted_feed", "y")
    kernel.queue_put(session, "queue", "item", priority=3)
    job = kernel.put("job", {"n": 1}, now=0.0)
    kernel.take_effects()
    return {"first": first, "second": second, "job": job}


def _calls(ids: dict[str, Any]) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """A call of every command the client core has, in an order that makes sense."""
    first, second, job = ids["first"], ids["second"], ids["job"]
    return [
        ("statistics", ("job",), {}), ("get_property", ("volatile_map", "p"), {}),
        ("set_property", ("volatile_map", "q", "w"), {}),
        ("count", ("volatile_list",), {}), ("get", ("volatile_list", -1), {}),
        ("set", ("volatile_list", 0, "A", 7), {}), ("insert", ("volatile_list", 1, "i"), {}),
        ("delete", ("volatile_list", 1), {}), ("push_front", ("volatile_list", "f"), {}),
        ("push_back", ("volatile_list", "z", [1]), {}), ("pop_back", ("volatile_list",), {}),
        ("pop_front", ("volatile_list",), {}), ("wait_pop_next", ("volatile_list",),
                                                {"timeout": 0}),
        ("clear", ("volatile_list",), {}), ("wait_pop_next", ("volatile_list",),
                                            {"timeout": 0}),
        ("keys", ("volatile_map",), {}), ("wait_pop_key", ("volatile_map", "k"),
                                          {"timeout": 0}),
        ("get", ("volatile_map", "nope"), {}),
        ("publish", ("feed", "two"), {}), ("publish", ("feed", "1b", "f1"), {}),
        ("ids", ("feed",), {}), ("items", ("feed",), {}), ("retract", ("feed", "f1"), {}),
        ("prepend", ("sorted_feed", "w"), {}), ("append", ("sorted_feed", "v"), {}),
        ("insert_before", ("sorted_feed", second,
                                                                  "b"), {}),
        ("insert_after", ("sorted_feed", first, "c"), {}),
        ("edit", ("sorted_feed", first, "X"), {}),
        ("move_before", ("sorted_feed", first, second), {}),
        ("move_after", ("sorted_feed", second, first), {}),
        ("move_first", ("sorted_feed", second), {}), ("move_last", ("sorted_feed", first),
                                                      {}),
        ("move_before", ("sorted_feed", first, first), {}), ("items", ("sorted_feed",), {}),
        ("queue_put", ("queue", "low"), {"priority": -1, "timeout": 0}),
        ("queue_get", ("queue",), {"timeout": 0}), ("queue_get", ("queue",), {"timeout": 0}),
        ("queue_get", ("queue",), {"timeout": 0}),
        ("put", ("job", "later"), {"priority": 2, "delay": 5.0, "id": "mine"}),
        ("put", ("job", "now"), {"priority": 1}), ("claim", ("job",), {"lease": 9.0,
                                                                        "timeout": 0}),
        ("state", ("job", job), {}), ("ids", ("job",), {}), ("info", ("job", job), {}),
        ("ids", ("job",), {"state": "claimed"}), ("ids", ("feed",), {"start": 1}),
        ("ids", ("job",), {"state": JobState.READY, "start": 0, "end": 1}),
        ("ids", ("feed",), {"state": "ready"}), ("ids", ("job",), {"state": "bogus"}),
        ("retract", ("job", "mine"), {}), ("retry", ("job", job), {}),
        ("result", ("job", job), {"timeout": 0}), ("put", ("job", "x"), {"id": "mine"}),
    ]


def _jobs(kernel: Kernel, session: int) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """Calls on claims: they need the tokens claims returned."""
    for item in ("c1", "c2", "c3", "c4", "c5"):
        kernel.put("job", item, now=0.0)
    first, second, third, fourth, fifth, sixth = (
        kernel.claim(session, "job", timeout=0, now=0.0) for _ in range(6))
    assert not any(isinstance(t, Waiting) for t in (first, second, third, fourth, fifth,
                                                     sixth))
    return [("touch", ("job", first), {"lease": 4.0}),
            ("finish", ("job", first, {"r": 1}), {"result_ttl": 60.0}),
            ("finish", ("job", first), {}), ("cancel", ("job", first), {"reason": "x"}),
            ("cancel", ("job", second), {"delay": 2.5, "reason": "later"}),
            ("stall", ("job", third, "why"), {}), ("state", ("job", third.id), {}),
            ("retry", ("job", third.id), {}), ("state", ("job", second.id), {}),
            ("result", ("job", first.id), {"timeout": 0}), ("info", ("job", first.id), {}),
            ("info", ("job", second.id), {}), ("result", ("job", third.id), {"timeout": 0}),
            ("stall", ("job", fourth, "Traceback (most recent call last):\n  File \"w.py\", "
                                      "line 1\nZeroDivisionError: division by zero\n"), {}),
            ("ids", ("job",), {"state": "stalled"}), ("info", ("job", third.id), {}),
            ("result", ("job", fourth.id), {"timeout": 0}), ("retry_all", ("job",), {}),
            ("retry_all", ("job",), {}),
            ("finish_claim", ("job", fifth, "done"), {"timeout": 0, "lease": 5.0}),
            ("finish_claim", ("job", fifth), {"timeout": 0}),
            ("put_many", ("job", ["m1", {"m": 2}, "m3"]), {"priority": 5}),
            ("put_many", ("job", "m1"), {}), ("put_many", ("job", []), {"delay": 1.0}),
            ("claim_many", ("job", 2), {"timeout": 0, "lease": 7.0}),
            ("claim_many", ("job",), {"n": 50, "timeout": 0}),
            ("claim_many", ("job", 0), {"timeout": 0}),
            ("claim_many", ("job",), {"timeout": 0}),
            ("finish_claim", ("job", sixth, {"r": 2}), {"timeout": 0}),
            ("put", ("job", "last"), {}),
            ("finish_claim", ("job", sixth, {"r": 2}), {"timeout": 0})]


def _outcome(call: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return ("ok", call(*args, **kwargs))
    except JobFailed as error:  # its whole text, lines and all, comes over the wire
        assert "ZeroDivisionError" == error.remote_type
        return ("error", type(error).__name__, error.error)
    except CorralError as error:
        return ("error", type(error).__name__)


def test_every_command_over_the_wire_is_the_kernel_call() -> None:
    """Each command the client core encodes from the table, the server decodes from
    it into the same kernel call: results and errors as a kernel called directly."""
    direct = Kernel()
    me = direct.open_session()
    ids = _world(direct, me)
    server = Server(kernel=Kernel())
    server.now = lambda: 0.0  # type: ignore[method-assign]
    conn = Memory(server, "memory")
    assert ids == _world(server.kernel, conn.session)
    client = ClientConnection()

    def remote(method: str, *args: Any, **kwargs: Any) -> Any:
        request = getattr(client, method)(*args, **kwargs)
        conn.receive(client.data_to_send())
        server.flush()
        client.receive_data(bytes(conn.outbound))
        conn.outbound.clear()
        assert request.done, method
        if request.error is not None:
            raise request.error
        return request.value

    outcomes = []

    def compare(calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]]) -> None:
        for method, args, kwargs in calls:
            command = by_kernel()[method]
            session = (me,) if command.waits else ()
            clock = {"now": 0.0} if command.clock else {}
            here = _outcome(getattr(direct, method), *session, *args, **kwargs, **clock)
            there = _outcome(remote, method, *args, **kwargs)
            if here[0] == "ok" and isinstance(here[1], tuple):  # a wait's (value, metadata)
                here = ("ok", here[1][0])
                there = ("ok", there[1][0] if isinstance(there[1], tuple) else there[1])
            assert here == there, (method, args, kwargs)
            outcomes.append((method, here))

    compare(_calls(ids))
    direct.take_effects()
    server.kernel.take_effects()
    here, there = _jobs(direct, me), _jobs(server.kernel, conn.session)
    compare(here)
    assert [c[0] for c in here] == [c[0] for c in there]
    assert set(by_kernel()) <= {c[0] for c in _calls(ids) + here}
    # every command succeeds at least once; errors come back typed
    assert set(by_kernel()) == {method for method, what in outcomes if what[0] == "ok"}
    assert {"Empty", "NotFound", "LeaseLost", "InvalidArgument", "JobFailed"} <= {
        what[1] for _, what in outcomes if what[0] == "error"}


def test_every_container_command_has_a_handle_method() -> None:
    """Each command on a container is called by a handle of the facades (written once,
    in ``_handles.py``; the trio ones are generated from it)."""
    source = (Path(__file__).parent.parent / "adapters" / "_handles.py").read_text()
    called = set(re.findall(r"self\._kernel\.([a-z_]+)", source))
    assert set(by_kernel()) <= called, set(by_kernel()) - called
