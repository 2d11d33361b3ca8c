"""Durability: a checksummed journal of the kernel's state-changing calls, replayed on
start.

The kernel is deterministic, so its state is a function of the calls made to it: the
journal records each state-changing call that succeeded (its name and arguments, ``now``
included) and a restart replays them into a fresh kernel, which ends in the exact state
the old one had, leases and deadlines included. Durability is per server (``corral
serve --journal DIR``, or an embedded corral given a ``Journal``): every container is
durable, and Tio's ``persistent_list`` and ``persistent_map`` name the plain kinds.

The file, ``DIR/journal.log``, is a sequence of records, each a little-endian u32
length, a u32 CRC-32 of the payload, and the payload: JSON ``[name, args, kwargs]``,
where bytes, JSON structures, job tokens and events (``give_back``'s receipt) are wrapped
so that nothing is ambiguous.
Space is reserved ahead with ``posix_fallocate`` before a call is applied, so a full
disk refuses the call (``JournalFailed``) instead of leaving memory ahead of the disk;
some room is kept back so that disconnects and timers, which no one can refuse, still
go through.
The unused reserved tail is zeros; the log ends at the first zero length.

Reading it back, a record that fails its checksum with nothing but zeros after it (or
the end of the file inside it) is a torn write: it is cut off with a warning. A bad
record anywhere else is corruption: opening fails with the file and offset, unless
``repair`` keeps the good prefix.

fsync policies: ``always`` (the default: a command is answered only after the fsync
that covers it; the server syncs many commands at once, so-called group commit),
``everysec`` (written at once, synced every second: a crash may lose the last second)
and ``no`` (written at once, synced when the OS likes).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import gc
import importlib.metadata
import inspect
import io
import json
import logging
import os
import pickle
import re
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs

from corral.kernel import CorralError, Event, InvalidArgument, Job, Kernel, Kind, check_value
from corral.kernel._values import VALUE_ARGUMENTS, check_items

from .commands import journaled

__all__ = ["FSYNC_POLICIES", "HEADROOM", "CorruptJournal", "Journal", "JournalFailed",
           "JournaledKernel", "export_state", "import_state"]

log = logging.getLogger("corral.journal")

FSYNC_POLICIES = ("always", "everysec", "no")
FRAME = struct.Struct("<II")  # payload length, CRC-32 of the payload
_CHUNK = 4 << 20  # bytes reserved at a time
HEADROOM = 256 << 10  # kept back for the calls a server makes on its own
# Calls no client asked for, which must not fail: a disconnect, the timers.
ESSENTIAL = frozenset({"close_session", "advance"})

# The kernel's methods that change its state (everything else only reads): from the
# command table, which a test holds to the kernel's methods.
MUTATING = journaled()


class JournalFailed(CorralError):
    """The journal could not take a command (the disk is full, say): the command was
    not applied."""


class CorruptJournal(CorralError):
    """The journal is damaged somewhere other than its tail."""


# -- records ----------------------------------------------------------------------------------


def _wrap(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"b": base64.b64encode(value).decode()}
    if isinstance(value, Kind):
        return value.value
    if isinstance(value, Job):
        return {"job": [_wrap(value.id), _wrap(value.item), value.attempt]}
    if isinstance(value, Event):  # give_back's receipt: its fields, each wrapped
        return {"event": [_wrap(value.container), _wrap(value.name), _wrap(value.key),
                          _wrap(value.value), _wrap(value.metadata)]}
    if isinstance(value, (list, tuple)) and bytes in map(type, value):  # put_many's items
        return {"l": [_wrap(item) for item in value]}
    if isinstance(value, (list, tuple, dict)):
        return {"j": value}
    raise TypeError(f"{type(value).__name__} is not JSON")


def _unwrap(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    if "b" in value:
        return base64.b64decode(value["b"])
    if "job" in value:
        id, item, attempt = value["job"]
        return Job(_unwrap(id), _unwrap(item), attempt)
    if "event" in value:
        return Event(*map(_unwrap, value["event"]))
    if "l" in value:
        return [_unwrap(item) for item in value["l"]]
    return value["j"]


def encode_call(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """A call's record payload. Raises InvalidArgument for an argument JSON cannot
    hold: the kernel's own error if it is a value the kernel would refuse (a value
    the kernel keeps always can be held)."""
    try:
        return json.dumps([name, [_wrap(a) for a in args],
                           {k: _wrap(v) for k, v in kwargs.items()}],
                          separators=(",", ":")).encode()
    except (TypeError, ValueError, RecursionError) as error:
        try:
            call = inspect.signature(getattr(Kernel, name)).bind(None, *args, **kwargs)
        except TypeError:  # not the kernel's arguments: the kernel would say so
            call = None
        arguments = call.arguments if call else {}
        for role, value in arguments.items():
            if role in VALUE_ARGUMENTS:
                check_value(value, name, arguments.get("name"), role)
            elif role == "items":
                check_items(value, name, arguments.get("name"))
        raise InvalidArgument(f"{name}: not journalable: {error}") from None


def decode_call(payload: bytes) -> tuple[str, list[Any], dict[str, Any]]:
    name, args, kwargs, *_ = json.loads(payload)
    return name, [_unwrap(a) for a in args], {k: _unwrap(v) for k, v in kwargs.items()}


def failed(payload: bytes) -> bytes:
    """The record of a call that raised but moved the kernel's clock: replayed, it
    must raise again."""
    return payload[:-1] + b",1]"


def is_failed(payload: bytes) -> bool:
    return payload.endswith(b",1]") and len(json.loads(payload)) == 4


_fdatasync = getattr(os, "fdatasync", os.fsync)  # not on macOS


def _allocate(fd: int, offset: int, length: int) -> None:
    """Reserve disk blocks, so that a full disk shows here and not in a later write.
    Where posix_fallocate is missing (macOS) the file is only extended: a full disk
    then fails a write, which stops the server instead of refusing one command."""
    allocate = getattr(os, "posix_fallocate", None)
    if allocate is None:
        os.ftruncate(fd, offset + length)
    else:
        allocate(fd, offset, length)


def _version() -> str:
    try:
        return importlib.metadata.version("corral")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _good_record_after(data: bytes, start: int) -> bool:
    """Whether a sound record starts anywhere after ``start``: what tells damage in
    the middle (records follow it) from a torn last write (nothing does). Records are
    JSON arrays, so only places where ``["`` follows a frame header are tried."""
    at = data.find(b'["', start + FRAME.size)
    while at != -1:
        size, crc = FRAME.unpack_from(data, at - FRAME.size)
        if 0 < size <= len(data) - at and zlib.crc32(data[at:at + size]) == crc:
            return True
        at = data.find(b'["', at + 1)
    return False


def frame(payload: bytes) -> bytes:
    return FRAME.pack(len(payload), zlib.crc32(payload)) + payload


# -- the file ---------------------------------------------------------------------------------


# Then the writer's corral version and a newline, the header and the state.
SNAPSHOT_MAGIC = b"corral-snapshot-2\n"  # the JSON state format (docs/state-format.md)
PICKLED_MAGIC = b"corral-snapshot-1\n"  # up to commit b6eaba1: pickled kernel objects
SNAPSHOT_FORMATS = {2: SNAPSHOT_MAGIC, 1: PICKLED_MAGIC}  # the snapshot file's versions
SNAPSHOT_HEADER = struct.Struct("<QI")  # length, CRC-32 of the state


@attrs.define
class Rotation:
    """A snapshot under way: the generation it starts, and the last one's file."""

    old_fd: int
    gen: int


class Journal:
    """The journal in ``directory``: read (and checked) when opened, appended after.

    Files come in generations: ``snapshot-G.bin`` is the kernel's state before the
    first record of ``journal-G.log``. Opening loads the newest snapshot and the
    records of its generation and any later ones (``records``), for replay. A snapshot
    starts a new generation and, once durable, lets the older files go, so that the
    directory stays about as big as the state plus what happened since.

    One process at a time: a second one opening the same directory fails. Appending is
    buffered; ``write()`` puts the buffer in the file and ``sync()`` makes it durable.
    ``readonly`` opens it to read only (for ``export_state``): nothing there changes,
    not even a torn tail, and it fails while a server holds the directory.
    """

    def __init__(self, directory: str | os.PathLike[str], *, fsync: str = "always",
                 repair: bool = False, snapshot_size: int = 64 << 20,
                 readonly: bool = False) -> None:
        if fsync not in FSYNC_POLICIES:
            raise InvalidArgument(f"fsync policy must be one of {', '.join(FSYNC_POLICIES)}, "
                                  f"not {fsync!r}")
        self.fsync = fsync
        self.snapshot_size = snapshot_size  # start one when a generation is this big
        self.directory = Path(directory)
        self.readonly = readonly
        if readonly:
            if not (self._gens("snapshot") or self._gens("journal")):
                raise JournalFailed(f"{self.directory} holds no journal")
            # Shared: a server holds it exclusively. With no lock file no one ever did.
            lock = self.directory / "lock"
            self._lock = open(lock if lock.exists() else os.devnull)  # noqa: SIM115
        else:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock = open(self.directory / "lock", "a")  # noqa: SIM115 (held until close)
        try:
            fcntl.flock(self._lock, (fcntl.LOCK_SH if readonly else fcntl.LOCK_EX)
                        | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise JournalFailed(f"{self.directory} is in use by another process") from None
        self.snapshot_path: Path | None = None  # the snapshot loaded
        self.snapshot_format = 2  # the loaded snapshot's file format (SNAPSHOT_FORMATS)
        try:
            self.snapshot, self.gen = self._load_snapshot()
            self.records: list[bytes] = []
            gens = [g for g in self._gens("journal") if g >= self.gen] or [self.gen]
            for g in gens:
                self.gen = g
                self._fd = os.open(self.path, os.O_RDONLY if readonly
                                   else os.O_RDWR | os.O_CREAT, 0o644)
                records, self.end = self._read(repair, last=g == gens[-1])
                self.records += records
                if g != gens[-1]:
                    os.close(self._fd)
        except BaseException:
            self._lock.close()
            raise
        self.snapshot_bytes = len(self.snapshot or b"")
        # A pickled snapshot is replaced at the first chance, so that it is read once.
        self.replace_snapshot = self.snapshot_format == 1 and not readonly
        self.reserved = max(os.fstat(self._fd).st_size, self.end)  # bytes allocated
        self._buffer = bytearray()
        self.appended = len(self.records)  # records appended, replayed ones included
        self.written = self.synced = self.appended  # ...in the file, ...made durable
        self.last_sync = time.monotonic()
        self.rotating = False  # a snapshot is being written

    @property
    def path(self) -> Path:
        """The current generation's journal file."""
        return self.directory / f"journal-{self.gen:08d}.log"

    def _gens(self, kind: str) -> list[int]:
        found = (re.fullmatch(rf"{kind}-(\d{{8}})\.(log|bin)", p.name)
                 for p in self.directory.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def _load_snapshot(self) -> tuple[bytes | None, int]:
        """The newest snapshot's state, checked against its CRC, and its generation
        (None and the oldest journal's generation, or 1, when there is none). Sets
        ``snapshot_format``: 2, the JSON state format, or 1, the pickled kernel objects
        of corral up to commit b6eaba1, for ``JournaledKernel`` to bring over once."""
        for gen in reversed(self._gens("snapshot")):
            path = self.snapshot_path = self.directory / f"snapshot-{gen:08d}.bin"
            data = path.read_bytes()
            format = next((f for f, magic in SNAPSHOT_FORMATS.items()
                           if data.startswith(magic)), 0)
            # After the magic: the writer's version, a newline, the header and the state.
            _, _, rest = data[len(SNAPSHOT_FORMATS.get(format, b"")):].partition(b"\n")
            if format and len(rest) >= SNAPSHOT_HEADER.size:
                size, crc = SNAPSHOT_HEADER.unpack_from(rest)
                state = rest[SNAPSHOT_HEADER.size:]
                if len(state) == size and zlib.crc32(state) == crc:
                    self.snapshot_format = format
                    return state, gen
            raise CorruptJournal(f"{path}: the snapshot is damaged; move it away to start "
                                 "from the previous one, if its journal is still there")
        return None, (self._gens("journal") or [1])[0]

    def _read(self, repair: bool, *, last: bool) -> tuple[list[bytes], int]:
        """Every good record of the current generation, and the offset after the last;
        cuts a torn tail (only the last generation may have one)."""
        data = self.path.read_bytes()
        records: list[bytes] = []
        offset = 0
        while offset + FRAME.size <= len(data):
            size, crc = FRAME.unpack_from(data, offset)
            if size == 0 and crc == 0:
                break  # the reserved, never written tail
            payload = data[offset + FRAME.size:offset + FRAME.size + size]
            if len(payload) == size and zlib.crc32(payload) == crc:
                records.append(bytes(payload))
                offset += FRAME.size + size
                continue
            if last and not _good_record_after(data, offset + FRAME.size):
                log.warning("%s: a torn record at offset %d (the last write before a "
                            "crash) is cut off", self.path, offset)
            elif repair and last:
                log.warning("%s: corrupt record at offset %d: keeping the %d records "
                            "before it, dropping %d bytes", self.path, offset,
                            len(records), len(data) - offset)
            else:
                raise CorruptJournal(f"{self.path}: corrupt record at offset {offset} "
                                     f"(after {len(records)} good ones)" + (
                                         "; start with --repair to keep the good ones and "
                                         "drop the rest" if last else ""))
            break
        if offset < len(data) and data[offset:].strip(b"\0") and not self.readonly:
            os.ftruncate(self._fd, offset)
            os.fsync(self._fd)
        return records, offset

    def reserve(self, size: int, *, essential: bool = False) -> None:
        """Make room for ``size`` more bytes, or raise JournalFailed. Room is kept
        back (HEADROOM) for ``essential`` calls, so that when the disk fills up clients'
        commands are refused while disconnects and timers still go through."""
        used = self.end + len(self._buffer) + size
        needed = used if essential else used + HEADROOM
        if needed <= self.reserved:
            return
        grow = max(_CHUNK, needed - self.reserved)
        try:
            _allocate(self._fd, self.reserved, grow)
        except OSError as error:
            if essential and used <= self.reserved:
                return
            raise JournalFailed(f"cannot grow the journal {self.path}: "
                                f"{error.strerror or error}") from None
        self.reserved += grow

    def append(self, payload: bytes) -> None:
        """Buffer one record (room for it was reserved)."""
        self._buffer += frame(payload)
        self.appended += 1

    def take(self) -> tuple[bytes, int, int]:
        """The buffered records to write: (bytes, offset, records up to which they go)."""
        data, self._buffer = bytes(self._buffer), bytearray()
        offset = self.end
        self.end += len(data)
        return data, offset, self.appended

    def write_at(self, data: bytes, offset: int) -> None:
        """Write taken records (any thread). An OSError here is fatal to the server."""
        view = memoryview(data)
        while view:
            written = os.pwrite(self._fd, view, offset)
            view, offset = view[written:], offset + written

    def write(self) -> None:
        """Write what is buffered (in the calling thread)."""
        data, offset, upto = self.take()
        if data:
            self.write_at(data, offset)
        self.written = upto

    def sync(self) -> None:
        # fdatasync, as Redis's appendfsync does: the data and the metadata needed to
        # read it back (the size, changed only when room is reserved), not the times.
        _fdatasync(self._fd)
        self.last_sync = time.monotonic()

    def commit(self) -> None:
        """Write what is buffered and sync as the policy says: for callers that apply
        one command at a time (the embedded facades)."""
        if self._buffer:
            self.write()
            if self.fsync == "always" or (self.fsync == "everysec"
                                          and time.monotonic() - self.last_sync >= 1.0):
                self.sync()
                self.synced = self.written

    # -- snapshots --------------------------------------------------------------------

    def wants_snapshot(self) -> bool:
        """Whether this generation has grown enough for a snapshot to pay: past
        ``snapshot_size`` and twice the last snapshot."""
        size = self.end + len(self._buffer)
        return not self.rotating and (self.replace_snapshot or size > max(
            self.snapshot_size, 2 * self.snapshot_bytes))

    def rotate(self) -> Rotation:
        """Start a new generation, whose snapshot must be the kernel's state now, with
        every record appended so far written (take a snapshot between writes). Then
        ``write_snapshot`` (any thread, or a child process) and ``retire``."""
        assert not self._buffer, "rotate after a write"
        rotation = Rotation(self._fd, self.gen + 1)
        self.gen += 1
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        self.end = self.reserved = 0
        self.rotating = True
        return rotation

    def write_snapshot(self, gen: int, state: bytes) -> int:
        """Put generation ``gen``'s snapshot in place, durably; returns its size. Until
        it is in place a crash recovers from the older files, all still there."""
        path = self.directory / f"snapshot-{gen:08d}.bin"
        temporary = path.with_suffix(".tmp")
        with open(temporary, "wb") as f:
            f.write(SNAPSHOT_MAGIC + _version().encode() + b"\n")
            f.write(SNAPSHOT_HEADER.pack(len(state), zlib.crc32(state)))
            f.write(state)
            f.flush()
            os.fsync(f.fileno())
        os.rename(temporary, path)
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return len(state)

    def retire(self, rotation: Rotation, size: int) -> None:
        """Once the snapshot is in place: sync and close the last generation's file and
        drop the files the snapshot makes useless."""
        _fdatasync(rotation.old_fd)
        os.close(rotation.old_fd)
        for kind, suffix in (("journal", "log"), ("snapshot", "bin")):
            for gen in self._gens(kind):
                if gen < rotation.gen:
                    (self.directory / f"{kind}-{gen:08d}.{suffix}").unlink()
        self.snapshot_bytes = size
        self.replace_snapshot = False
        self.rotating = False
        log.info("snapshot of generation %d: %d bytes", rotation.gen, size)

    def abandon(self, rotation: Rotation) -> None:
        """The snapshot failed: keep every file (recovery replays them all) and try
        again when the journal has grown again."""
        with contextlib.suppress(OSError):
            _fdatasync(rotation.old_fd)
        os.close(rotation.old_fd)
        self.snapshot_bytes = self.end  # wait for as much growth again
        self.replace_snapshot = False
        self.rotating = False

    def close(self) -> None:
        """Write and sync what is buffered, and let the directory go. Idempotent."""
        if self._lock.closed:
            return
        with contextlib.suppress(OSError):
            self.write()
            self.sync()
        os.close(self._fd)
        self._lock.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- the kernel that keeps one ----------------------------------------------------------------


class JournaledKernel(Kernel):
    """A Kernel that records its state-changing calls in ``journal``, after replaying
    the calls already there. A call that raises records nothing (it changed nothing);
    a call whose values cannot be journaled, or for which the disk has no room, raises
    before it is applied."""

    def __init__(self, journal: Journal, *, autocommit: bool = False) -> None:
        """``autocommit``: commit (and snapshot, when due) after every call, for
        callers that apply one command at a time; a server commits in groups."""
        super().__init__()
        self.autocommit = autocommit
        if journal.snapshot is not None:
            state = journal.snapshot
            if journal.snapshot_format == 1:
                state = _from_pickle(state, journal.snapshot_path)
            try:
                with _no_gc():
                    self.load_state(json.loads(state), _unwrap)
            except (ValueError, InvalidArgument) as error:  # not JSON, or not a state
                raise CorruptJournal(f"{journal.snapshot_path}: {error}") from None
            journal.snapshot = None
        self.journal = journal
        for index, payload in enumerate(journal.records):
            name, args, kwargs = decode_call(payload)
            try:
                getattr(Kernel, name)(self, *args, **kwargs)
            except CorralError as error:
                if not is_failed(payload):
                    raise CorruptJournal(f"{journal.path}: record {index} ({name}) does "
                                         f"not replay: {error}") from None
            else:
                if is_failed(payload):
                    raise CorruptJournal(f"{journal.path}: record {index} ({name}) "
                                         "succeeds where it failed")
            self.take_effects()
        journal.records = []  # replayed: free the memory

    def _exists(self, name: Any) -> bool:
        try:
            self.open(name)
        except CorralError:
            return False
        return True

    def snapshot(self) -> bytes:
        """The kernel's whole state, for ``Journal.write_snapshot`` (waiters, timers and
        sessions included: the records after it may refer to them)."""
        return encode_state(self)


def encode_state(kernel: Kernel) -> bytes:
    """``kernel``'s whole state as JSON in the corral-state format, values wrapped as
    records wrap them (docs/state-format.md)."""
    with _no_gc():
        return json.dumps(kernel.dump_state(_wrap), separators=(",", ":")).encode()


# -- the bridge from pickled snapshots ---------------------------------------------------------


class _KernelUnpickler(pickle.Unpickler):
    """Unpickles the kernel objects of a pickled snapshot, and nothing else: anything
    but the kernel's classes and the containers they are built of is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _PICKLED_GLOBALS:
            return super().find_class(module, name)
        if module.startswith("corral.kernel."):
            found = super().find_class(module, name)
            if isinstance(found, type) and found.__module__ == module:
                return found
        raise pickle.UnpicklingError(f"{module}.{name} is not a kernel class")


_PICKLED_GLOBALS = {("collections", "OrderedDict"), ("collections", "deque"),
                    ("sortedcontainers.sorteddict", "SortedDict")}
_PICKLED_KERNEL = {"_core", "_containers", "effects", "timers"}  # b6eaba1's Kernel.__dict__


def _from_pickle(data: bytes, path: Path | None) -> bytes:
    """The state, in the JSON state format, of a pickled snapshot
    (``corral-snapshot-1``): the kernel objects of corral up to commit b6eaba1, whose
    classes and attributes are the current ones (a test opens a journal b6eaba1
    wrote). It is as if that corral had written the JSON format: ``load_state`` then
    checks it as any other. Unpickling can run what the file says, so it is done only
    for the snapshot in a journal's own directory, which only a corral server writes,
    and only the kernel's classes are let in. Raises CorruptJournal for a snapshot of
    an older kernel, whose objects are not these.

    Snapshots were pickled from commit 787816f to b6eaba1; the kernel's objects took
    the shape they still have in f9157be (a priority FIFO, a timer heap)."""
    kernel = Kernel()
    try:
        with _no_gc():
            objects = _KernelUnpickler(io.BytesIO(data)).load()
            if not isinstance(objects, dict) or objects.keys() != _PICKLED_KERNEL:
                raise TypeError("not the attributes of b6eaba1's Kernel")
            kernel._core, kernel._containers = objects["_core"], objects["_containers"]
            return encode_state(kernel)
    except Exception as error:
        raise CorruptJournal(
            f"{path}: a pickled snapshot whose objects are not the kernel's of corral "
            f"commits f9157be to b6eaba1, the only pickled ones this corral ({_version()}) "
            f"reads ({type(error).__name__}: {error}): an older corral wrote it; open the "
            "directory with that one") from None


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Without the cycle collector: a state's millions of new objects would make it
    go over all the kernel's again and again (a job queue's dump then takes 3 times as
    long), and in a snapshot's child copy every page it touches."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def export_state(directory: str | os.PathLike[str]) -> bytes:
    """The state of the journal in ``directory``, its snapshot and records replayed,
    as ``encode_state`` writes it; nothing in the directory changes. Raises
    JournalFailed if a server holds the directory or it holds no journal, and
    CorruptJournal if the journal is damaged."""
    with Journal(directory, readonly=True) as journal:
        return encode_state(JournaledKernel(journal))


def import_state(directory: str | os.PathLike[str], state: bytes) -> Kernel:
    """Make a new journal in ``directory`` (absent or empty) whose snapshot is
    ``state``, a corral state of this version or an older one: it is loaded first, so
    what is written is checked and in this version's format. Returns the kernel it
    holds. Raises InvalidArgument for a state this corral cannot load or a directory
    that is not empty."""
    try:
        data = json.loads(state)
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise InvalidArgument(f"not a corral state: not JSON: {error}") from None
    kernel = Kernel()
    with _no_gc():
        kernel.load_state(data, _unwrap)
    path = Path(directory)
    if path.exists() and any(path.iterdir()):
        raise InvalidArgument(f"{path} is not empty: an import makes a new journal")
    with Journal(path) as journal:
        journal.write_snapshot(journal.gen, encode_state(kernel))
    return kernel


def _journaled(name: str) -> Callable[..., Any]:
    original = getattr(Kernel, name)

    def method(self: JournaledKernel, *args: Any, **kwargs: Any) -> Any:
        payload = encode_call(name, args, kwargs)
        self.journal.reserve(FRAME.size + len(payload) + 2, essential=name in ESSENTIAL)
        before = self.now
        existed = name == "create" and bool(args) and self._exists(args[0])
        try:
            result = original(self, *args, **kwargs)
        except CorralError:
            if self.now != before:  # it changed nothing but the clock: replay that too
                self.journal.append(failed(payload))
            raise
        journal = self.journal
        if not (name == "create" and existed):  # opening what exists changes nothing
            journal.append(payload)
        if self.autocommit:
            journal.commit()
            if journal.wants_snapshot():
                rotation = journal.rotate()
                journal.retire(rotation, journal.write_snapshot(rotation.gen,
                                                                self.snapshot()))
        return result

    method.__name__ = name
    method.__doc__ = original.__doc__
    return method


for _name in MUTATING:
    setattr(JournaledKernel, _name, _journaled(_name))
