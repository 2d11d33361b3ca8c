"""The journal: replay rebuilds the exact state, damaged files are cut or refused, a
full disk refuses commands, and a server killed at random loses nothing it answered."""

from __future__ import annotations

import contextlib
import errno
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from corral.adapters.client import connect
from corral.kernel import Closed, CorralError, InvalidArgument, Job, JobState, Kernel, Kind
from corral.transports.background import background_server
from corral.transports.codec import ProtocolError
from corral.transports.journal import (
    FRAME,
    HEADROOM,
    CorruptJournal,
    Journal,
    JournaledKernel,
    JournalFailed,
    decode_call,
    encode_call,
)

# -- records and replay -----------------------------------------------------------------------


def test_values_round_trip() -> None:
    values = ["text", b"\x00raw", 10**40, 2.5, float("inf"), None, True,
              {"b": "not bytes"}, ["a", {"j": 1}], Job("7", b"item", 3)]
    name, args, kwargs = decode_call(encode_call("push_back", tuple(values),
                                                 {"kind": Kind.JOBS, "now": 1.25}))
    assert ("push_back", values, {"kind": "job", "now": 1.25}) == (name, args, kwargs)


def test_unjournalable_values_are_refused_before_anything_changes(tmp_path: Path) -> None:
    with Journal(tmp_path) as journal:
        kernel = JournaledKernel(journal)
        kernel.create("l", "volatile_list")
        with pytest.raises(InvalidArgument, match="cannot be kept"):
            kernel.push_back("l", object())
        with pytest.raises(InvalidArgument, match="cannot be kept"):
            kernel.push_back("l", [b"bytes in JSON"])
        assert 0 == kernel.count("l")


def dump(kernel: Kernel) -> Any:
    """Everything observable about a kernel's state."""
    state: dict[str, Any] = {}
    for name, kind in kernel.containers().items():
        entry: dict[str, Any] = {"kind": kind, "stats": kernel.statistics(name),
                                 "properties": None}
        if kind in (Kind.LIST, Kind.MAP):
            entry["records"] = kernel.query(name)
        if kind is Kind.JOBS:
            entry["jobs"] = {id: kernel.state(name, id) for id in kernel.ids(name)}
        state[name] = entry
    return state, kernel.sessions(), kernel.next_deadline()


SESSIONS = st.integers(1, 3)
TIME = st.floats(0, 50, allow_nan=False)
ITEMS = st.one_of(st.integers(), st.text(max_size=3), st.binary(max_size=3),
                  st.lists(st.integers(), max_size=2))
JOB_TOKENS = st.builds(Job, st.integers(1, 6).map(str), st.none(), st.integers(1, 3))
COMMANDS = st.one_of(
    st.tuples(st.just("push_back"), st.tuples(st.just("l"), ITEMS), st.just({})),
    st.tuples(st.just("pop_front"), st.tuples(st.just("l")), st.just({})),
    st.tuples(st.just("set"), st.tuples(st.just("m"), st.sampled_from("ab"), ITEMS),
              st.just({})),
    st.tuples(st.just("wait_pop_next"), st.tuples(SESSIONS, st.just("l")),
              st.fixed_dictionaries({"timeout": st.none() | st.floats(0, 5), "now": TIME})),
    st.tuples(st.just("put"), st.tuples(st.just("j"), ITEMS),
              st.fixed_dictionaries({"delay": st.sampled_from([0.0, 3.0]), "now": TIME})),
    st.tuples(st.just("claim"), st.tuples(SESSIONS, st.just("j")),
              st.fixed_dictionaries({"timeout": st.none() | st.just(0.0), "now": TIME})),
    st.tuples(st.just("finish"), st.tuples(st.just("j"), JOB_TOKENS, ITEMS),
              st.fixed_dictionaries({"now": TIME})),
    st.tuples(st.just("cancel"), st.tuples(st.just("j"), JOB_TOKENS),
              st.fixed_dictionaries({"now": TIME})),
    st.tuples(st.just("subscribe"), st.tuples(SESSIONS, st.just("m")), st.just({})),
    st.tuples(st.just("close_session"), st.tuples(SESSIONS), st.just({})),
    st.tuples(st.just("open_session"), st.just(()), st.just({})),
    st.tuples(st.just("advance"), st.tuples(TIME), st.just({})),
)


def run(kernel: Kernel, log: list[tuple[str, tuple[Any, ...], dict[str, Any]]]) -> None:
    for _ in range(3):
        kernel.open_session()
    kernel.create("l", "volatile_list")
    kernel.create("m", "volatile_map")
    kernel.create("j", "job", lease=5.0, max_attempts=2, result_ttl=10.0)
    for op, args, kwargs in log:
        with contextlib.suppress(CorralError):
            getattr(kernel, op)(*args, **kwargs)
        kernel.take_effects()


@settings(max_examples=100, deadline=None)
@given(st.lists(COMMANDS, max_size=40))
def test_replay_rebuilds_the_exact_state(log: list[Any]) -> None:
    """A kernel replayed from the journal equals the one that wrote it: containers,
    job states, leases, deadlines and sessions."""
    with tempfile.TemporaryDirectory() as directory:
        journal = Journal(directory)
        written = JournaledKernel(journal)
        run(written, log)
        journal.close()
        plain = Kernel()
        run(plain, log)
        assert dump(plain) == dump(written)
        replayed = JournaledKernel(Journal(directory))
        replayed._check()
        assert dump(written) == dump(replayed)
        replayed.journal.close()


def test_deadlines_survive_a_restart(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    kernel = JournaledKernel(journal)
    kernel.create("j", "job", lease=10.0, backoff=0)  # an expired claim is ready at once
    session = kernel.open_session()
    kernel.put("j", "later", delay=5.0, now=100.0)
    claimed = kernel.put("j", "now", now=100.0)
    assert claimed == kernel.claim(session, "j", now=101.0).id
    journal.close()
    kernel = JournaledKernel(Journal(tmp_path))
    assert 105.0 == kernel.next_deadline()
    kernel.advance(105.0)
    assert JobState.READY == kernel.state("j", "1")
    kernel.advance(111.0)  # the lease of the claim made before the restart runs out
    assert JobState.READY == kernel.state("j", claimed)
    kernel.journal.close()


# -- damage -------------------------------------------------------------------------------------


def journal_with(tmp_path: Path, n: int) -> Path:
    journal = Journal(tmp_path)
    kernel = JournaledKernel(journal)
    kernel.create("l", "volatile_list")
    for i in range(n):
        kernel.push_back("l", i)
    journal.close()
    return journal.path


def end_of_records(path: Path) -> int:
    data, offset = path.read_bytes(), 0
    while offset + FRAME.size <= len(data):
        size, crc = FRAME.unpack_from(data, offset)
        if size == 0 and crc == 0:
            break
        offset += FRAME.size + size
    return offset


def test_a_torn_tail_is_cut_off_with_a_warning(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    path = journal_with(tmp_path, 10)
    end = end_of_records(path)
    with open(path, "r+b") as f:  # a write cut short by a crash: half a record
        f.truncate(end)
        f.seek(end)
        f.write(FRAME.pack(40, 12345) + b"[\"push_back\",[\"l\"")
    kernel = JournaledKernel(Journal(tmp_path))
    assert list(range(10)) == [r.value for r in kernel.query("l")]
    assert "torn record at offset" in caplog.text
    assert end == path.stat().st_size
    kernel.push_back("l", 10)  # and it goes on from there
    kernel.journal.close()
    with Journal(tmp_path) as journal:
        assert 11 == JournaledKernel(journal).count("l")


def test_a_flipped_bit_inside_stops_the_start(tmp_path: Path) -> None:
    path = journal_with(tmp_path, 10)
    data = bytearray(path.read_bytes())
    data[60] ^= 0x04  # inside an early record
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptJournal,
                       match=r"journal-00000001\.log: corrupt record at offset \d+"):
        Journal(tmp_path)
    kernel = JournaledKernel(Journal(tmp_path, repair=True))  # keep the good prefix
    assert kernel.count("l") < 10
    assert [r.value for r in kernel.query("l")] == list(range(kernel.count("l")))
    kernel.journal.close()
    Journal(tmp_path).close()  # repaired: it opens cleanly now


def test_one_process_per_journal(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    with pytest.raises(JournalFailed, match="in use"):
        Journal(tmp_path)
    journal.close()
    Journal(tmp_path).close()


def test_a_full_disk_refuses_the_command_and_keeps_what_was_acknowledged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while reserving room: the command fails with a clear error and changes
    nothing; everything before it survives."""
    journal = Journal(tmp_path)
    kernel = JournaledKernel(journal)
    kernel.create("l", "volatile_list")
    kernel.push_back("l", "kept")
    session = kernel.open_session()
    journal.commit()

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)
    journal.reserved = journal.end + HEADROOM  # only the room kept back is left
    with pytest.raises(JournalFailed, match="No space left on device"):
        kernel.push_back("l", "x" * 100)
    assert ["kept"] == [r.value for r in kernel.query("l")]
    kernel.close_session(session)  # a disconnect still goes through, on the room kept back
    monkeypatch.undo()
    kernel.push_back("l", "after")  # room again
    journal.close()
    with Journal(tmp_path) as journal:
        replayed = JournaledKernel(journal)
        assert ["kept", "after"] == [r.value for r in replayed.query("l")]
        assert [] == replayed.sessions()


def test_a_full_disk_over_the_wire(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Journal(tmp_path) as journal, background_server(zmq=False, journal=journal) as urls, \
            connect(urls.tcp) as client:
        lst = client.list("l")
        lst.push_back("kept")
        monkeypatch.setattr(os, "posix_fallocate", lambda *a: (_ for _ in ()).throw(
            OSError(errno.ENOSPC, "No space left on device")))
        journal.reserved = journal.end + len(journal._buffer) + HEADROOM
        with pytest.raises(JournalFailed, match="No space left"):
            lst.push_back("refused")
        assert ["kept"] == [r.value for r in lst.query()]
    # the disconnect went through on the room kept back; the journal replays
    with Journal(tmp_path) as journal:
        assert ["kept"] == [r.value for r in JournaledKernel(journal).query("l")]


# -- the server ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fsync", ["always", "everysec", "no"])
def test_a_restarted_server_has_its_containers(tmp_path: Path, fsync: str) -> None:
    """Every policy keeps everything across a clean restart; the old connections'
    sessions are closed (their waits gone, claims released as each queue says)."""
    with Journal(tmp_path, fsync=fsync) as journal, \
            background_server(zmq=False, journal=journal) as urls, connect(urls.tcp) as client:
        client.list("l").push_back(b"bytes")
        client.map("m").set("k", {"json": [1, 2]})
        kept = client.jobs("kept", lease=60, release_on_close=False)
        kept.put("a")
        held = kept.claim(timeout=1)
        released = client.jobs("released", lease=60)
        released.put("b")
        released.claim(timeout=1)
        waiter = threading.Thread(target=lambda: pytest.raises(
            Closed, client.list("empty").wait_pop_next))
        waiter.start()
        while client.list("empty").statistics().waiters < 1:
            time.sleep(0.01)
    waiter.join(10)
    with Journal(tmp_path, fsync=fsync) as journal, \
            background_server(zmq=False, journal=journal) as urls, connect(urls.tcp) as client:
        assert [b"bytes"] == [r.value for r in client.list("l").query()]
        assert {"json": [1, 2]} == client.map("m").get("k")
        assert 0 == client.list("empty").statistics().waiters
        assert JobState.READY == client.jobs("released").state("1")
        kept = client.jobs("kept")
        assert JobState.CLAIMED == kept.state(held.id)  # its lease runs on
        kept.finish(held, "finished after a restart")  # the old claim token still works
        assert "finished after a restart" == kept.result(held.id, timeout=1)


def test_persistent_kinds_need_a_journal(tmp_path: Path) -> None:
    with background_server(zmq=False) as urls, connect(urls.tcp) as client, \
            pytest.raises(CorralError, match="needs a journal"):
        client.raw(("create", "p", "persistent_list"))
    with Journal(tmp_path) as journal, background_server(zmq=False, journal=journal) as urls, \
            connect(urls.tcp) as client:
        client.raw(("create", "p", "persistent_list"))
        assert Kind.LIST == Kind(client.raw(("open", "p")).words[4])


# -- the crash harness --------------------------------------------------------------------------


@pytest.fixture
def journal_dir(tmp_path: Path) -> Path:
    return tmp_path / "journal"


Served = tuple[subprocess.Popen[str], threading.Thread]


def serve(directory: Path, served: list[Served], *options: str) -> str:
    """`corral serve --journal DIR` as a child process; returns its URL."""
    proc = subprocess.Popen([sys.executable, "-m", "corral.adapters.cli", "serve", "--port",
                             "0", "--journal", str(directory), "--snapshot-size", "50000",
                             *options],
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if match:
            drain = threading.Thread(target=proc.stderr.read, daemon=True)
            drain.start()
            served.append((proc, drain))
            return f"corral://127.0.0.1:{match.group(1)}"
    proc.stderr.close()
    raise AssertionError(f"the server did not start: exit {proc.wait()}")


@pytest.fixture
def served() -> Iterator[list[Served]]:
    """Server processes started by a test, killed and reaped after it."""
    procs: list[Served] = []
    yield procs
    for proc, drain in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        drain.join(10)
        assert proc.stderr is not None
        proc.stderr.close()


def client_load(url: str, me: str, acked: dict[str, list[Any]], stop: threading.Event
                ) -> None:
    """Push, put, claim and finish until the server dies; note what was answered."""
    try:
        with connect(url) as client:
            items, jobs = client.list("items"), client.jobs("work", lease=30)
            n = 0
            while not stop.is_set() and n < 100_000:
                n += 1
                items.push_back(f"{me}-{n}")
                acked["pushed"].append(f"{me}-{n}")
                id = jobs.put(f"{me}-{n}")
                acked["put"].append(id)
                job = jobs.claim(timeout=0)
                job.finish(f"done {job.item}", result_ttl=3600)
                acked["finished"].append(job.id)
    except (Closed, ProtocolError, OSError, CorralError):
        pass


def test_sigkill_at_random_moments_loses_nothing_acknowledged(
        journal_dir: Path, served: list[Served]) -> None:
    """fsync=always: kill -9 the server while three clients push, put, claim and
    finish (and the server snapshots every 50 kB); after each restart every answered
    command's effect is there, and the replayed kernel's invariants hold (no
    half-applied command)."""
    rng = random.Random(6)
    acked: dict[str, list[Any]] = {"pushed": [], "put": [], "finished": []}
    for _round in range(4):
        url = serve(journal_dir, served)
        proc = served[-1][0]
        stop = threading.Event()
        clients = [threading.Thread(target=client_load,
                                    args=(url, f"{_round}.{i}", acked, stop))
                   for i in range(3)]
        for thread in clients:
            thread.start()
        time.sleep(rng.uniform(0.2, 0.8))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        stop.set()
        for thread in clients:
            thread.join(30)
        # Check from the journal itself, replayed here.
        kernel = JournaledKernel(Journal(journal_dir))
        kernel._check()
        pushed = [r.value for r in kernel.query("items")]
        assert set(acked["pushed"]) <= set(pushed)
        assert len(pushed) == len(set(pushed))  # nothing applied twice
        for id in acked["put"]:
            assert kernel.state("work", id) in (JobState.READY, JobState.CLAIMED,
                                                JobState.FINISHED)
        for id in acked["finished"]:
            assert JobState.FINISHED == kernel.state("work", id)
        kernel.journal.close()
    assert list(journal_dir.glob("snapshot-*")), "no snapshot was taken"
    assert len(acked["finished"]) > 100, {k: len(v) for k, v in acked.items()}


# -- snapshots ----------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(st.lists(COMMANDS, max_size=40))
def test_snapshots_and_journal_replay_equal_a_full_replay(log: list[Any]) -> None:
    """Snapshotting after nearly every call (waiters, leases and timers in flight)
    and replaying the rest gives the state a plain kernel reaches."""
    with tempfile.TemporaryDirectory() as directory:
        journal = Journal(directory, snapshot_size=1)
        written = JournaledKernel(journal, autocommit=True)
        run(written, log)
        journal.close()
        plain = Kernel()
        run(plain, log)
        with Journal(directory) as reopened:
            replayed = JournaledKernel(reopened)
            replayed._check()
            assert dump(plain) == dump(replayed)
        files = sorted(p.name for p in Path(directory).iterdir())
        assert 3 >= len(files)  # lock, and one generation: its snapshot and its journal


def test_a_crash_before_the_snapshot_is_in_place_recovers_from_older_files(
        tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    kernel = JournaledKernel(journal)
    kernel.create("l", "volatile_list")
    kernel.push_back("l", "before")
    journal.write()
    journal.rotate()  # ... and the process dies before the snapshot is in place
    kernel.push_back("l", "after")
    journal.close()
    assert not list(tmp_path.glob("snapshot-*"))
    with Journal(tmp_path) as reopened:
        assert ["before", "after"] == [r.value for r in
                                       JournaledKernel(reopened).query("l")]


def records_on_disk(directory: Path) -> int:
    """Bytes of records in the journal files (a snapshot may drop one meanwhile)."""
    total = 0
    for path in directory.glob("journal-*"):
        with contextlib.suppress(FileNotFoundError):
            total += end_of_records(path)
    return total


def test_a_steady_workload_keeps_the_journal_bounded(tmp_path: Path) -> None:
    """Pushes and pops for ever: snapshots keep the records on disk near the live
    state (24,000 records, about 1.5 MB, would pile up without them)."""
    with Journal(tmp_path, snapshot_size=32 << 10) as journal, \
            background_server(zmq=False, journal=journal) as urls, \
            connect(urls.tcp) as client:
        lst = client.list("steady")
        used = []
        for round in range(6):
            for i in range(2000):
                lst.push_back(f"{round}-{i}")
                lst.pop_back()
            lst.push_back(f"live {round}")
            used.append(records_on_disk(tmp_path))
        assert max(used) < 300 << 10, used  # a generation or two of 64 kB at most
        assert list(tmp_path.glob("snapshot-*"))
    with Journal(tmp_path) as journal:
        replayed = JournaledKernel(journal)
        assert [f"live {r}" for r in range(6)] == [r.value for r in replayed.query("steady")]


def test_the_embedded_facade_keeps_a_journal(tmp_path: Path) -> None:
    from corral.adapters.threads import Corral

    with Corral(journal=tmp_path) as corral:
        corral.list("l").push_back(b"raw")
        jobs = corral.jobs("j", lease=60, release_on_close=False)
        jobs.put("work")
        job = jobs.claim(timeout=1)
    with Corral(journal=tmp_path) as corral:
        assert [b"raw"] == [r.value for r in corral.list("l").query()]
        corral.jobs("j").finish(job, "done after a restart")
        assert "done after a restart" == corral.jobs("j").result(job.id, timeout=1)


def test_a_snapshot_from_another_version_opens(tmp_path: Path) -> None:
    """A snapshot holds the versioned state format, not the kernel's objects: another
    corral version's opens (a newer format is refused: tests/test_state_format.py)."""
    with Journal(tmp_path, snapshot_size=1) as journal:
        kernel = JournaledKernel(journal, autocommit=True)
        kernel.create("l", "volatile_list")
        kernel.push_back("l", 1)
    (snapshot,) = tmp_path.glob("snapshot-*")
    data = snapshot.read_bytes()
    version = data.split(b"\n")[1]
    snapshot.write_bytes(data.replace(b"\n" + version + b"\n", b"\n0.0.0-other\n", 1))
    with Journal(tmp_path) as journal:
        assert [1] == [r.value for r in JournaledKernel(journal).query("l")]


def test_corral_serve_names_the_damage_and_repair_starts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], served: list[Served]) -> None:
    from corral.adapters.cli import main

    path = journal_with(tmp_path, 10)
    data = bytearray(path.read_bytes())
    data[60] ^= 0x04
    path.write_bytes(bytes(data))
    assert 1 == main(["serve", "--port", "0", "--journal", str(tmp_path)])
    assert "corrupt record at offset" in capsys.readouterr().err
    with connect(serve(tmp_path, served, "--repair")) as client:
        count = len(client.list("l"))
        assert [r.value for r in client.list("l").query()] == list(range(count))


def test_the_embedded_trio_facade_keeps_a_journal(tmp_path: Path) -> None:
    from corral.adapters.trio import open_corral

    async def first() -> None:
        async with open_corral(journal=tmp_path) as corral:
            await (await corral.list("l")).push_back("kept")
            jobs = await corral.jobs("j", lease=60, release_on_close=False)
            await jobs.put("work", delay=30)

    async def second() -> None:
        async with open_corral(journal=tmp_path) as corral:
            assert ["kept"] == [r.value for r in await (await corral.list("l")).query()]
            jobs = await corral.jobs("j")
            assert JobState.DELAYED == await jobs.state("1")
            assert 1 == (await jobs.statistics()).delayed

    import trio

    trio.run(first)
    trio.run(second)


def test_opening_what_exists_is_not_journaled(tmp_path: Path) -> None:
    """The facades create-or-open on every handle; only a creation is a record."""
    with Journal(tmp_path) as journal:
        kernel = JournaledKernel(journal)
        kernel.create("l", "volatile_list")
        appended = journal.appended
        for _ in range(10):
            kernel.create("l", "volatile_list")
        assert appended == journal.appended
        with pytest.raises(CorralError):
            kernel.create("l", "job")  # a different kind: refused, not journaled
        assert appended == journal.appended


def test_a_damaged_length_in_the_middle_is_not_taken_for_a_torn_tail(
        tmp_path: Path) -> None:
    """A length that points past the end of the file, with good records after it, is
    damage, not the last write cut short."""
    path = journal_with(tmp_path, 10)
    data = bytearray(path.read_bytes())
    size, _ = FRAME.unpack_from(data, 0)
    second = FRAME.size + size  # the second record's header
    data[second + 3] = 0x7F  # its length now reaches far past the end
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptJournal, match=f"offset {second}"):
        Journal(tmp_path)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=12), st.data())
def test_any_flipped_byte_is_refused_or_cut_from_the_end(items: list[bytes],
                                                         data: st.DataObject) -> None:
    """Wherever a byte goes bad, opening either refuses with CorruptJournal or gives the
    records written, less at most the last one (a torn write looks like that):
    never a different record, never one from the middle missing."""
    with tempfile.TemporaryDirectory() as directory:
        with Journal(directory) as journal:
            kernel = JournaledKernel(journal)
            kernel.create("l", "volatile_list")
            for item in items:
                kernel.push_back("l", item)
            path = journal.path
        written = Journal(directory)
        expected = written.records
        written.close()
        raw = bytearray(path.read_bytes())
        at = data.draw(st.integers(0, min(len(raw), end_of_records(path) + 64) - 1))
        raw[at] ^= data.draw(st.integers(1, 255))
        path.write_bytes(bytes(raw))
        try:
            reopened = Journal(directory)
        except CorruptJournal:
            return
        with reopened:
            assert reopened.records in (expected, expected[:-1])


def test_a_snapshot_that_cannot_fork_is_tried_again_later(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """No memory for a child: the server logs it, keeps every file and goes on."""
    def no_fork() -> int:
        raise OSError(errno.ENOMEM, "Cannot allocate memory")

    monkeypatch.setattr(os, "fork", no_fork)
    with Journal(tmp_path, snapshot_size=4 << 10) as journal, \
            background_server(zmq=False, journal=journal) as urls, \
            connect(urls.tcp) as client:
        lst = client.list("l")
        for i in range(300):
            lst.push_back(i)
        assert 300 == len(lst)
    assert "cannot fork to write a snapshot" in caplog.text
    assert not list(tmp_path.glob("snapshot-*"))
    with Journal(tmp_path) as journal:
        assert 300 == JournaledKernel(journal).count("l")
