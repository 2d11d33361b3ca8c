"""The versioned state format: a kernel loaded from a dump behaves as the one dumped,
migrations apply in turn, newer versions, other files and documents that do not hold
together are refused, a journal written with pickled snapshots (corral at b6eaba1)
opens, and ``corral export`` and ``corral import`` move a journal's data whole."""

from __future__ import annotations

import json
import math
import pickle
import shutil
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
import test_jobs_stateful
import test_kernel_stateful
from hypothesis import given, settings
from hypothesis.stateful import rule

from corral.adapters.cli import main
from corral.adapters.client import connect
from corral.kernel import (
    CorralError,
    Event,
    InvalidArgument,
    Job,
    JobState,
    Kernel,
    Record,
    WaiterInfo,
    _state,
)
from corral.transports.background import background_server
from corral.transports.journal import (
    SNAPSHOT_HEADER,
    CorruptJournal,
    Journal,
    JournaledKernel,
    _unwrap,
    encode_state,
)

DATA = Path(__file__).parent / "data"
# `corral export` of B6EABA1 by the first corral with the state format: version 1.
V1 = DATA / "state-v1.json"
# Journals written by corral itself at these commits, with pickled snapshots (README).
B6EABA1 = DATA / "journal-0.1.0-b6eaba1"
C6EA960 = DATA / "journal-0.1.0-c6ea960"


def journal_copy(source: Path, directory: Path) -> Path:
    """A copy of a journal of tests/data, to open (opening may write)."""
    shutil.copytree(source, directory / source.name,
                    ignore=shutil.ignore_patterns("*.md", "*.py"))
    return directory / source.name


def plain(kernel: Kernel) -> Any:
    """A kernel's dump as JSON carries it."""
    return json.loads(encode_state(kernel))


def restored(kernel: Kernel) -> Kernel:
    """A fresh kernel loaded from ``kernel``'s dump through JSON, as a snapshot carries
    it; its own dump is the original's."""
    copy = Kernel()
    copy.load_state(json.loads(encode_state(kernel)), _unwrap)
    copy._check()
    assert plain(kernel) == plain(copy)
    return copy


# -- a restored kernel behaves as the original ------------------------------------------------


class RestoredKernelModel(test_kernel_stateful.KernelModel):
    """Lists, maps, waiters and subscriptions against the model, the kernel swapped for
    its restored copy at random points."""

    @rule()
    def restore(self) -> None:
        assert not self.kernel.effects
        self.kernel = restored(self.kernel)


class RestoredJobsModel(test_jobs_stateful.JobsModel):
    """Job queues against the model (leases, backoff jitter, timers), the kernel
    swapped for its restored copy at random points."""

    @rule()
    def restore(self) -> None:
        assert not self.kernel.effects
        self.kernel = restored(self.kernel)


RestoredKernelModel.TestCase.settings = settings(max_examples=100, stateful_step_count=50,
                                                 deadline=None)
RestoredJobsModel.TestCase.settings = settings(max_examples=100, stateful_step_count=50,
                                               deadline=None)
TestRestoredKernelModel = RestoredKernelModel.TestCase
TestRestoredJobsModel = RestoredJobsModel.TestCase

SESSIONS = st.integers(1, 4)
TIME = st.floats(0, 60, allow_nan=False)
ITEMS = st.one_of(st.integers(), st.text(max_size=3), st.binary(max_size=3), st.none(),
                  st.floats(allow_nan=False), st.lists(st.integers(), max_size=2))
TIMEOUTS = st.sampled_from([None, 0.0, 2.0])
JOB_IDS = st.integers(1, 4).map(str)
TOKENS = st.builds(Job, JOB_IDS, st.none(), st.sampled_from([1, 1, 2]))
SORTED_IDS = st.integers(1, 4)


def command(op: str, *args: Any, **kwargs: Any) -> Any:
    return st.tuples(st.just(op), st.tuples(*args), st.fixed_dictionaries(kwargs))


CONTAINERS = {"l": ("volatile_list", {}), "m": ("volatile_map", {}),
              "f": ("feed", {"max_length": 3}), "s": ("sorted_feed", {}),
              "q": ("queue", {"max_length": 2}),
              "j": ("job", {"lease": 5.0, "max_attempts": 2, "result_ttl": 10.0})}

# Commands on every kind, with sessions, waits, subscriptions, time and give-backs
# (deleting containers is the models' above: here it would leave too little);
# "restore" swaps the copy for its restored copy.
COMMANDS = st.one_of(
    command("restore"),
    command("open_session"), command("close_session", SESSIONS, now=TIME),
    command("advance", TIME),
    command("create", st.sampled_from(sorted(CONTAINERS))),
    command("set_property", st.sampled_from(sorted(CONTAINERS)), st.just("p"), st.text()),
    command("subscribe", SESSIONS, st.sampled_from(sorted(CONTAINERS)),
            start=st.none() | st.integers(-2, 2)),
    command("unsubscribe", SESSIONS, st.integers(1, 40)),
    command("cancel_wait", SESSIONS, st.integers(1, 40)),
    command("push_back", st.just("l"), ITEMS, ITEMS),
    command("push_front", st.just("l"), ITEMS),
    command("pop_front", st.just("l")), command("pop_back", st.just("l")),
    command("insert", st.just("l"), st.integers(-2, 2), ITEMS),
    command("wait_pop_next", SESSIONS, st.just("l"), timeout=TIMEOUTS, now=TIME),
    command("give_back", SESSIONS, st.just("l"),
            st.builds(Event, st.just("l"), st.just("wnp_next"), st.just(0), ITEMS)),
    command("set", st.just("m"), st.sampled_from("abc"), ITEMS, ITEMS),
    command("delete", st.just("m"), st.sampled_from("abc")),
    command("wait_pop_key", SESSIONS, st.just("m"), st.sampled_from("abc"),
            timeout=TIMEOUTS, now=TIME),
    command("publish", st.just("f"), ITEMS, st.none() | st.sampled_from(["x", "1"])),
    command("retract", st.just("f"), st.sampled_from(["x", "1", "2", "3"])),
    command("append", st.just("s"), ITEMS), command("prepend", st.just("s"), ITEMS),
    command("insert_after", st.just("s"), SORTED_IDS, ITEMS),
    command("move_before", st.just("s"), SORTED_IDS, SORTED_IDS),
    command("edit", st.just("s"), SORTED_IDS, ITEMS),
    command("retract", st.just("s"), SORTED_IDS),
    command("queue_put", SESSIONS, st.just("q"), ITEMS, priority=st.integers(0, 2),
            timeout=TIMEOUTS, now=TIME),
    command("queue_get", SESSIONS, st.just("q"), timeout=TIMEOUTS, now=TIME,
            receipt=st.booleans()),
    command("give_back", SESSIONS, st.just("q"),
            st.builds(Event, st.just("q"), st.just("get"), st.none(), ITEMS,
                      st.tuples(st.integers(0, 2), st.integers(1, 6)))),
    command("put", st.just("j"), ITEMS, priority=st.integers(0, 2),
            delay=st.sampled_from([0.0, 3.0]), now=TIME),
    command("claim", SESSIONS, st.just("j"), timeout=TIMEOUTS, now=TIME),
    command("claim_many", SESSIONS, st.just("j"), st.integers(1, 3), now=TIME),
    command("finish", st.just("j"), TOKENS, ITEMS, now=TIME),
    command("finish_claim", SESSIONS, st.just("j"), TOKENS, ITEMS, timeout=TIMEOUTS,
            now=TIME),
    command("cancel", st.just("j"), TOKENS, reason=st.none() | st.text(max_size=5),
            now=TIME),
    command("stall", st.just("j"), TOKENS, st.text(max_size=5)),
    command("touch", st.just("j"), TOKENS, now=TIME),
    command("retry", st.just("j"), JOB_IDS, now=TIME),
    command("retract", st.just("j"), JOB_IDS),
    command("result", SESSIONS, st.just("j"), JOB_IDS, timeout=TIMEOUTS, now=TIME),
    command("give_back", SESSIONS, st.just("j"),
            st.builds(Event, st.just("j"), st.just("claimed"), st.none(), TOKENS)),
)


def populate(kernel: Kernel) -> None:
    for _ in range(3):
        kernel.open_session()
    for name in CONTAINERS:
        kernel.create(name, CONTAINERS[name][0], **CONTAINERS[name][1])


def apply(kernel: Kernel, op: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """What the command returns or raises, and the effects it queues."""
    if op == "create":
        kind, options = CONTAINERS[args[0]]
        args, kwargs = (args[0], kind), options
    try:
        outcome: Any = ("returned", getattr(kernel, op)(*args, **kwargs))
    except CorralError as error:
        outcome = ("raised", type(error), str(error))
    return outcome, list(kernel.take_effects())


@settings(max_examples=200, deadline=None)
@given(st.lists(COMMANDS, min_size=20, max_size=80))
def test_a_restored_kernel_behaves_as_the_original(log: list[Any]) -> None:
    """Every kind, in any state: a copy restored (again and again) from JSON dumps
    answers every later command as the original does, effects included, and ends
    with the same dump."""
    original, copy = Kernel(), Kernel()
    populate(original)
    populate(copy)
    for op, args, kwargs in log:
        if op == "restore":
            copy = restored(copy)
            continue
        assert apply(original, op, args, kwargs) == apply(copy, op, args, kwargs)
    copy._check()
    assert plain(original) == plain(copy)


# -- versions ---------------------------------------------------------------------------------


def test_migrations_apply_in_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each version's migration runs in turn up to the current one. Version 1 is the
    only one there has been, so this test makes up versions 2 and 3."""

    def mark(version: int, letter: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        def migration(data: dict[str, Any]) -> dict[str, Any]:
            assert version == data["version"]
            containers = [{**c, "properties": {"seen": c["properties"].get("seen", "")
                                               + letter}} for c in data["containers"]]
            return {**data, "version": version + 1, "containers": containers}
        return migration

    monkeypatch.setattr(_state, "VERSION", 3)
    monkeypatch.setitem(_state.MIGRATIONS, 1, mark(1, "a"))
    monkeypatch.setitem(_state.MIGRATIONS, 2, mark(2, "b"))
    kernel = Kernel()
    kernel.load_state(json.loads(V1.read_text()), _unwrap)
    assert "ab" == kernel.get_property("work", "seen")
    assert 3 == plain(kernel)["version"]


def test_newer_and_foreign_states_are_refused_and_change_nothing() -> None:
    """A newer version names both versions; something else is not a corral state;
    a state that does not hold together says so; the kernel stays as it was."""
    kernel = Kernel()
    kernel.create("kept", "volatile_list")
    kernel.push_back("kept", 1)
    before = plain(kernel)
    newer = {**json.loads(V1.read_text()), "version": 2}
    with pytest.raises(InvalidArgument, match="version 2 is newer.*version 1"):
        kernel.load_state(newer)
    with pytest.raises(InvalidArgument, match="not a corral state"):
        kernel.load_state({"format": "something-else", "version": 1})
    assert before == plain(kernel)


def job_row(data: dict[str, Any], name: str, id: str) -> list[Any]:
    (jobs,) = (c for c in data["containers"] if c["name"] == name)
    (row,) = (r for r in jobs["records"] if r[0] == id)
    row: list[Any]
    return row


def container(data: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = (c for c in data["containers"] if c["name"] == name)
    found: dict[str, Any]
    return found


def without_owner(data: dict[str, Any]) -> str:
    data["sessions"] = [s for s in data["sessions"] if s["id"] != 1]
    return "KeyError: 1"


def foreign_lease(data: dict[str, Any]) -> str:
    data["sessions"][1]["leases"] = [["work", "3"]]  # a ready job
    return "session 2 holds a lease on job 3 of 'work', which it does not own"


def unleased_owner(data: dict[str, Any]) -> str:
    data["sessions"][0]["leases"] = []
    job_row(data, "work", "1")[6] = 2  # owned by session 2, which has no lease
    return "owned by session 2, which holds no lease on it"


def owned_but_ready(data: dict[str, Any]) -> str:
    job_row(data, "work", "3")[6] = 1
    data["sessions"][0]["leases"].append(["work", "3"])
    return "job 3 of 'work' is ready, yet owned"


def queued_twice(data: dict[str, Any]) -> str:
    container(data, "inbox")["waiters"] = [4, 4]
    return "waiter 4 is queued twice"


def queued_nowhere(data: dict[str, Any]) -> str:
    container(data, "inbox")["waiters"] = []
    return r"waiters \[4\] are in no container's queue"


def queued_elsewhere(data: dict[str, Any]) -> str:
    container(data, "inbox")["waiters"] = []
    container(data, "idle")["claimers"].append(4)
    return "waiter 4 .wait_pop_next on 'inbox'. is queued for claim on 'idle'"


def missing_waiter(data: dict[str, Any]) -> str:
    container(data, "tasks")["waiters"] = [99]
    return "KeyError: 99"


def orphan_subscription(data: dict[str, Any]) -> str:
    data["subscriptions"][0]["session"] = 42
    return "KeyError: 42"


def timer_from_the_future(data: dict[str, Any]) -> str:
    data["timer_seq"] = 3
    return "a timer's seq 10 is past timer_seq 3"


def id_from_the_future(data: dict[str, Any]) -> str:
    data["last_id"] = 5
    return "id 9 is past last_id 5"


def claimed_without_deadline(data: dict[str, Any]) -> str:
    job_row(data, "work", "1")[13] = None
    return "claimed job 1 of 'work' has no deadline"


def clock_not_a_number(data: dict[str, Any]) -> str:
    data["now"] = "soon"
    return "now is a number, not 'soon'"


def unknown_job_state(data: dict[str, Any]) -> str:
    job_row(data, "work", "3")[3] = "lost"
    return "'lost' is not a valid JobState"


def not_a_value(data: dict[str, Any]) -> str:
    container(data, "tasks")["records"][0][0] = {"j": [math.nan]}
    return "load_state on 'tasks': value <list> cannot be kept: nan is not a finite float"


def nan_result(data: dict[str, Any]) -> str:
    job_row(data, "work", "2")[8] = math.nan
    return "load_state on 'work': result nan cannot be kept"


@pytest.mark.parametrize("damage", [
    without_owner, foreign_lease, unleased_owner, owned_but_ready, queued_twice,
    queued_nowhere, queued_elsewhere, missing_waiter, orphan_subscription,
    timer_from_the_future, id_from_the_future, claimed_without_deadline,
    clock_not_a_number, unknown_job_state, not_a_value, nan_result])
def test_a_state_that_does_not_hold_together_is_refused(
        damage: Callable[[dict[str, Any]], str]) -> None:
    """Each reference, waiter queue, timer and value is checked: a document with one
    thing wrong is refused, naming it, and the kernel stays as it was."""
    kernel = Kernel()
    kernel.load_state(json.loads(V1.read_text()), _unwrap)
    before = plain(kernel)
    broken = json.loads(V1.read_text())
    message = damage(broken)
    with pytest.raises(InvalidArgument, match=message):
        kernel.load_state(broken, _unwrap)
    assert before == plain(kernel)
    kernel._check()


def test_the_checks_do_not_need_asserts() -> None:
    """Under ``python -O``, which drops asserts, a claimed job whose session is gone is
    refused all the same."""
    code = f"""
import json
from corral.kernel import InvalidArgument, Kernel
from corral.transports.journal import _unwrap
data = json.loads(open({str(V1)!r}).read())
data["sessions"] = [s for s in data["sessions"] if s["id"] != 1]
try:
    Kernel().load_state(data, _unwrap)
except InvalidArgument as error:
    print(error)
"""
    out = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True,
                         text=True, check=True).stdout
    assert "corral state version 1 does not hold together: KeyError: 1\n" == out


def write_snapshot(directory: Path, state: bytes) -> None:
    """A new journal in ``directory`` whose snapshot is ``state``."""
    with Journal(directory) as journal:
        journal.write_snapshot(journal.gen, state)


def test_a_journal_with_a_newer_snapshot_is_refused(tmp_path: Path) -> None:
    newer = {**json.loads(V1.read_text()), "version": 2}
    write_snapshot(tmp_path, json.dumps(newer).encode())
    with Journal(tmp_path) as journal, pytest.raises(
            CorruptJournal, match="snapshot-00000001.bin: .*version 2 is newer"):
        JournaledKernel(journal)


def test_a_journal_on_a_version_1_snapshot_replays_and_serves(tmp_path: Path) -> None:
    """The fixture as a journal's snapshot: it opens, records after it replay on it,
    and a server serves the whole."""
    write_snapshot(tmp_path, V1.read_bytes())
    with Journal(tmp_path) as journal:
        kernel = JournaledKernel(journal)
        kernel.push_back("tasks", "after the upgrade")
        kernel.finish("work", Job("1", {"n": 1}, 1), "done", now=1010.0)
    with Journal(tmp_path) as journal:
        kernel = JournaledKernel(journal)
        assert ("done", None) == kernel.result(1, "work", "1", timeout=0)
    with Journal(tmp_path) as journal, \
            background_server(zmq=False, journal=journal) as urls, \
            connect(urls.tcp) as client:
        assert [7, "first", b"\x00raw", [1, {"two": 2}], "after the snapshot",
                "after the upgrade"] == [r.value for r in client.list("tasks").query()]
        assert "ops" == client.list("tasks").get_property("owner")
        assert ["mode", "retries"] == client.map("config").keys()
        assert [("2", "world"), ("top", "pinned"), ("3", "late")] == client.feed(
            "news").items()
        assert ["plan", "write", "test", "ship"] == [
            i for _, i in client.sorted_feed("todo").items()]
        assert "urgent" == client.queue("mail").get(timeout=0)
        # On the wall clock now: the delays and result TTLs of 1970 have run out.
        jobs = client.jobs("work")
        assert (JobState.READY, {"n": 3}) == (jobs.state("3"), jobs.info("3").item)
        bad = jobs.info("bad")
        assert (JobState.STALLED, "Traceback: ValueError: n must be odd") == (bad.state,
                                                                             bad.error)


# -- a journal with a pickled snapshot --------------------------------------------------------


def test_a_journal_written_by_b6eaba1_opens_and_snapshots_anew(tmp_path: Path) -> None:
    """The pickled snapshot and the records after it, as corral at b6eaba1 wrote
    them, open with every container's contents, jobs, waiters and leases; the claimed
    job's token still finishes it; and the pickle is replaced by a JSON snapshot at
    the first chance."""
    directory = journal_copy(B6EABA1, tmp_path)
    with Journal(directory) as journal:
        kernel = JournaledKernel(journal, autocommit=True)
        kernel._check()
        assert 1005.0 == kernel.now
        assert [Record(key=0, value=7), Record(key=1, value="first", metadata="meta"),
                Record(key=2, value=b"\x00raw"), Record(key=3, value=[1, {"two": 2}]),
                Record(key=4, value="after the snapshot")] == kernel.query("tasks")
        assert "ops" == kernel.get_property("tasks", "owner")
        assert [WaiterInfo(id=4, session=2, op="wait_pop_next", container="inbox",
                           key=None, since=1000.0, deadline=None)] == kernel.waiters("inbox")
        assert ["mode", "retries"] == kernel.keys("config")  # the waiter took "secret"
        assert ("fast", {"by": "admin"}) == (kernel.get("config", "mode").value,
                                             kernel.get("config", "mode").metadata)
        assert [] == kernel.waiters("config")
        assert [("2", "world"), ("top", "pinned"), ("3", "late")] == kernel.items("news")
        assert [(2, "plan"), (1, "write"), (4, "test"), (3, "ship")] == kernel.items("todo")
        assert [(6, "news")] == list(kernel.session_info(2).subscriptions)
        assert (2, 1) == (kernel.statistics("mail").records,
                          kernel.statistics("mail").waiters)
        info = {id: kernel.info("work", id)
                for id in ("1", "2", "bad", "flaky", "3", "later", "4")}
        assert {"1": JobState.CLAIMED, "2": JobState.FINISHED, "bad": JobState.STALLED,
                "flaky": JobState.DELAYED, "3": JobState.READY, "later": JobState.DELAYED,
                "4": JobState.READY} == {id: i.state for id, i in info.items()}
        assert (1065.0, "done") == (info["1"].deadline, info["2"].result)
        assert 1600.0 == job_row(plain(kernel), "work", "2")[13][0]  # the result TTL
        assert "Traceback: ValueError: n must be odd" == info["bad"].error
        assert ("timed out", b"flaky") == (info["flaky"].error, info["flaky"].item)
        assert (1, {"n": 3}) == (info["3"].priority, info["3"].item)
        assert (1100.0, {"n": 5}) == (info["later"].deadline, info["4"].item)
        assert (("work", "1"),) == kernel.session_info(1).claims
        assert ["result"] == [w.op for w in kernel.waiters("work")]
        assert [("claim", 1050.0)] == [(w.op, w.deadline) for w in kernel.waiters("idle")]
        assert [(2, PICKLE_MAGIC)] == snapshots(directory)
        before = plain(kernel)

        kernel.finish("work", Job("1", {"n": 1}, 1), "ok", now=1010.0)
        assert JobState.FINISHED == kernel.state("work", "1")
        assert [(3, b"corral-snapshot-2\n")] == snapshots(directory)
        after = plain(kernel)
    assert "claimed" == job_row(before, "work", "1")[3]
    with Journal(directory) as journal:
        assert after == plain(JournaledKernel(journal))


PICKLE_MAGIC = b"corral-snapshot-1\n"


def snapshots(directory: Path) -> list[tuple[int, bytes]]:
    """Each snapshot's generation and magic."""
    return [(int(p.stem.split("-")[1]), p.read_bytes()[:18])
            for p in sorted(directory.glob("snapshot-*.bin"))]


def test_export_of_a_b6eaba1_journal_is_the_version_1_fixture(tmp_path: Path) -> None:
    """``corral export`` reads a journal with a pickled snapshot and changes nothing
    there; what it writes is the fixture, so a change to the format shows here."""
    directory = journal_copy(B6EABA1, tmp_path)
    before = files(directory)
    assert 0 == main(["export", str(directory), "-o", str(tmp_path / "state.json")])
    assert before == files(directory)
    assert json.loads(V1.read_text()) == json.loads((tmp_path / "state.json").read_text())


def test_a_pickled_snapshot_of_an_older_kernel_is_refused(tmp_path: Path) -> None:
    """Corral at c6ea960 pickled kernel objects b6eaba1's no longer match: opening
    its journal says which pickles this corral reads, and changes nothing."""
    directory = journal_copy(C6EA960, tmp_path)
    before = files(directory)
    before["lock"] = b""  # opening takes it
    refusal = ("snapshot-00000002.bin: a pickled snapshot whose objects are not the "
               "kernel's of corral commits f9157be to b6eaba1.*open the directory with "
               "that one")
    with Journal(directory) as journal, pytest.raises(CorruptJournal, match=refusal):
        JournaledKernel(journal)
    assert before == files(directory)


class _Trap:
    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("unpickled",))


def test_a_pickled_snapshot_lets_in_only_kernel_classes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A pickle that calls anything but a kernel class is refused before the call."""
    write_snapshot(tmp_path, b"")
    (path,) = tmp_path.glob("snapshot-*")
    state = pickle.dumps({"_core": _Trap()})
    header = path.read_bytes().split(b"\n")[1]
    path.write_bytes(PICKLE_MAGIC + header + b"\n"
                     + SNAPSHOT_HEADER.pack(len(state), zlib.crc32(state)) + state)
    with Journal(tmp_path) as journal, pytest.raises(
            CorruptJournal, match="builtins.print is not a kernel class"):
        JournaledKernel(journal)
    assert "" == capsys.readouterr().out


# -- export and import ------------------------------------------------------------------------


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@settings(max_examples=10, deadline=None)
@given(st.lists(COMMANDS.filter(lambda c: c[0] != "restore"), max_size=150),
       st.integers(0, 150))
def test_export_and_import_move_every_kind(log: list[Any], split: int) -> None:
    """A journal with data of every kind, a snapshot and records after it: export
    leaves it as it is, and the import of what it wrote holds the same state."""
    with tempfile.TemporaryDirectory() as directory:
        old, new, dump = (Path(directory) / name for name in ("old", "new", "state.json"))
        with Journal(old, fsync="no") as journal:
            kernel = JournaledKernel(journal, autocommit=True)
            populate(kernel)
            for op, args, kwargs in log[:split]:
                apply(kernel, op, args, kwargs)
            journal.commit()
            rotation = journal.rotate()  # as a server's snapshot does, between writes
            journal.retire(rotation, journal.write_snapshot(rotation.gen, kernel.snapshot()))
            for op, args, kwargs in log[split:]:
                apply(kernel, op, args, kwargs)
            expected = plain(kernel)
        before = files(old)
        assert 0 == main(["export", str(old), "-o", str(dump)])
        assert before == files(old)
        assert 0 == main(["import", str(dump), "--journal", str(new)])
        with Journal(new) as journal:
            assert expected == plain(JournaledKernel(journal))


def test_export_writes_to_stdout_and_import_says_how_to_serve(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_snapshot(tmp_path / "old", V1.read_bytes())
    assert 0 == main(["export", str(tmp_path / "old")])
    (tmp_path / "state.json").write_text(capsys.readouterr().out)
    assert 0 == main(["import", str(tmp_path / "state.json"), "--journal",
                      str(tmp_path / "new")])
    assert (f"{tmp_path / 'new'}: a new journal holding 8 containers; serve it with: "
            f"corral serve --journal {tmp_path / 'new'}\n") == capsys.readouterr().out


def test_import_writes_what_it_loads(tmp_path: Path) -> None:
    """An import's journal holds the state the document loads into."""
    assert 0 == main(["import", str(V1), "--journal", str(tmp_path / "new")])
    with Journal(tmp_path / "new") as journal:
        imported = plain(JournaledKernel(journal))
    kernel = Kernel()
    kernel.load_state(json.loads(V1.read_text()), _unwrap)
    assert plain(kernel) == imported


def test_export_and_import_refuse(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                  ) -> None:
    """Export refuses a journal a server holds and a directory with none; import
    refuses a directory that is not empty, a newer version and a foreign file."""
    with Journal(tmp_path / "held") as journal:
        JournaledKernel(journal).create("l", "volatile_list")
        journal.commit()
        assert 1 == main(["export", str(tmp_path / "held")])
        assert "in use by another process" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert 1 == main(["export", str(tmp_path / "empty")])
    assert "holds no journal" in capsys.readouterr().err
    assert [] == list((tmp_path / "empty").iterdir())
    assert 1 == main(["import", str(V1), "--journal", str(tmp_path / "held")])
    assert "is not empty" in capsys.readouterr().err
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({**json.loads(V1.read_text()), "version": 2}))
    foreign = tmp_path / "foreign.json"
    foreign.write_text('{"hello": "world"}')
    for path, message in ((newer, "version 2 is newer than this corral reads (version 1)"),
                          (foreign, "not a corral state")):
        assert 1 == main(["import", str(path), "--journal", str(tmp_path / "fresh")])
        assert message in capsys.readouterr().err
    assert not (tmp_path / "fresh").exists()


def test_wrapped_values_round_trip_through_a_dump() -> None:
    """Bytes, JSON structures and floats come back as they went in."""
    kernel = Kernel()
    kernel.create("l", "volatile_list")
    values = [b"\x00\xff", {"b": "not bytes"}, [1, [2]], 1e300, -0.0, 10**30, "s", None]
    for value in values:
        kernel.push_back("l", value, value)
    copy = restored(kernel)
    assert [(v, v) for v in values] == [(r.value, r.metadata) for r in copy.query("l")]

