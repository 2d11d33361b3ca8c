"""The requests of the client core (``connection.ClientConnection``) and the methods
that make them from the command table: each command the table describes becomes a
core method named as the kernel's, which places its arguments on the wire as the table
says and reads its answer back in the table's shape (``handlers`` writes it)."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import attrs

from corral.kernel import (
    ContainerStatistics,
    CorralError,
    Job,
    JobState,
    JobStatistics,
    Kind,
    Record,
    check_value,
)
from corral.kernel._values import VALUE_ARGUMENTS, check_items

from .codec import FIELDS, Message, ProtocolError, trailing_specs
from .commands import REQUIRED, Command, info_of, jobs_of, option_text
from .errors import DETAILED

__all__ = ["DECODE", "Decode", "Request", "Wait", "WaitState", "Withdrawn",
           "client_data_offset", "client_method", "field_value", "nothing", "pong",
           "served_value"]

def client_data_offset(words: tuple[str, ...]) -> int | None:
    """Where a server line's field specs start."""
    if words[0] == "answer":
        if len(words) > 2 and words[1] == "error" and words[2] in DETAILED:
            return trailing_specs(words, 3)
        return 3 if len(words) > 2 and words[1] == "ok" and words[2] == "data" else None
    if words[0] == "query":
        return 3 if len(words) > 2 and words[2] == "item" else None
    if words[0] == "event":
        for i in range(3, len(words)):
            if words[i] in FIELDS:
                return i
    return None


Decode = Callable[[Message, list[dict[str, Any]]], Any]


def nothing(message: Message, rows: list[dict[str, Any]]) -> None:
    return None


def field_value(message: Message, rows: list[dict[str, Any]]) -> Any:
    return message.fields.get("value")


def pong(message: Message, rows: list[dict[str, Any]]) -> None:
    if message.words[:3] != ("answer", "ok", "pong"):
        raise ProtocolError(f"odd reply to ping: {' '.join(message.words)}")


def _record(fields: dict[str, Any]) -> Record:
    return Record(fields.get("key"), fields.get("value"), fields.get("metadata"))



class Withdrawn(CorralError):
    """A cancelled wait was withdrawn before it was served: the cancel stands."""


@attrs.define(eq=False)
class Request:
    """One command in flight: done once its answer (and any query rows) is in, with
    ``value`` or ``error``. ``waker`` belongs to the shell (who to wake when done)."""

    decode: Decode = nothing
    done: bool = False
    value: Any = None
    error: BaseException | None = None
    waker: Any = None
    rows: list[dict[str, Any]] | None = None
    after: Request | None = None  # the open its handle waits on: its error is ours
    then: Callable[[Request], None] | None = None  # the core's own follow-up


class WaitState(enum.Enum):
    SENT = "sent"  # the command is on its way
    PARKED = "parked"  # the server parked it; its outcome comes as a tagged event
    WITHDRAWING = "withdrawing"  # unwait sent; its answer settles the wait
    DONE = "done"  # settled: value, error, Withdrawn or Closed


@attrs.define(eq=False)
class Wait(Request):
    """A wait command (wnp_next, wnp_key, take, claim, result, a blocking put): a
    Request with a tag and a life (``WaitState``)."""

    tag: int = 0
    handle: int = 0
    name: str = ""
    of: str = ""  # the name of the event that serves it (wnp_next, get, claimed, ...)
    key: Any = None  # wnp_key's key
    state: WaitState = WaitState.SENT
    parked: bool = False  # the server parked it (it did not complete at once)
    cancelling: bool = False  # cancel asked while SENT: withdraw once it parks
    gone: bool = False  # its caller is gone: what serves it is given back
    held: Message | None = None  # its outcome, come while WITHDRAWING
    receipt: dict[str, Any] | None = None  # what served it, until it is given back


# What a served wait's message decodes to, by the event that serves it.
def served_value(of: str, fields: dict[str, Any]) -> Any:
    if of == "claimed":
        if "key" not in fields:  # claim_many's jobs
            return jobs_of(fields["value"])
        return Job(fields["key"], fields.get("value"), fields["metadata"])
    if of == "put":
        return None
    return fields.get("value"), fields.get("metadata")





# -- the commands of the table, each a method named as the kernel's -------------------


def _statistics(message: Message, rows: list[dict[str, Any]]) -> ContainerStatistics:
    stats = dict(message.fields["value"])
    stats["kind"] = Kind(stats["kind"])
    if stats["kind"] is Kind.JOBS:
        return JobStatistics(**stats)
    return ContainerStatistics(**stats)


# How each shape of answer the table names is read (``protocol`` writes them).
DECODE: dict[str, Decode] = {
    "ok": nothing,
    "key": lambda m, r: m.fields["key"],
    "record": lambda m, r: _record(m.fields),
    "count": lambda m, r: int(m.words[3]),
    "property": field_value,
    "state": lambda m, r: JobState(m.fields["value"]),
    "statistics": _statistics,
    "value": field_value,
    "info": lambda m, r: info_of(m.fields),
    "ids": lambda m, r: [row.get("key") for row in r],
    "items": lambda m, r: [(row["key"], row.get("value")) for row in r],
    "records": lambda m, r: [_record(row) for row in r],
}


def client_method(command: Command) -> Callable[..., Request]:
    """The client core's method for a command, written from its table entry as attrs
    writes ``__init__``: the kernel method's signature less the session (``now`` is
    taken and ignored: the server keeps the time), each argument placed on the wire as
    the table says; it returns a Request, or a Wait for a command that may park."""
    assert command.kernel is not None
    names: dict[str, Any] = {"option_text": option_text, "check_value": check_value,
                             "check_items": check_items,
                             "decode": DECODE.get(command.answer, nothing)}
    params, keywords, body = ["self", "name"], list[str](), list[str]()
    fields = [a for a in command.args if a.field]
    options = [a for a in command.args if a.wire == "option"]
    for arg in command.args:
        param = arg.name
        if arg.default is not REQUIRED:
            names[f"_{arg.name}"] = arg.default
            param += f"=_{arg.name}"
        (keywords if arg.keyword else params).append(param)
    if command.clock:
        keywords.append("now=0.0")
    body.append("fields = {}" if fields else "fields = None")
    listed = options or command.waits or any(a.wire == "job" for a in fields)
    body.append("options = []" if listed else "options = ()")
    for arg in fields:
        if arg.name in VALUE_ARGUMENTS:  # refused here as the kernel would refuse it
            body.append(f"{arg.name} = check_value({arg.name}, {command.kernel!r}, name, "
                        f"{arg.name!r})")
        elif arg.name == "items":
            body.append(f"items = check_items(items, {command.kernel!r}, name)")
        if arg.pack is not None:
            names[f"pack_{arg.name}"] = arg.pack
            body.append(f"{arg.name} = pack_{arg.name}({arg.name})")
        if arg.wire == "job":
            body += [f"fields['key'] = {arg.name}.id",
                     f"options.append('attempt=' + str({arg.name}.attempt))"]
        elif arg.default is REQUIRED:
            body.append(f"fields[{arg.wire!r}] = {arg.name}")
        else:
            body.append(f"if {arg.name} is not None: fields[{arg.wire!r}] = {arg.name}")
    for arg in options:
        text = f"options.append({arg.name + '='!r} + option_text({arg.name}))"
        # a wait always says its timeout (the kernel's default is not the same for all)
        body.append(text if arg.name == "timeout" else f"if {arg.name} != _{arg.name}: {text}")
    if command.waits is not None:
        key = "fields.get('key')" if fields else "None"
        body.append(f"return self._wait({command.waits!r}, name, [{command.wire!r}, *options], "
                    f"fields, {key})")
    else:
        body.append(f"return self._on({command.wire!r}, name, fields, decode, options)")
    signature = ", ".join(params + (["*", *keywords] if keywords else []))
    source = (f"def {command.kernel}({signature}):\n"
              + "".join(f"    {line}\n" for line in body))
    exec(compile(source, f"<corral command {command.wire}>", "exec"), names)
    method: Callable[..., Request] = names[command.kernel]
    method.__doc__ = f"``{command.wire}`` (see ``Kernel.{command.kernel}``)."
    return method
