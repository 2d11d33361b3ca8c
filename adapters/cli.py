"""The ``corral`` command: serve, ping, stats, jobs, job, cli, export, import, redis-check,
demo."""

from __future__ import annotations

import argparse
import base64
import json
import logging
import math
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TextIO

from corral import __version__

__all__ = ["main"]

DEFAULT_URL = "corral://127.0.0.1:2605"


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_factorial_cluster

    report = run_factorial_cluster(args.items, args.consumers, out=sys.stdout)
    ok = Counter(report.results) == Counter(f"{n}!={math.factorial(n)}" for n in report.items)
    print("every item processed exactly once" if ok else "MISMATCH: items lost or repeated")
    return 0 if ok else 1


def _serve(args: argparse.Namespace) -> int:
    from functools import partial

    import trio

    from corral.transports.tcp import Limits, Server, check_bind, serve_tcp, server_tls

    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    log = logging.getLogger("corral.server")
    token = _token(args)
    tls = server_tls(args.tls_cert, args.tls_key)
    check_bind(args.host, token)
    if args.http:
        check_bind(args.http[0], token)
    if args.zmq:
        from corral.transports.zeromq import check_endpoint, serve_zmq

        check_endpoint(args.zmq, token)
    journal = None
    if args.journal:
        from corral.transports.journal import Journal

        journal = Journal(args.journal, fsync=args.fsync, repair=args.repair,
                          snapshot_size=args.snapshot_size)
        log.info("journal %s (fsync %s): replaying", journal.path, args.fsync)
    server = Server(journal=journal, token=token, limits=Limits(
        max_payload=args.max_payload, max_line=args.max_line,
        max_handles=args.max_handles, max_waiters=args.max_waiters,
        max_outbound=args.max_outbound, stall_timeout=args.stall_timeout))

    async def run() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                # ZeroMQ first: once TCP says it listens, both transports serve.
                endpoint = await nursery.start(serve_zmq, server, args.zmq) if (
                    args.zmq) else None
                listeners = await nursery.start(partial(serve_tcp, server, args.host,
                                                        args.port, tls=tls))
                host, port = listeners[0].socket.getsockname()[:2]
                log.info("corral %s listening on %s:%d%s", __version__, host, port,
                         " (TLS)" if tls else "")
                if args.http:
                    from .web import serve_http

                    page = await nursery.start(serve_http, server, *args.http)
                    log.info("corral %s status page on %s", __version__, page)
                if endpoint:
                    log.info("corral %s listening on %s (ZeroMQ)", __version__, endpoint)
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


def _export(args: argparse.Namespace) -> int:
    from corral.transports.journal import export_state

    state = export_state(args.journal) + b"\n"
    if args.output is None:
        sys.stdout.write(state.decode())  # JSON's ASCII
    else:
        with open(args.output, "wb") as file:
            file.write(state)
    return 0


def _import(args: argparse.Namespace) -> int:
    from corral.transports.journal import import_state

    if args.file == "-":
        state = sys.stdin.buffer.read()
    else:
        with open(args.file, "rb") as file:
            state = file.read()
    kernel = import_state(args.journal, state)
    print(f"{args.journal}: a new journal holding {len(kernel.containers())} containers; "
          f"serve it with: corral serve --journal {args.journal}")
    return 0


def _token_options(parser: argparse.ArgumentParser, file_help: str) -> None:
    """--token-file and --token, one or the other; ``_token`` reads them."""
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument("--token-file", metavar="PATH",
                        help=f"{file_help}; without this or --token, $CORRAL_TOKEN if set")
    secret.add_argument("--token", help="the token itself; other users can see it (ps): "
                                        "prefer --token-file or $CORRAL_TOKEN")


def _token(args: argparse.Namespace) -> str | None:
    """The token: ``--token``, the first line of ``--token-file`` (surrounding blanks
    stripped), or ``$CORRAL_TOKEN``; None if none is set. Raises InvalidArgument for a
    token file that cannot be read or whose first line is empty."""
    from corral.kernel import InvalidArgument
    from corral.transports.remote import client_token

    if args.token_file is None:
        return client_token(args.token)
    try:
        with open(args.token_file, encoding="utf-8") as file:
            token = file.readline().strip()
    except (OSError, UnicodeError) as error:
        raise InvalidArgument(f"cannot read the token file {args.token_file}: "
                              f"{error}") from None
    if not token:
        raise InvalidArgument(f"the token file {args.token_file} has no token on its "
                              "first line")
    return client_token(token)  # checked as any token is


def _connect(args: argparse.Namespace) -> Any:
    from .client import connect

    return connect(args.url, token=_token(args), tls_ca=args.tls_ca, reconnect=None)


def _ping(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        start = time.perf_counter()
        client.ping()
        print(f"pong from {args.url} in {(time.perf_counter() - start) * 1000:.2f} ms")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from corral.kernel import JobState, NotFound

    with _connect(args) as client:
        server = client.stats()
        rows = []
        for name, kind in server.pop("containers").items():
            try:
                statistics = client._run(client._kernel.statistics, name)
            except NotFound:  # deleted since the listing
                continue
            rows.append({"name": name, **_statistics_json(statistics), "kind": kind})
    if args.json:
        _print_json({**server, "containers": rows})
        return 0
    print(f"{args.url}: protocol {server.get('version')}, up {server.get('uptime', 0):.1f} s, "
          f"{server.get('connections')} connections, {server.get('commands')} commands")
    if not rows:
        print("no containers")
        return 0
    heads = ["NAME", "KIND", "DEPTH", "WAITERS", "SUBSCRIBERS"]
    states = [s.value for s in JobState] if any(r["kind"] == "job" for r in rows) else []
    table = [heads + [s.upper() for s in states]] + [
        [row["name"], row["kind"], *(str(row[k]) for k in ("records", "waiters",
                                                           "subscribers")),
         *(str(row.get(s, "")) for s in states)] for row in rows]
    widths = [max(len(line[k]) for line in table) for k in range(len(table[0]))]
    for line in table:
        print("  ".join(cell.ljust(width) if k < 2 else cell.rjust(width)
                        for k, (cell, width) in enumerate(zip(line, widths, strict=True)))
              .rstrip())
    return 0


def _statistics_json(statistics: Any) -> dict[str, Any]:
    import attrs

    fields = attrs.asdict(statistics)
    fields["kind"] = statistics.kind.value
    return fields


def _job_queue(client: Any, name: str) -> tuple[Any, Any]:
    """Job queue ``name`` (an inspection creates none) and its statistics."""
    from corral.kernel import JobStatistics, NotFound, WrongKind

    from ._handles import JobsHandle

    jobs = JobsHandle(client, name)
    try:
        statistics = jobs.statistics()
    except NotFound:
        raise NotFound(f"no job queue {name!r}") from None
    if not isinstance(statistics, JobStatistics):
        raise WrongKind(f"{name!r} is a {statistics.kind.value}, not a job queue")
    return jobs, statistics


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):  # a raw item: JSON has no bytes
        return {"base64": base64.b64encode(value).decode()}
    raise TypeError(f"{type(value).__name__} is not JSON")


def _info_json(info: Any) -> dict[str, Any]:
    """A JobInfo as JSON's values: state as its value string, times as numbers."""
    import attrs

    fields = attrs.asdict(info, recurse=False)
    fields["state"] = info.state.value
    return fields


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=_json_default))


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, bytes) else json.dumps(value)


def _shown_id(id: str) -> str:
    return id if id.isprintable() else repr(id)


def _last_line(error: str | None) -> str:
    """An error's last line that is not blank: a traceback's exception line."""
    lines = [line.strip() for line in (error or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _when(moment: float | None, created: float | None = None, note: str = "") -> str:
    if moment is None:
        return "-"
    # A server with a journal runs on the wall clock; without, on trio's, whose epoch
    # is arbitrary (and far from now): only differences mean something there.
    text = (datetime.fromtimestamp(moment).astimezone().isoformat(" ", "milliseconds")
            if moment > 1e9 else f"{moment:.3f} on the server's clock")
    if created is not None:
        text += f" ({moment - created:.3f} s after it was created{note})"
    return text


def _jobs(args: argparse.Namespace) -> int:
    from corral.kernel import JobState, NotFound

    state = JobState(args.state) if args.state else None
    with _connect(args) as client:
        jobs, statistics = _job_queue(client, args.name)
        if args.retry_stalled:
            count = jobs.retry_all()
            if args.json:
                _print_json({"retried": count})
            else:
                print(f"retried {count} stalled job{'s' * (count != 1)} in {args.name!r}")
            return 0
        ids = jobs.ids(state, args.start, args.start + args.limit + 1)
        infos = []
        for id in ids[:args.limit]:
            try:
                infos.append(jobs.info(id))
            except NotFound:  # ended and forgotten since the listing
                continue
    if args.json:
        _print_json([_info_json(info) for info in infos])
        return 0
    counts = ", ".join(f"{getattr(statistics, s.value)} {s.value}" for s in JobState)
    print(f"job queue {args.name!r}: {counts}")
    which = f"{args.state} jobs" if args.state else "jobs that have not ended"
    if not infos:
        print(f"no {which}" + (f" from --start {args.start}" if args.start else ""))
        return 0
    heads = ("ID", "STATE", "ATTEMPT", "PRIORITY")
    rows = [heads] + [(_shown_id(info.id), info.state.value, str(info.attempt),
                       str(info.priority)) for info in infos]
    widths = [max(len(row[k]) for row in rows) for k in range(len(heads))]
    room = max(20, shutil.get_terminal_size().columns - sum(widths) - 2 * len(widths) - 1)
    for row, info in zip(rows, [None, *infos], strict=True):
        error = "ERROR" if info is None else _last_line(info.error)
        if len(error) > room:
            error = error[:room - 3] + "..."
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1]),
                 row[2].rjust(widths[2]), row[3].rjust(widths[3]), error]
        print("  ".join(cells).rstrip())
    if len(ids) > args.limit:
        print(f"(the {which} from {args.start + 1} to {args.start + args.limit}; more "
              f"with --start {args.start + args.limit})")
    return 0


def _job(args: argparse.Namespace) -> int:
    from corral.kernel import JobState

    with _connect(args) as client:
        jobs, _ = _job_queue(client, args.name)
        if args.retry or args.retract:
            if args.retry:
                jobs.retry(args.id)
                state = jobs.state(args.id)
            else:
                jobs.retract(args.id)
                state = JobState.RETRACTED
            if args.json:
                _print_json({"id": args.id, "state": state.value})
            elif args.retry:
                print(f"retried job {args.id!r} in {args.name!r}: now {state.value}")
            else:
                print(f"retracted job {args.id!r} in {args.name!r}")
            return 0
        info = jobs.info(args.id)
    if args.json:
        _print_json(_info_json(info))
        return 0
    deadline = {JobState.CLAIMED: "; the lease ends",
                JobState.DELAYED: "; it becomes ready"}.get(info.state, "")
    for name, text in (("id", _shown_id(info.id)), ("state", info.state.value),
                       ("attempt", str(info.attempt)), ("priority", str(info.priority)),
                       ("created", _when(info.created)),
                       ("claimed", _when(info.claimed, info.created)),
                       ("ended", _when(info.ended, info.created)),
                       ("deadline", _when(info.deadline, info.created, deadline)),
                       ("item", _show(info.item)), ("result", _show(info.result))):
        print(f"{name + ':':10}{text}")
    if info.error is None:
        print(f"{'error:':10}-")
    else:  # whole: a traceback's every line
        print("error:")
        print(info.error.rstrip("\n"))
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
    (``:int``, ``:double``, ``:json``, ``:raw``). Words are split as a shell splits
    them, so ``value="two words"`` is one field. Raises ValueError, saying which word,
    for unbalanced quotes or a typed value that is not of its type."""
    import shlex

    words, fields = [], {}
    for word in shlex.split(line):
        name, sep, text = word.partition("=")
        field, _, kind = name.partition(":")
        if sep and field in ("key", "value", "metadata"):
            try:
                fields[field] = _typed(text, kind or None)
            except ValueError as error:
                raise ValueError(f"{word}: not {kind}: {error}") from None
        else:
            words.append(word)
    return words, fields


def cli_help(topic: str | None = None) -> str:
    """``help`` (every command, a line each) or ``help CMD`` (one, with its options)."""
    from corral.transports.commands import COMMANDS, by_wire

    if topic is None:
        lines = ["commands (help CMD for one; quit to leave):"]
        lines += [f"  {c.wire:<18}{c.summary or (c.kernel or '').replace('_', ' ')}"
                  for c in COMMANDS]
        lines.append("fields: key=... value=... metadata=..., typed as value:int=3, "
                     "value:double=1.5, value:json='[1, 2]', value:raw=bytes")
        return "\n".join(lines)
    command = by_wire().get(topic)
    if command is None:
        return f"no command {topic!r} (help lists them)"
    places = [f"{a.name}=..." if a.wire == "option" else
              "attempt=N (with the job id in key)" if a.wire == "job" else
              f"{a.wire}={a.name}" for a in command.args]
    if command.waits:
        places.append("tag=T")
    text = f"{command.wire} HANDLE {' '.join(places)}".rstrip()
    return text + (f"\n  {command.summary}" if command.summary else "")


def run_cli(url: str, token: str | None, lines: TextIO, out: TextIO, *,
            prompt: bool, tls_ca: str | None = None) -> int:
    """Send each line as a command; print what comes back as it comes, events included
    (an event that arrives while the prompt waits for a line is printed above it).
    ``url`` is ``corral://`` or ``corrals://`` (``tls_ca`` as for ``connect``)."""
    import queue
    import threading

    from corral.transports.codec import Message, Parser, encode
    from corral.transports.remote import client_tls, open_wire, parse_url
    from corral.transports.requests import client_data_offset

    host, port = parse_url(url)
    sock = open_wire(url, 10, client_tls(url, tls_ca))
    parser = Parser(client_data_offset, max_payload=1 << 30)
    answered: queue.Queue[bool] = queue.Queue()  # an answer is whole; False: gone
    prompt_text = f"{host}:{port}> "
    at_prompt = threading.Event()  # input() is waiting for a line
    quitting = threading.Event()

    def show(text: str) -> None:
        if at_prompt.is_set():  # above the line being typed, which is drawn again
            import readline

            out.write(f"\r\x1b[K{text}\n{prompt_text}{readline.get_line_buffer()}")
            out.flush()
        else:
            print(text, file=out, flush=True)

    def read() -> None:
        """Print every message as it arrives; tell the prompt when an answer is whole
        (a query's answer ends with its ``query H end``)."""
        pending_query = False
        try:
            while data := sock.recv(65536):
                for item in parser.feed(data):
                    if not isinstance(item, Message):
                        show(f"(unreadable: {item})")
                        continue
                    text = " ".join(item.words)
                    if item.fields:
                        text += "  " + "  ".join(f"{k}={v!r}"
                                                 for k, v in item.fields.items())
                    show(text)
                    words = item.words
                    if words[0] == "answer":
                        pending_query = len(words) > 2 and words[2] == "query"
                        if not pending_query:
                            answered.put(True)
                    elif pending_query and words[0] == "query" and words[2] == "end":
                        pending_query = False
                        answered.put(True)
        except OSError:
            pass
        if not quitting.is_set():
            show("(the server closed the connection)")
        answered.put(False)

    reader = threading.Thread(target=read, name="corral-cli-reader", daemon=True)
    reader.start()

    def send(words: Sequence[str], fields: dict[str, Any] | None = None) -> bool:
        """Send a command and wait for its whole answer; False if the server is gone."""
        if not reader.is_alive():
            return False
        sock.sendall(encode(words, fields))
        return answered.get()

    try:
        if token is not None and not send(("auth", token)):
            return 1
        while True:
            if prompt:  # input() edits the line and keeps a history, with readline
                at_prompt.set()
                try:
                    line = input(prompt_text) + "\n"
                except EOFError:
                    break
                finally:
                    at_prompt.clear()
            else:
                line = lines.readline()
                if not line:
                    break
            try:
                words, fields = parse_cli_line(line)
            except ValueError as error:
                print(f"error: {error}", file=out, flush=True)
                continue
            if not words:
                continue
            if words[0] in ("quit", "exit"):
                break
            if words[0] == "help":
                print(cli_help(words[1] if len(words) > 1 else None), file=out, flush=True)
                continue
            if not send(words, fields):
                return 1
    finally:
        quitting.set()
        sock.close()
        reader.join(5)
    return 0


def _cli(args: argparse.Namespace) -> int:
    interactive = sys.stdin.isatty()
    if interactive:
        import readline  # noqa: F401  (line editing and history for input())
    return run_cli(args.url, _token(args), sys.stdin, sys.stdout, prompt=interactive,
                   tls_ca=args.tls_ca)


def _redis_check(args: argparse.Namespace) -> int:
    """Audit the Redis at ``args.url``: 0 if every finding is ok, 1 on a warning, 2 on
    an error or if Redis cannot be reached."""
    from urllib.parse import parse_qsl, urlencode

    try:
        import redis
    except ModuleNotFoundError:  # an optional dependency
        print("corral redis-check: needs redis-py: pip install 'corral[redis]'",
              file=sys.stderr)
        return 2

    from corral.transports.redis_backend.audit import LEVELS, audit

    from ._redis_client import _shown

    where, _, fields = args.url.partition("?")  # ?prefix= names keys: no matter here
    rest = urlencode([(key, value) for key, value in parse_qsl(fields, keep_blank_values=True)
                      if key != "prefix"])
    shown = _shown(where)  # the query may hold a password too: never shown
    try:
        client = redis.Redis.from_url(f"{where}?{rest}" if rest else where,
                                      socket_connect_timeout=5, socket_timeout=10)
    except ValueError as error:  # not a URL redis-py knows
        print(f"corral redis-check: {error}", file=sys.stderr)
        return 2
    try:
        findings = audit(client, durability=args.durability)
    except redis.RedisError as error:
        print(f"corral redis-check: cannot reach Redis at {shown}: {error}", file=sys.stderr)
        return 2
    finally:
        client.close()
    if args.json:
        import attrs

        _print_json([attrs.asdict(finding) for finding in findings])
    else:
        rows = [(f.level, f.setting, f.found, f"wanted {f.wanted}") for f in findings]
        widths = [max(len(row[k]) for row in rows) for k in range(4)]
        for row, finding in zip(rows, findings, strict=True):
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
            print("  ".join([*cells, finding.why]))
    return max(LEVELS.index(finding.level) for finding in findings)


def _http_bind(text: str) -> tuple[str, int]:
    from corral.kernel import InvalidArgument

    from .web import parse_bind

    try:
        return parse_bind(text)
    except InvalidArgument as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _port(text: str) -> int:
    """An argparse type: a TCP port, or 0 for any free one."""
    value = int(text)  # a ValueError: argparse says "invalid _port value"
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1-65535 (0: any free one), not {value}")
    return value


_port.__name__ = "port"


def _at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an int that is at least ``low``."""
    def parse(text: str) -> int:
        value = int(text)  # a ValueError: argparse says "invalid int value"
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {value}")
        return value

    parse.__name__ = "int"
    return parse


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``corral`` console script."""
    from corral.kernel import JobState
    from corral.transports.tcp import DEFAULT_PORT, Limits

    limits = Limits()
    parser = argparse.ArgumentParser(
        prog="corral", description="corral: serve a coordination kernel, inspect one, "
        "talk to one, move a journal's data between versions, audit a Redis for one, or run "
        "the demo. COMMAND --help says more.")
    parser.add_argument("--version", action="version", version=f"corral {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="serve one kernel over TCP (and ZeroMQ)",
        description="Serve one corral kernel to clients over TCP (the Tio-compatible line "
        "protocol), and with --zmq over ZeroMQ too; with --journal it is durable, with "
        "--http it serves a live status page and Prometheus metrics. Stops on SIGINT or "
        "SIGTERM.")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default 127.0.0.1; others need a token)")
    serve.add_argument("--port", type=_port, default=DEFAULT_PORT,
                       help=f"port (default {DEFAULT_PORT}; 0 picks a free one)")
    serve.add_argument("--log-level", type=str.upper, default="INFO",
                       choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                       help="what the server logs to stderr (default INFO)")
    _token_options(serve, "clients must send 'auth TOKEN' first, TOKEN being the first "
                          "line of PATH")
    serve.add_argument("--tls-cert", metavar="CERT.pem",
                       help="serve TCP with TLS only (clients use corrals://), with this "
                            "certificate (chain); needs --tls-key. The status page and "
                            "ZeroMQ stay plain")
    serve.add_argument("--tls-key", metavar="KEY.pem",
                       help="the private key of --tls-cert")
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
    serve.add_argument("--http", metavar="HOST:PORT", type=_http_bind,
                       help="also serve the live status page, /metrics (Prometheus) and "
                            "/healthz on HOST:PORT, such as 127.0.0.1:2680 (needs "
                            "corral[web]; beyond loopback, --token)")
    for name in ("max_payload", "max_line", "max_handles", "max_waiters", "max_outbound"):
        serve.add_argument(f"--{name.replace('_', '-')}", type=int,
                           default=getattr(limits, name),
                           help=f"per-connection cap (default {getattr(limits, name)})")
    serve.add_argument("--stall-timeout", type=float, default=limits.stall_timeout,
                       metavar="SECONDS",
                       help="close a TCP connection that stops in the middle of a message "
                            f"for this long (default {limits.stall_timeout:g})")
    serve.set_defaults(run=_serve)

    def client_command(name: str, run: Callable[[argparse.Namespace], int], text: str,
                       description: str | None = None) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=description or text)
        sub.add_argument("--url", default=DEFAULT_URL,
                         help=f"server (default {DEFAULT_URL}; corrals:// for TLS)")
        _token_options(sub, "send the first line of PATH as 'auth TOKEN' first")
        sub.add_argument("--tls-ca", metavar="FILE",
                         help="for corrals://, trust the server certificates this CA "
                              "file (or self-signed certificate) signs, instead of the "
                              "system's (default $CORRAL_TLS_CA)")
        sub.set_defaults(run=run)
        return sub

    client_command("ping", _ping, "check that a server answers")
    stats = client_command(
        "stats", _stats, "print a server's containers: depth, waiters, job states",
        "Print the server's version, uptime, connections and commands, then a table of "
        "its containers: depth (records held; for a job queue, jobs not ended), parked "
        "waiters, subscribers and, for job queues, the jobs in each state.")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    jobs = client_command(
        "jobs", _jobs, "list a job queue's jobs, or retry its stalled ones",
        "A table of job queue NAME's jobs, in the order they were put: id, state, "
        "attempt, priority and the last line of the job's last error; first a line with "
        "how many jobs are in each state. By default the jobs that have not ended "
        "(ready, delayed, claimed, stalled); --state picks one state. Times in --json are "
        "on the server's clock: wall-clock seconds when it has a journal.")
    jobs.add_argument("name", metavar="NAME", help="the job queue")
    jobs.add_argument("--state", type=str.lower, choices=[s.value for s in JobState],
                      help="only the jobs in this state")
    jobs.add_argument("--start", type=_at_least(0), default=0, metavar="N",
                      help="skip the first N of them (default 0)")
    jobs.add_argument("--limit", type=_at_least(1), default=100, metavar="N",
                      help="list at most N (default 100)")
    jobs.add_argument("--json", action="store_true",
                      help="print a JSON list of the jobs' whole info, for machines (raw "
                           'bytes as {"base64": ...})')
    jobs.add_argument("--retry-stalled", action="store_true",
                      help="instead, make every stalled job ready again; print how many")
    job = client_command(
        "job", _job, "show one job in full, or retry or retract it",
        "Everything about job ID of job queue NAME: state, attempt, priority, times, "
        "item and result (as JSON), and its last error whole, such as a worker's "
        "traceback. Times are on the server's clock: wall-clock time when it has a "
        "journal, else seconds of a clock whose differences alone mean something.")
    job.add_argument("name", metavar="NAME", help="the job queue")
    job.add_argument("id", metavar="ID", help="the job's id")
    job.add_argument("--json", action="store_true",
                     help="print the job's info as a JSON object, for machines (raw bytes "
                          'as {"base64": ...})')
    action = job.add_mutually_exclusive_group()
    action.add_argument("--retry", action="store_true",
                        help="make the stalled job ready again, then print its state")
    action.add_argument("--retract", action="store_true",
                        help="withdraw the job, whatever its state, if it has not ended")
    client_command("cli", _cli, "an interactive prompt that speaks the protocol")

    check = commands.add_parser(
        "redis-check", help="audit a Redis server's settings for corral on Redis",
        description="Check the Redis (or Valkey) at URL for corral: its version (7.0 or "
        "later, for Functions; whether WAITAOF is there), maxmemory-policy noeviction, "
        "and an append-only file that keeps what --durability asks. One line per "
        "finding: level, setting, found, wanted, why. Exits 0 if every finding is ok, "
        "1 on a warning, 2 on an error or if Redis cannot be reached.")
    check.add_argument("url", metavar="URL",
                       help="redis://[:PASSWORD@]HOST:PORT[/DB], rediss://... (TLS) or "
                            "unix:///PATH/TO/redis.sock (a ?prefix= is ignored)")
    check.add_argument("--durability", choices=["always", "everysec", "none"],
                       default="everysec",
                       help="always: each acknowledged write fsynced (appendfsync always); "
                            "everysec (default): at most a second lost; none: no check "
                            "of the append-only file")
    check.add_argument("--json", action="store_true",
                       help="print a JSON list of the findings, for machines")
    check.set_defaults(run=_redis_check)

    export = commands.add_parser(
        "export", help="write a journal's whole state as one portable JSON file",
        description="Replay the journal in DIR (its snapshot and the records after it) and "
        "write the whole state, in the versioned corral-state format that snapshots use, "
        "to FILE or stdout. DIR is only read, and refused while a server holds it. A "
        "newer corral imports the file: that is how data moves between versions.")
    export.add_argument("journal", metavar="DIR", help="the journal directory")
    export.add_argument("-o", "--output", metavar="FILE",
                        help="write to FILE instead of stdout")
    export.set_defaults(run=_export)
    imports = commands.add_parser(
        "import", help="make a new journal from an exported state",
        description="Make a new journal in DIR whose snapshot is the state in FILE (what "
        "corral export wrote, by this version or an older one, migrated), so that corral "
        "serve --journal DIR serves it. DIR must be empty or absent.")
    imports.add_argument("file", metavar="FILE", help="the exported state ('-': stdin)")
    imports.add_argument("--journal", metavar="DIR", required=True,
                         help="the new journal's directory")
    imports.set_defaults(run=_import)

    demo = commands.add_parser(
        "demo", help="run Tio's factorial cluster: a producer and consumer threads",
        description="Run Tio's factorial cluster in this process: a producer pushes "
        "numbers to a list, consumer threads take them and push back their factorials, "
        "and the producer checks that every item was processed exactly once.")
    demo.add_argument("--items", type=_at_least(1), default=1000,
                      help="work items (default 1000)")
    demo.add_argument("--consumers", type=_at_least(1), default=4,
                      help="consumer threads (default 4)")
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
        where = getattr(args, "url", None)
        if isinstance(error, OSError) and where:  # say which address failed
            print(f"corral {args.command}: cannot reach {where}: {error}", file=sys.stderr)
        else:
            print(f"corral {args.command}: {error}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
