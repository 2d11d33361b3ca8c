"""Remote clients: the embedded facades' surface, over a connection to ``corral serve``.

``connect(url)`` returns the thread facade's ``Corral`` speaking to a server instead of
an embedded kernel: the same handles, methods, results and errors. A connection is one
kernel session on the server.

Reconnection is explicit: a lost connection is final for its client. Calls in flight and
parked waits fail with ``Closed``, later calls raise ``Closed``, and the server has
released the session's waits, subscriptions and (per each job queue's policy) leases.
To go on, connect again; a new connection is a new session, so claims held by the old
one must be claimed afresh.
"""

from __future__ import annotations

from corral.transports.remote import RemoteKernel

from .threads import Corral

__all__ = ["connect"]


def connect(url: str = "corral://127.0.0.1:2605", *, token: str | None = None) -> Corral:
    """A blocking, thread-safe client of the server at ``url`` (``corral://host:port``).

    Raises OSError if the server cannot be reached, Closed or ProtocolError if it
    refuses the token.
    """
    return Corral(kernel=RemoteKernel(url, token=token))
