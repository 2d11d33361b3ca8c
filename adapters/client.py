"""Remote clients: the embedded facades' surface, over a connection to ``corral serve``.

``connect(url)`` returns the thread facade's ``Corral`` speaking to a server instead of
an embedded kernel, and ``open_client(url)`` the trio facade's: the same handles,
methods, results and errors. A connection is one kernel session on the server. Values
travel as str, bytes, int, float or JSON (a tuple comes back a list).

Reconnection is explicit: a lost connection is final for its client. Calls in flight and
parked waits fail with ``Closed``, later calls raise ``Closed``, and the server has
released the session's waits, subscriptions and (per each job queue's policy) leases.
To go on, connect again; a new connection is a new session, so claims held by the old
one must be claimed afresh.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from corral.transports.remote import RemoteKernel

from . import trio as trio_facade
from .threads import Corral

__all__ = ["connect", "open_client"]


def connect(url: str = "corral://127.0.0.1:2605", *, token: str | None = None) -> Corral:
    """A blocking, thread-safe client of the server at ``url`` (``corral://host:port``).

    Raises OSError if the server cannot be reached, Closed or ProtocolError if it
    refuses the token.
    """
    return Corral(kernel=RemoteKernel(url, token=token))


@asynccontextmanager
async def open_client(url: str = "corral://127.0.0.1:2605", *, token: str | None = None
                      ) -> AsyncIterator[trio_facade.Corral]:
    """The trio facade's surface over a connection to the server at ``url``, closed when
    the block exits. Cancelling a waiting call withdraws it on the server; an outcome
    already on its way is given back (a list item to the front, a claim cancelled)."""
    kernel = await trio.to_thread.run_sync(lambda: RemoteKernel(url, token=token))
    async with trio_facade.open_corral(kernel=kernel) as corral:
        yield corral
