"""A corral server on a background thread: for examples, tests and programs that want a
server beside them without running ``corral serve``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import attrs
import trio

from .server import Server
from .tcp import serve_tcp, server_tls

__all__ = ["Urls", "background_server"]


@attrs.frozen
class Urls:
    """Where a background server listens."""

    tcp: str  # corral://127.0.0.1:PORT, or corrals:// with TLS
    zmq: str  # zmq+tcp://127.0.0.1:PORT, or "" when not served
    port: int  # the TCP port
    http: str = ""  # the status page's http://127.0.0.1:PORT, or "" when not served


@contextmanager
def background_server(*, zmq: bool = True, zmq_options: dict[str, Any] | None = None,
                      http: dict[str, Any] | None = None, tls_cert: str | None = None,
                      tls_key: str | None = None, **server: Any) -> Iterator[Urls]:
    """Serve one kernel on 127.0.0.1, on ports the system picks: TCP (TLS only, given
    ``tls_cert`` and ``tls_key`` as for ``server_tls``), ZeroMQ too unless ``zmq`` is
    false, and with ``http`` (``serve_http``'s options, such as ``{}``) the status page
    (``corral[web]``). The server runs on a thread with its own trio loop and stops
    when the block exits. ``zmq_options`` go to ``serve_zmq``, the rest to ``Server``
    (``token``, ``limits``, ``kernel``)."""
    tls = server_tls(tls_cert, tls_key)
    started = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        async def main() -> None:
            try:
                async with trio.open_nursery() as nursery:
                    shared = Server(**server)
                    listeners = await nursery.start(partial(serve_tcp, shared, "127.0.0.1",
                                                            0, tls=tls))
                    port = listeners[0].socket.getsockname()[1]
                    endpoint = ""
                    if zmq:
                        from .zeromq import serve_zmq

                        endpoint = await nursery.start(partial(
                            serve_zmq, shared, "tcp://127.0.0.1:0", **(zmq_options or {})))
                    page = ""
                    if http is not None:
                        from corral.adapters.web import serve_http

                        page = await nursery.start(partial(serve_http, shared,
                                                           "127.0.0.1", 0, **http))
                    scheme = "corral" if tls is None else "corrals"
                    box["urls"] = Urls(f"{scheme}://127.0.0.1:{port}",
                                       f"zmq+{endpoint}" if endpoint else "", port, page)
                    box["stop"] = nursery.cancel_scope.cancel
                    box["token"] = trio.lowlevel.current_trio_token()
                    started.set()
            except Exception as error:  # it could not start: say so to the caller
                box["error"] = error
                started.set()

        trio.run(main)

    thread = threading.Thread(target=run, name="corral-server", daemon=True)
    thread.start()
    started.wait()
    if "error" in box:
        raise box["error"]
    try:
        yield box["urls"]
    finally:
        trio.from_thread.run_sync(box["stop"], trio_token=box["token"])
        thread.join(10)
