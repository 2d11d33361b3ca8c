"""Every command of the protocol, described once.

Each ``Command`` says what a command is called (by the kernel, the facades and the
wire), what it takes (each argument's place on the wire, its type and default), whether
it may wait, whether it changes state, and the shape of its answer. Everything else
reads this table: the server's dispatch (``protocol``), the client core's encoding and
decoding (``connection``), the journal's set of mutating kernel methods, and the list
of commands in docs/protocol.md (a test holds them equal). Adding a command is a kernel
method, one entry here and its docs.

One word per operation: a command is called on the wire what the kernel and the
facades call it, except where the classic Tio protocol named it first (``get_count``,
``wnp_next``, ``wnp_key``) and a queue's ``put``/``get``, named as ``queue.Queue``'s
on a queue handle and ``queue_put``/``queue_get`` everywhere else.
"""

from __future__ import annotations

import base64
import enum
import math
from collections.abc import Callable, Iterator
from typing import Any

import attrs

from corral.kernel import InvalidArgument, Job, JobInfo, JobState

__all__ = ["ANSWERS", "COMMANDS", "KERNEL_ONLY", "NOT_SUPPORTED", "Arg", "Command", "by_kernel",
           "by_wire", "info_fields", "info_of", "journaled"]

REQUIRED: Any = attrs.make_class("Required", {}, repr=False)()  # a field that must be sent


def number(text: str) -> float:
    """A finite float."""
    value = float(text)
    if not math.isfinite(value):
        raise InvalidArgument(f"{text!r} is not a finite number")
    return value


def timeout(text: str) -> float | None:
    """A wait's timeout: seconds, or ``none``/``inf`` for no limit."""
    return None if text in ("none", "inf") else number(text)


def int_or_none(text: str) -> int | None:
    return None if text == "none" else int(text)


def boolean(text: str) -> bool:
    try:
        return {"true": True, "false": False}[text]
    except KeyError:
        raise InvalidArgument(f"{text!r} is not true or false") from None


def option_text(value: Any) -> str:
    """How an option's value is written on the wire (what ``Arg.parse`` reads)."""
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


@attrs.frozen
class Arg:
    """One argument of a command, after the session and the container's name.

    ``wire`` is where it travels: a field (``key``, ``value``, ``metadata``), an
    ``option`` word (``name=value``, read by ``parse``), or a claim token (``job``: the
    job id in ``key``, its attempt as ``attempt=N``)."""

    name: str
    wire: str
    default: Any = REQUIRED
    parse: Callable[[str], Any] = str
    keyword: bool = False  # keyword-only in the kernel's signature
    # For a field: the argument as the field carries it, and back (None: as it is).
    pack: Callable[[Any], Any] | None = None
    unpack: Callable[[Any], Any] | None = None

    @property
    def field(self) -> bool:
        return self.wire in ("key", "value", "metadata", "job")


# The shapes of answers, each written by the server (``protocol``) and read by the
# client core (``connection``) under the same name:
ANSWERS = (
    "ok",  # answer ok
    "key",  # answer ok data with the result in key (a new id)
    "record",  # answer ok data key value metadata
    "count",  # answer ok count N (Tio's)
    "property",  # answer ok data key value
    "state",  # answer ok data key value (a job state's name)
    "statistics",  # answer ok data value {...}
    "ids",  # a query: a row per id (key)
    "items",  # a query: a row per item (key value)
    "records",  # a query: a row per record (key value metadata)
    "value",  # answer ok data value
    "info",  # answer ok data key value metadata: a job's id, item, and the rest (JSON)
    "served",  # a wait: what served it (a record, a job token, a result, a put)
    "special",  # written and read by hand: see the command's own docs
)


@attrs.frozen
class Command:
    """One command. ``kernel`` names the kernel method it calls (and the facade and
    client core methods, which take the same arguments less the session); ``wire`` is
    its word on the wire. A command that ``waits`` takes the session first and the
    options ``timeout=`` and ``tag=``; ``waits`` is the name of the event that serves
    it. ``clock``: the kernel method takes ``now``. ``special``: its server handler
    and client method are written by hand (sessions, handles, subscriptions)."""

    wire: str
    kernel: str | None
    args: tuple[Arg, ...] = ()
    answer: str = "ok"
    mutates: bool = False
    waits: str | None = None
    clock: bool = False
    special: bool = False
    fields: bool = False  # takes fields although no Arg says so (a special's)
    classic: bool = False  # Tio's: kept byte for byte
    summary: str = ""

    def __attrs_post_init__(self) -> None:
        assert self.answer in ANSWERS, self.answer

    @property
    def takes_fields(self) -> bool:
        return self.fields or any(arg.field for arg in self.args)

    @property
    def options(self) -> dict[str, Callable[[str], Any]]:
        """The option words it takes, with their parsers (``tag`` for waits)."""
        options = {a.name: a.parse for a in self.args if a.wire == "option"}
        if self.waits is not None:
            options["tag"] = str
        return options


def _cmd(wire: str, *args: Arg, kernel: str | None = "", **kw: Any) -> Command:
    return Command(wire, wire if kernel == "" else kernel, tuple(args), **kw)


def _wait(wire: str, kernel: str, waits: str, *args: Arg, timeout_default: Any = None,
          **kw: Any) -> Command:
    wait_for = Arg("timeout", "option", timeout_default, timeout, True)
    return Command(wire, kernel, (*args, wait_for), waits=waits, mutates=True,
                   clock=True, answer="served", **kw)


def items_field(items: list[Any]) -> Any:
    """``put_many``'s items as its value field: the JSON list, or, when some items are
    bytes (which JSON cannot hold), ``{"items": [...], "raw": [i, ...]}`` with those
    items base64'd and their indexes listed. ``items_of`` reads either back."""
    raw = [i for i, item in enumerate(items) if type(item) is bytes]
    if not raw:
        return items
    return {"items": [base64.b64encode(item).decode() if type(item) is bytes else item
                      for item in items], "raw": raw}


def items_of(field: Any) -> Any:
    if not (isinstance(field, dict) and isinstance(field.get("items"), list)):
        return field  # a plain list, or not a list at all: the kernel says so
    items = list(field["items"])
    for i in field.get("raw", []):
        if not (type(i) is int and 0 <= i < len(items) and isinstance(items[i], str)):
            raise InvalidArgument(f"put_many: raw index {i!r} names no base64 item")
        items[i] = base64.b64decode(items[i])
    return items


_key, _value = Arg("key", "key"), Arg("value", "value")
_metadata = Arg("metadata", "metadata", None)
_id, _item = Arg("id", "key"), Arg("item", "value")
_job = Arg("job", "job")

COMMANDS: tuple[Command, ...] = (
    # sessions and containers
    _cmd("ping", kernel=None, special=True, classic=True,
         summary="`ping [WORD ...]`: `answer ok pong WORD ...`"),
    _cmd("ver", kernel=None, special=True, classic=True, summary="the server's version"),
    _cmd("auth", kernel=None, special=True, classic=True,
         summary="`auth TOKEN` (or Tio's `auth USER clean TOKEN`)"),
    _cmd("create", special=True, classic=True, mutates=True,
         summary="`create NAME TYPE [option=value ...] [handle=N]`: a handle"),
    _cmd("open", special=True, classic=True,
         summary="`open NAME [TYPE] [handle=N]`: a handle"),
    _cmd("close", kernel="unsubscribe", special=True, classic=True, mutates=True,
         summary="`close H`: let the handle go (and its subscription)"),
    _cmd("delete_container", special=True, mutates=True,
         summary="`delete_container [TYPE] NAME`"),
    _cmd("statistics", answer="statistics", summary="counts, waiters, subscribers"),
    _cmd("get_property", _key, kernel="get_property", answer="property", classic=True),
    _cmd("set_property", _key, _value, mutates=True, classic=True),
    _cmd("subscribe", kernel="subscribe", special=True, classic=True, mutates=True,
         summary="`subscribe H [START|__none__]`: its events, as `event H NAME ...`; "
                 "the records from START first (a map without START: all of them, as "
                 "Tio's classic server did)"),
    _cmd("unsubscribe", special=True, classic=True, mutates=True),
    _cmd("unwait", kernel="cancel_wait", special=True, mutates=True,
         summary="`unwait H [tag=T]`: withdraw a parked wait: data value 1, or 0 if "
                 "it was served first"),
    _cmd("give_back", special=True, fields=True, mutates=True, clock=True,
         summary="`give_back H of=EVENT` with the delivery's fields: its exact inverse"),
    _cmd("stats", kernel="containers", special=True,
         summary="the server's version, uptime, connections and containers"),
    # records: lists and maps
    _cmd("get_count", kernel="count", answer="count", classic=True),
    _cmd("get", _key, answer="record", classic=True),
    _cmd("set", _key, _value, _metadata, mutates=True, classic=True),
    _cmd("insert", _key, _value, _metadata, mutates=True, classic=True),
    _cmd("delete", _key, mutates=True, classic=True),
    _cmd("clear", mutates=True, classic=True),
    _cmd("query", kernel="query", answer="records", special=True, classic=True,
         summary="`query H [START [END]]`: the records, as query rows"),
    _cmd("push_back", _value, _metadata, mutates=True, classic=True),
    _cmd("push_front", _value, _metadata, mutates=True, classic=True),
    _cmd("pop_front", answer="record", mutates=True, classic=True),
    _cmd("pop_back", answer="record", mutates=True, classic=True),
    _wait("wnp_next", "wait_pop_next", "wnp_next", classic=True),
    _cmd("keys", answer="ids"),
    _wait("wnp_key", "wait_pop_key", "wnp_key", _key, classic=True),
    # feeds and sorted feeds
    _cmd("publish", _item, Arg("id", "key", None), answer="key", mutates=True),
    _cmd("retract", _id, mutates=True),
    _cmd("ids", Arg("state", "option", None, str, True), Arg("start", "option", 0, int, True),
         Arg("end", "option", None, int_or_none, True), answer="ids"),
    _cmd("items", answer="items"),
    _cmd("append", _item, answer="key", mutates=True),
    _cmd("prepend", _item, answer="key", mutates=True),
    _cmd("insert_before", Arg("rel_id", "key"), _item, answer="key", mutates=True),
    _cmd("insert_after", Arg("rel_id", "key"), _item, answer="key", mutates=True),
    _cmd("edit", _id, _item, mutates=True),
    _cmd("move_before", Arg("rel_id", "value"), _id, mutates=True),
    _cmd("move_after", Arg("rel_id", "value"), _id, mutates=True),
    _cmd("move_first", _id, mutates=True),
    _cmd("move_last", _id, mutates=True),
    # queues
    _wait("queue_put", "queue_put", "put", _item,
          Arg("priority", "option", 0, int, True), timeout_default=0.0),
    _wait("queue_get", "queue_get", "get"),
    # jobs
    _cmd("put", _item, Arg("priority", "option", 0, int, True),
         Arg("delay", "option", 0.0, number, True), Arg("id", "key", None, keyword=True),
         answer="key", mutates=True, clock=True),
    _wait("claim", "claim", "claimed", Arg("lease", "option", None, number, True)),
    _cmd("put_many", Arg("items", "value", pack=items_field, unpack=items_of),
         Arg("priority", "option", 0, int, True),
         Arg("delay", "option", 0.0, number, True), answer="value", mutates=True,
         clock=True, summary="`put_many H` with the items as a list in value (bytes items: "
                             "{\"items\": [...], \"raw\": [i, ...]}, base64): data value "
                             "(their ids)"),
    _wait("claim_many", "claim_many", "claimed", Arg("n", "option", 1, int),
          Arg("lease", "option", None, number, True),
          summary="`claim_many H n=N`: up to N ready jobs at once, as data value [[id, "
                  "item, attempt], ...]; with none ready it parks as claim does, and one "
                  "job serves it"),
    _wait("finish_claim", "finish_claim", "claimed", _job, Arg("result", "value", None),
          Arg("result_ttl", "option", None, number, True),
          Arg("lease", "option", None, number, True),
          summary="finish the job and claim the next: answers (or is served) as claim"),
    _cmd("finish", _job, Arg("result", "value", None),
         Arg("result_ttl", "option", None, number, True), mutates=True, clock=True),
    _cmd("cancel", _job, Arg("delay", "option", None, number, True),
         Arg("reason", "value", None, keyword=True), mutates=True, clock=True),
    _cmd("stall", _job, Arg("reason", "value", None), mutates=True),
    _cmd("touch", _job, Arg("lease", "option", None, number, True), mutates=True,
         clock=True),
    _cmd("retry", _id, mutates=True, clock=True),
    _cmd("retry_all", answer="value", mutates=True, clock=True,
         summary="retry every stalled job: data value (how many)"),
    _wait("result", "result", "result", _id),
    _cmd("state", _id, answer="state"),
    _cmd("info", _id, answer="info"),
)

# Tio's commands that corral refuses, and why: each is answered ``invalid_argument
# not supported: ...``, not ``invalid_command``, so that a classic client learns what
# to use instead.
NOT_SUPPORTED: dict[str, str] = {
    "diff_start": "corral has no diffs; use subscribe",
    "diff": "corral has no diffs; use subscribe",
    "set_permission": "corral has no per-user permissions; serve --token guards the "
                      "whole server",
}

# The kernel's methods that are no command of their own, and whether each changes
# state (and so is journaled).
KERNEL_ONLY: dict[str, bool] = {
    "open_session": True, "close_session": True, "advance": True,
    "sessions": False, "options": False, "next_deadline": False,
    "take_effects": False,
    # for inspection (the status page): no command of their own
    "metrics": False, "peek": False, "waiters": False, "session_info": False,
    # the whole state: what a journal's snapshot holds and starts from, never a record
    "dump_state": False, "load_state": False,
}


def info_fields(info: JobInfo) -> dict[str, Any]:
    """A ``JobInfo`` as an answer's fields: the id in key, the item in value (any wire
    type), the rest as JSON in metadata, a bytes result base64'd (and ``raw_result``
    saying so). ``info_of`` reads it back."""
    rest = attrs.asdict(info, recurse=False)
    del rest["id"], rest["item"]
    rest["state"] = info.state.value
    if type(info.result) is bytes:
        rest["result"], rest["raw_result"] = base64.b64encode(info.result).decode(), True
    return {"key": info.id, "value": info.item, "metadata": rest}


def info_of(fields: dict[str, Any]) -> JobInfo:
    rest = dict(fields["metadata"])
    rest["state"] = JobState(rest["state"])
    if rest.pop("raw_result", False):
        rest["result"] = base64.b64decode(rest["result"])
    return JobInfo(id=fields["key"], item=fields.get("value"), **rest)


def job_rows(jobs: list[Job]) -> list[list[Any]]:
    """``claim_many``'s jobs as its answer's JSON value: ``[id, item, attempt]`` each, a
    bytes item base64'd with a fourth element, ``"raw"``, saying so. ``jobs_of`` reads
    them back."""
    return [[job.id, base64.b64encode(job.item).decode(), job.attempt, "raw"]
            if type(job.item) is bytes else [job.id, job.item, job.attempt] for job in jobs]


def jobs_of(rows: list[list[Any]]) -> list[Job]:
    return [Job(id, base64.b64decode(item) if raw else item, attempt)
            for id, item, attempt, *raw in rows]


def by_wire() -> dict[str, Command]:
    return {c.wire: c for c in COMMANDS}


def by_kernel() -> dict[str, Command]:
    """The commands whose kernel method the client core and facades call by name."""
    return {c.kernel: c for c in COMMANDS if c.kernel is not None and not c.special}


def journaled() -> tuple[str, ...]:
    """Every kernel method that changes state: what the journal records."""
    names = {c.kernel for c in COMMANDS if c.mutates and c.kernel is not None}
    names |= {name for name, mutates in KERNEL_ONLY.items() if mutates}
    return tuple(sorted(names))


def data_commands() -> frozenset[str]:
    """The wire words of the commands whose lines may end in field specs."""
    return frozenset(c.wire for c in COMMANDS if c.takes_fields)


def positional(command: Command) -> Iterator[Arg]:
    return (a for a in command.args if not a.keyword)
