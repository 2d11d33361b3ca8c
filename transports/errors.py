"""Error codes on the wire: ``answer error <code> <message>``, both ways."""

from __future__ import annotations

from corral.kernel import (
    AlreadyExists,
    Closed,
    CorralError,
    Empty,
    InvalidArgument,
    JobFailed,
    LeaseLost,
    LimitExceeded,
    NotFound,
    WrongKind,
)

from .codec import ProtocolError
from .journal import CorruptJournal, JournalFailed

__all__ = ["ACCESS_DENIED", "DETAILED", "INVALID_COMMAND", "code_of", "error_of"]

ACCESS_DENIED = "access_denied"
INVALID_COMMAND = "invalid_command"

_CODES: dict[type[CorralError], str] = {
    Empty: "empty",
    NotFound: "not_found",
    WrongKind: "wrong_kind",
    AlreadyExists: "already_exists",
    InvalidArgument: "invalid_argument",
    LeaseLost: "lease_lost",
    JobFailed: "job_failed",
    LimitExceeded: "limit_exceeded",
    Closed: "closed",
    ProtocolError: "protocol",
    JournalFailed: "journal_failed",
    CorruptJournal: "corrupt_journal",
}
_ERRORS = {code: error for error, code in _CODES.items()}

# The codes whose errors carry their whole text (lines and all) in a value field after
# the one-line message: ``answer error job_failed <last line> value string N``.
DETAILED = frozenset({"job_failed"})


def code_of(error: CorralError) -> str:
    """The wire code of an error."""
    for cls in type(error).__mro__:
        if cls in _CODES:
            return _CODES[cls]
    return "error"


def error_of(code: str, message: str) -> CorralError:
    """The error a wire code stands for (ProtocolError for codes it does not know,
    ``invalid_command`` and ``access_denied`` among them)."""
    return _ERRORS.get(code, ProtocolError)(message)
