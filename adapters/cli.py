"""The ``corral`` command: serve, ping, stats, cli, demo."""

from __future__ import annotations

import argparse
import json
import logging
import math
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, TextIO

__all__ = ["main"]

DEFAULT_URL = "corral://127.0.0.1:2605"


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_factorial_cluster

    report = run_factorial_cluster(args.items, args.consumers, out=sys.stdout)
    ok = Counter(report.results) == Counter(f"{n}!={math.factorial(n)}" for n in report.items)
    print("every item processed exactly once" if ok else "MISMATCH: items lost or repeated")
    return 0 if ok else 1


def _serve(args: argparse.Namespace) -> int:
    import trio

    from corral.transports.tcp import Limits, Server, check_bind, serve_tcp

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    log = logging.getLogger("corral.server")
    check_bind(args.host, args.token)
    if args.zmq:
        from corral.transports.zeromq import check_endpoint, serve_zmq

        check_endpoint(args.zmq, args.token)
    journal = None
    if args.journal:
        from corral.transports.journal import Journal

        journal = Journal(args.journal, fsync=args.fsync, repair=args.repair,
                          snapshot_size=args.snapshot_size)
        log.info("journal %s (fsync %s): replaying", journal.path, args.fsync)
    server = Server(journal=journal, token=args.token, limits=Limits(
        max_payload=args.max_payload, max_line=args.max_line,
        max_handles=args.max_handles, max_waiters=args.max_waiters,
        max_outbound=args.max_outbound, stall_timeout=args.stall_timeout))

    async def run() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                # ZeroMQ first: once TCP says it listens, both transports serve.
                endpoint = await nursery.start(serve_zmq, server, args.zmq) if (
                    args.zmq) else None
                listeners = await nursery.start(serve_tcp, server, args.host, args.port)
                host, port = listeners[0].socket.getsockname()[:2]
                log.info("corral %s listening on %s:%d", _version(), host, port)
                if endpoint:
                    log.info("corral %s listening on %s (ZeroMQ)", _version(), endpoint)
                async for signum in signals:
                    log.info("stopping on %s", signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    break

    try:
        trio.run(run)
    finally:
        if journal is not None:
            journal.close()
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("corral")
    except PackageNotFoundError:
        return "(not installed)"


def _connect(args: argparse.Namespace) -> Any:
    from .client import connect

    return connect(args.url, token=args.token, reconnect=None)


def _ping(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        start = time.perf_counter()
        client.ping()
        print(f"pong from {args.url} in {(time.perf_counter() - start) * 1000:.2f} ms")
    return 0


def _stats(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        print(json.dumps(client.stats(), indent=2, sort_keys=True))
    return 0


def _typed(text: str, kind: str | None) -> Any:
    if kind == "int":
        return int(text)
    if kind == "double":
        return float(text)
    if kind == "json":
        return json.loads(text)
    if kind == "raw":
        return text.encode()
    return text


def parse_cli_line(line: str) -> tuple[list[str], dict[str, Any]]:
    """A human's line as words and fields: ``push_back 1 value=hello`` or
    ``set 1 key=k value:int=3``; a field value is a string unless typed
    (``:int``, ``:double``, ``:json``, ``:raw``)."""
    words, fields = [], {}
    for word in line.split():
        name, sep, text = word.partition("=")
        field, _, kind = name.partition(":")
        if sep and field in ("key", "value", "metadata"):
            fields[field] = _typed(text, kind or None)
        else:
            words.append(word)
    return words, fields


def run_cli(url: str, token: str | None, lines: TextIO, out: TextIO, *,
            prompt: bool) -> int:
    """Send each line as a command; print what comes back, events included."""
    import socket

    from corral.transports.codec import Message, Parser, encode
    from corral.transports.connection import client_data_offset
    from corral.transports.remote import parse_url

    host, port = parse_url(url)
    sock = socket.create_connection((host, port), timeout=10)
    parser = Parser(client_data_offset, max_payload=1 << 30)

    def show_until_answer() -> None:
        pending_query = False
        while True:
            data = sock.recv(65536)
            if not data:
                print("(the server closed the connection)", file=out)
                raise SystemExit(1)
            for item in parser.feed(data):
                if not isinstance(item, Message):
                    print(f"(unreadable: {item})", file=out)
                    continue
                text = " ".join(item.words)
                if item.fields:
                    text += "  " + "  ".join(f"{k}={v!r}" for k, v in item.fields.items())
                print(text, file=out)
                words = item.words
                if words[0] == "answer":
                    pending_query = len(words) > 2 and words[2] == "query"
                    if not pending_query:
                        return
                elif words[0] == "query" and words[2] == "end":
                    return

    if token is not None:
        sock.sendall(encode(("auth", token)))
        show_until_answer()
    while True:
        if prompt:
            print(f"{host}:{port}> ", end="", file=out, flush=True)
        line = lines.readline()
        if not line:
            break
        words, fields = parse_cli_line(line)
        if not words:
            continue
        if words[0] in ("quit", "exit"):
            break
        sock.sendall(encode(words, fields))
        show_until_answer()
    sock.close()
    return 0


def _cli(args: argparse.Namespace) -> int:
    return run_cli(args.url, args.token, sys.stdin, sys.stdout, prompt=sys.stdin.isatty())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``corral`` console script."""
    from corral.transports.tcp import DEFAULT_PORT, Limits

    limits = Limits()
    parser = argparse.ArgumentParser(prog="corral", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve one kernel over TCP (and ZeroMQ)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default 127.0.0.1; others need --token)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT,
                       help=f"port (default {DEFAULT_PORT}; 0 picks a free one)")
    serve.add_argument("--token", help="clients must send 'auth TOKEN' first")
    serve.add_argument("--journal", metavar="DIR",
                       help="keep every container durable in a journal in DIR, replayed "
                            "on start")
    serve.add_argument("--fsync", choices=["always", "everysec", "no"], default="always",
                       help="always (default): answer only after the fsync that covers "
                            "a command; everysec: a crash may lose the last second; no")
    serve.add_argument("--snapshot-size", type=int, default=64 << 20, metavar="BYTES",
                       help="snapshot the state when the journal has grown past this and "
                            "twice the last snapshot (default 64 MiB)")
    serve.add_argument("--repair", action="store_true",
                       help="start from the good prefix of a corrupt journal")
    serve.add_argument("--zmq", metavar="ENDPOINT",
                       help="also serve ZeroMQ clients on ENDPOINT, such as "
                            "tcp://127.0.0.1:2606 (the same kernel)")
    for name in ("max_payload", "max_line", "max_handles", "max_waiters", "max_outbound"):
        serve.add_argument(f"--{name.replace('_', '-')}", type=int,
                           default=getattr(limits, name),
                           help=f"per-connection cap (default {getattr(limits, name)})")
    serve.add_argument("--stall-timeout", type=float, default=limits.stall_timeout,
                       metavar="SECONDS",
                       help="close a TCP connection that stops in the middle of a message "
                            f"for this long (default {limits.stall_timeout:g})")
    serve.set_defaults(run=_serve)

    for name, run, text in (("ping", _ping, "check that a server answers"),
                            ("stats", _stats, "print a server's statistics"),
                            ("cli", _cli, "an interactive prompt that speaks the protocol")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--url", default=DEFAULT_URL, help=f"server (default {DEFAULT_URL})")
        sub.add_argument("--token", help="sent as 'auth TOKEN' first")
        sub.set_defaults(run=run)

    demo = commands.add_parser(
        "demo", help="run Tio's factorial cluster: a producer and consumer threads")
    demo.add_argument("--items", type=int, default=1000, help="work items (default 1000)")
    demo.add_argument("--consumers", type=int, default=4, help="consumer threads (default 4)")
    demo.set_defaults(run=_demo)
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except Exception as error:
        from corral.kernel import CorralError

        # trio's nurseries wrap what their tasks raise in exception groups.
        while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]  # type: ignore[assignment]
        if not isinstance(error, (OSError, CorralError)):
            raise
        print(f"corral {args.command}: {error}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
