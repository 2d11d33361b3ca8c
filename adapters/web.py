"""The live status page, ``/metrics`` and ``/healthz`` of a corral, over HTTP.

``corral serve --http HOST:PORT`` serves it beside the protocol; an embedded corral
serves it on request: ``Corral.serve_status()`` (threads: from a background thread) or
``await nursery.start(corral.serve_status)`` (trio). It needs the ``corral[web]`` extra:
hypercorn, whose trio worker runs it on the same trio loop as a server, so that a view is
one instant of the kernel with no lock; starlette, a small ASGI framework (routing,
responses, streaming) with nothing to build; prometheus_client, the text format.

The page is one HTML file (``status.html``, vanilla JS); it renders the JSON views of
``_status.Views`` and keeps them live from ``/api/stream``, Server-Sent Events that send
a view at once and again whenever it changes (checked every ``interval`` seconds): a
slow client holds one message, never a backlog, and at most ``max_clients`` streams run.

Safety: loopback only unless a token is set; beyond loopback every route but
``/healthz`` needs the token (``Authorization: Bearer TOKEN`` or ``?token=``). Nothing
changes state without the token in a header (a cross-site form cannot send one), and
without a server token the page is read-only. Bad requests get a 4xx and a JSON error.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from importlib.resources import files
from typing import TYPE_CHECKING, Any

import trio

from corral.kernel import CorralError, InvalidArgument, NotFound
from corral.transports.tcp import is_loopback

from ._status import ServerSource, Source, ThreadsSource, TrioSource, Views

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from corral.transports.server import Server

__all__ = ["StatusThread", "is_loopback", "serve_http", "serve_status"]

log = logging.getLogger("corral.http")

MAX_CLIENTS = 16  # live streams at once
INTERVAL = 1.0  # seconds between checks for a change, per stream
KEEPALIVE = 15.0  # seconds of silence before a comment keeps a stream open
MAX_LIMIT = 1000  # rows per page


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``, or a bare ``PORT`` on 127.0.0.1) for ``--http``."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]") if sep else "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:
        raise InvalidArgument(f"--http {text!r}: expected HOST:PORT with a port 0-65535")
    return host or "127.0.0.1", number


class Page:
    """The ASGI app over one ``Views``."""

    def __init__(self, views: Views, *, token: str | None, reads_need_token: bool,
                 max_clients: int = MAX_CLIENTS, interval: float = INTERVAL) -> None:
        self.views = views
        self.token = token
        self.reads_need_token = reads_need_token
        self.max_clients = max_clients
        self.interval = interval
        self.clients = 0
        from prometheus_client import CollectorRegistry

        self.registry = CollectorRegistry(auto_describe=False)  # this page's alone
        self.registry.register(views)

    # -- tokens -----------------------------------------------------------------------

    def _given(self, request: Request, *, header_only: bool = False) -> str | None:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return header[7:].strip()
        return None if header_only else request.query_params.get("token")

    def _matches(self, given: str | None) -> bool:
        return bool(self.token and given
                    and hmac.compare_digest(given.encode(), self.token.encode()))

    def _refused(self, request: Request) -> Response | None:
        """A 401 for a read that needs the token and lacks it."""
        if self.reads_need_token and not self._matches(self._given(request)):
            return _error(401, "this page is served beyond loopback: send the token "
                               "(Authorization: Bearer TOKEN, or ?token=)")
        return None

    def _may_act(self, request: Request) -> bool:
        return self._matches(self._given(request, header_only=True))

    # -- routes -----------------------------------------------------------------------

    def app(self) -> Starlette:
        from starlette.applications import Starlette
        from starlette.routing import Route

        html = files("corral.adapters").joinpath("status.html").read_text("utf-8")

        async def page(request: Request) -> Response:
            from starlette.responses import HTMLResponse

            return self._refused(request) or HTMLResponse(html)

        def view(build: Callable[[Request], dict[str, Any]]) -> Callable[..., Any]:
            async def endpoint(request: Request) -> Response:
                from starlette.responses import JSONResponse

                refused = self._refused(request)
                if refused is not None:
                    return refused
                try:
                    body = build(request)
                except (CorralError, ValueError) as error:
                    return _failure(error)
                body["actions"] = self._may_act(request)
                body["token_set"] = self.token is not None
                return JSONResponse(body)
            return endpoint

        def action(run: Callable[..., Awaitable[dict[str, Any]]]) -> Callable[..., Any]:
            async def endpoint(request: Request) -> Response:
                from starlette.responses import JSONResponse

                if self.token is None:
                    return _error(403, "read-only: the server has no token")
                if not self._may_act(request):
                    return _error(401, "actions need the token: Authorization: Bearer "
                                       "TOKEN")
                try:
                    result = await run(**request.path_params)
                except CorralError as error:
                    return _failure(error)
                log.info("status page: %s %s", request.url.path, result)
                return JSONResponse(result)
            return endpoint

        views = self.views
        routes = [
            Route("/", page), Route("/containers/{name:path}", page),
            Route("/sessions", page), Route("/server", page),
            Route("/api/overview", view(lambda r: views.overview())),
            Route("/api/containers/{name:path}/jobs/{id}/retry", action(views.retry),
                  methods=["POST"]),
            Route("/api/containers/{name:path}/jobs/{id}/retract", action(views.retract),
                  methods=["POST"]),
            Route("/api/containers/{name:path}/retry_all", action(views.retry_all),
                  methods=["POST"]),
            Route("/api/containers/{name:path}/purge", action(views.purge),
                  methods=["POST"]),
            Route("/api/containers/{name:path}",
                  view(lambda r: self._container(r, r.path_params["name"]))),
            Route("/api/sessions", view(lambda r: views.sessions())),
            Route("/api/server", view(self._server)),
            Route("/api/stream", self._stream),
            Route("/metrics", self._metrics),
            Route("/healthz", self._healthz),
        ]
        return Starlette(routes=routes)

    def _container(self, request: Request, name: str) -> dict[str, Any]:
        query = request.query_params
        start, limit = int(query.get("start", 0)), int(query.get("limit", 50))
        if start < 0 or not 0 < limit <= MAX_LIMIT:
            raise ValueError(f"start must be >= 0 and limit 1-{MAX_LIMIT}")
        return self.views.container(name, start, limit)

    def _server(self, request: Request) -> dict[str, Any]:
        return {**self.views.server(),
                "http": {"clients": self.clients, "max_clients": self.max_clients}}

    async def _metrics(self, request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
        from starlette.responses import Response

        refused = self._refused(request)
        if refused is not None:
            return refused
        try:
            body = generate_latest(self.registry)
        except CorralError as error:  # closed meanwhile
            return _failure(error)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def _healthz(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        source = self.views.source
        if not source.alive():
            return JSONResponse({"status": "closed"}, status_code=503)
        return JSONResponse({"status": "ok", "mode": source.mode,
                             "uptime": round(source.uptime(), 3)})

    async def _stream(self, request: Request) -> Response:
        from starlette.responses import StreamingResponse

        refused = self._refused(request)
        if refused is not None:
            return refused
        query = request.query_params
        which = query.get("view", "overview")
        builders: dict[str, Callable[[], dict[str, Any]]] = {
            "overview": self.views.overview, "sessions": self.views.sessions,
            "server": lambda: self._server(request),
            "container": lambda: self._container(request, query.get("name", ""))}
        if which not in builders or (which == "container" and not query.get("name")):
            return _error(400, "view must be overview, container (with name), sessions "
                               "or server")
        if self.clients >= self.max_clients:
            return _error(503, f"too many live clients ({self.max_clients})")
        may_act = self._may_act(request) or (
            self.token is not None and self._matches(query.get("token")))
        page = self

        class Stream(StreamingResponse):
            async def __call__(self, *args: Any) -> None:
                try:
                    await super().__call__(*args)
                finally:
                    page.clients -= 1

        self.clients += 1
        return Stream(self._events(which, builders[which], may_act),
                      media_type="text/event-stream",
                      headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def _events(self, which: str, build: Callable[[], dict[str, Any]],
                      may_act: bool) -> AsyncIterator[str]:
        last, quiet = None, 0.0
        while True:
            try:
                body = build()
                body["actions"], body["token_set"] = may_act, self.token is not None
            except (CorralError, ValueError) as error:
                body = {"error": str(error), "type": type(error).__name__}
            data = json.dumps(body, sort_keys=True)
            if data != last:
                yield f"event: {which}\ndata: {data}\n\n"
                last, quiet = data, 0.0
            elif quiet >= KEEPALIVE:
                yield ": keepalive\n\n"
                quiet = 0.0
            await trio.sleep(self.interval)
            quiet += self.interval


def _error(status: int, text: str) -> Response:
    from starlette.responses import JSONResponse

    return JSONResponse({"error": text}, status_code=status)


def _failure(error: Exception) -> Response:
    """404 for what is not there, 400 for a bad query, 409 for a request the state
    refuses (retrying a job that is not stalled, say)."""
    status = 404 if isinstance(error, NotFound) else 409 if isinstance(
        error, CorralError) else 400
    return _error(status, f"{type(error).__name__}: {error}")


async def _serve(source: Source, host: str, port: int, token: str | None, *,
                 max_clients: int, interval: float,
                 task_status: trio.TaskStatus[str]) -> None:
    from hypercorn.config import Config
    from hypercorn.trio import serve

    if not is_loopback(host) and not token:
        raise InvalidArgument(f"serving the status page on {host} needs a token: only "
                              "loopback is served without one")
    views = Views(source)
    page = Page(views, token=token, reads_need_token=not is_loopback(host),
                max_clients=max_clients, interval=interval)
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = log
    config.graceful_timeout = 1.0
    async with trio.open_nursery() as nursery:
        app: Any = page.app()  # an ASGI app; hypercorn's types name its own protocols
        binds = await nursery.start(partial(serve, app, config, mode="asgi"))
        log.info("status page on %s", binds[0])
        task_status.started(binds[0])
        while True:  # the rates' samples
            views.sample()
            await trio.sleep(1.0)


async def serve_http(server: Server, host: str = "127.0.0.1", port: int = 0, *,
                     max_clients: int = MAX_CLIENTS, interval: float = INTERVAL,
                     task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``server``'s status page on ``host:port`` until cancelled, on the server's
    trio loop; ``task_status.started`` gets its URL. The server's token gates it."""
    await _serve(ServerSource(server), host, port, server.token, max_clients=max_clients,
                 interval=interval, task_status=task_status)


async def serve_status(corral: Any, host: str = "127.0.0.1", port: int = 0, *,
                       token: str | None = None, max_clients: int = MAX_CLIENTS,
                       interval: float = INTERVAL,
                       task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
                       ) -> None:
    """Serve an embedded trio corral's status page until cancelled (see
    ``corral.adapters.trio.Corral.serve_status``)."""
    await _serve(TrioSource(corral), host, port, token, max_clients=max_clients,
                 interval=interval, task_status=task_status)


class StatusThread:
    """An embedded thread corral's status page, served from a background thread with
    a trio loop of its own (see ``corral.adapters.threads.Corral.serve_status``)."""

    def __init__(self, corral: Any, host: str, port: int, *, token: str | None,
                 max_clients: int = MAX_CLIENTS, interval: float = INTERVAL) -> None:
        self.url = ""
        box: dict[str, Any] = {}
        started = threading.Event()

        async def main() -> None:
            try:
                async with trio.open_nursery() as nursery:
                    self.url = await nursery.start(partial(
                        _serve, ThreadsSource(corral), host, port, token,
                        max_clients=max_clients, interval=interval))
                    box["stop"] = nursery.cancel_scope.cancel
                    box["token"] = trio.lowlevel.current_trio_token()
                    started.set()
            except BaseException as error:
                box["error"] = error
                started.set()
                if not isinstance(error, Exception):
                    raise

        self._thread = threading.Thread(target=trio.run, args=(main,), daemon=True,
                                        name="corral-status")
        self._thread.start()
        started.wait()
        if "error" in box:
            raise box["error"]
        self._box = box

    def close(self) -> None:
        """Stop serving. Idempotent."""
        if self._thread.is_alive():
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._box["stop"], trio_token=self._box["token"])
            self._thread.join(10)

    def __enter__(self) -> StatusThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
