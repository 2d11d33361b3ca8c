"""corral: an embedded coordination kernel for threads and trio tasks, with transports.

The names most programs need are here::

    import corral

    with corral.Corral() as c:                     # embedded, for threads
        ...
    with corral.connect("corral://127.0.0.1:2605") as c:   # the same surface, remote
        ...
    async with corral.open_corral() as c:          # embedded, for trio tasks
        ...

``Job`` is what a thread facade's ``claim`` returns (``finish``, ``cancel``, ``stall``,
``touch``, ``finish_and_claim``); ``corral.kernel.Job`` is the kernel's plain record of
a claim, without those methods. The trio facade's claimed job is ``corral.adapters.trio.Job``.

Every error corral raises is a ``CorralError`` and is named here: ``corral.Empty``,
``corral.NotFound``, ... The rest lives in ``corral.kernel`` (the state machine),
``corral.transports`` (codec, servers, journal) and ``corral.adapters`` (facades,
clients, workers, the command line).
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from corral.kernel import (
    AlreadyExists,
    Closed,
    CorralError,
    Empty,
    InvalidArgument,
    JobFailed,
    JobState,
    LeaseLost,
    LimitExceeded,
    NotFound,
    WrongKind,
)

if TYPE_CHECKING:
    from corral.adapters.client import connect, open_client
    from corral.adapters.threads import Corral, Job
    from corral.adapters.trio import open_corral
    from corral.adapters.workers import (
        CallFailed,
        CallTimeout,
        Executor,
        Tasks,
        Worker,
        WorkerPool,
        call,
        push_task,
    )
    from corral.transports.background import background_server

try:
    __version__ = version("corral")
except PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "0+unknown"

__all__ = [
    "AlreadyExists",
    "CallFailed",
    "CallTimeout",
    "Closed",
    "Corral",
    "CorralError",
    "Empty",
    "Executor",
    "InvalidArgument",
    "Job",
    "JobFailed",
    "JobState",
    "LeaseLost",
    "LimitExceeded",
    "NotFound",
    "Tasks",
    "Worker",
    "WorkerPool",
    "WrongKind",
    "__version__",
    "background_server",
    "call",
    "connect",
    "open_client",
    "open_corral",
    "push_task",
]

# The errors are defined in corral.kernel's private modules; a traceback names them by
# the public name, corral.Empty, which is also where pickle finds them.
for _name in __all__:
    _value = globals().get(_name)
    if isinstance(_value, type) and issubclass(_value, CorralError):
        _value.__module__ = __name__
del _name, _value

# The facades, clients and workers import trio, ZeroMQ and the transports: they load on
# first use, so that ``import corral.kernel`` stays light.
_LAZY = {
    "Corral": "corral.adapters.threads",
    "Job": "corral.adapters.threads",
    "open_corral": "corral.adapters.trio",
    "connect": "corral.adapters.client",
    "open_client": "corral.adapters.client",
    "background_server": "corral.transports.background",
    **dict.fromkeys(["CallFailed", "CallTimeout", "Executor", "Tasks", "Worker",
                     "WorkerPool", "call", "push_task"], "corral.adapters.workers"),
}


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'corral' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
