"""Values: the one rule for what corral keeps, the same on every backend.

A value (a record's value and metadata, an item of a feed, queue or job queue, a job's
result) is None, a bool, an int, a finite float, a str, bytes, or a list, tuple or dict
(with str keys) of values, nested at most ``MAX_DEPTH`` deep, with bytes only as a
whole value, not inside a list or dict (each of ``put_many``'s items is a whole
value). That is what every backend can carry: JSON
(over the wire, in the journal, in Redis) has no tuples, sets, bytes, non-str keys or
NaN, and readers recurse once per level; the wire and Redis carry bytes on their own.

What is kept, and comes back, is equal to what went in, as JSON gives it back: every
tuple a list (everywhere, embedded too), every list and dict a copy (changing the
caller's afterwards changes nothing kept), an int, float, str or bytes of a subclass
(an IntEnum, a bytearray) as the plain type. Every backend calls ``check_value`` where
a value comes in, before anything changes, so a value that cannot be kept raises the
same InvalidArgument everywhere and nothing is half-done.
"""

from __future__ import annotations

from typing import Any

from ._errors import InvalidArgument

__all__ = ["MAX_DEPTH", "VALUE_ARGUMENTS", "check_items", "check_reason", "check_value"]

#: How deep lists and dicts may nest in a value (a list of lists is 2 deep).
MAX_DEPTH = 64
#: The kernel's arguments that are values, by name, for the transports that check
#: values before the kernel sees them (put_many's ``items``: ``check_items``).
VALUE_ARGUMENTS = frozenset({"value", "metadata", "item", "result"})
# Python prints (and so JSON and the wire carry) ints of at most this many digits, by
# default (sys.int_info.default_max_str_digits).
_DIGITS = 4300
_INT_HIGH = 10 ** _DIGITS
_INT_LOW = -_INT_HIGH
# Kept as they come, at the cost of one type lookup: the hot path.
_PLAIN = frozenset({str, bytes, bool, type(None)})
_KINDS = "None, bool, int, float, str, bytes, list, tuple or dict"


class _Refused(Exception):
    """Why (part of) a value cannot be kept."""


def check_value(value: Any, op: str, name: Any, role: str = "value") -> Any:
    """``value`` as corral keeps it (see the module docstring): the ``role`` argument
    of ``op`` on container ``name``. Raises InvalidArgument, naming them, for what is
    not a value."""
    kind = type(value)
    if kind in _PLAIN or (kind is int and _INT_LOW < value < _INT_HIGH):
        return value
    try:
        return _kept(value, MAX_DEPTH, False)
    except _Refused as refused:
        raise InvalidArgument(f"{op} on {name!r}: {role} {_shown(value)} cannot be kept: "
                              f"{refused}") from None


def _shown(value: Any) -> str:
    """A short repr of ``value``: a list's or dict's may be long, deep or not even
    printable (an int past Python's digits), so those are named by their type."""
    if isinstance(value, (list, tuple, dict)):
        return f"<{type(value).__name__}>"
    try:
        text = repr(value)
    except Exception:  # a repr of the caller's own that fails, or a huge int
        return f"<{type(value).__name__}>"
    return text if len(text) <= 60 else f"{text[:57]}..."


def _kept(value: Any, depth: int, inside: bool) -> Any:
    """The kept form of ``value``, which may nest ``depth`` more levels; ``inside`` a
    list or dict. Raises _Refused."""
    kind = type(value)
    if kind in _PLAIN and not (inside and kind is bytes):
        return value
    if kind is int:
        if _INT_LOW < value < _INT_HIGH:
            return value
        raise _Refused(f"an int has at most {_DIGITS} digits")
    if kind is float:
        if value - value == 0:  # neither NaN nor infinite
            return value
        raise _Refused(f"{value} is not a finite float")
    if isinstance(value, (list, tuple, dict)):
        if depth == 0:
            raise _Refused(f"it nests deeper than {MAX_DEPTH} levels")
        if not isinstance(value, dict):
            return [_kept(item, depth - 1, True) for item in value]
        kept: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _Refused(f"a dict key is a str, not {_shown(key)}")
            kept[str.__str__(key)] = _kept(item, depth - 1, True)
        return kept
    if isinstance(value, (bytes, bytearray, memoryview)):
        if inside:
            raise _Refused("bytes go only as a whole value, not inside a list or dict")
        return bytes(value)
    # The scalars' subclasses, as their plain type (bool cannot be subclassed).
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return _kept(int.__int__(value), depth, inside)
    if isinstance(value, float):
        return _kept(float.__float__(value), depth, inside)
    raise _Refused(f"{kind.__name__} is none of {_KINDS}")


def check_items(items: Any, op: str, name: Any) -> list[Any]:
    """``put_many``'s items: a list (or tuple) of values, each one whole (so each may be
    bytes), kept as ``check_value`` keeps it. Raises InvalidArgument, naming them."""
    if not isinstance(items, (list, tuple)):
        raise InvalidArgument(f"{op} on {name!r}: items must be a list, not "
                              f"{type(items).__name__}")
    return [check_value(item, op, name, "item") for item in items]


def check_reason(reason: object, op: str, name: str) -> None:
    """A failed job's reason (``cancel``, ``stall``) is text, such as a worker's
    traceback, or None: anything else raises InvalidArgument, before the claim is
    touched."""
    if reason is not None and type(reason) is not str:
        raise InvalidArgument(f"{op} on {name!r}: a reason is a str or None, not "
                              f"{type(reason).__name__}")
