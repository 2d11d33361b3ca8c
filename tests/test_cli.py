"""The corral command: serve as a real process, then ping, stats and cli against it."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
from conftest import server_thread

from corral.adapters.cli import main, parse_cli_line, run_cli


@pytest.fixture
def served() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`corral serve --port 0` as a child process; yields it and its URL."""
    proc = subprocess.Popen([sys.executable, "-m", "corral.adapters.cli", "serve",
                             "--port", "0"], stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
    assert match, line
    with proc:  # closes the pipe and reaps the process
        yield proc, f"corral://127.0.0.1:{match.group(1)}"
        if proc.poll() is None:
            proc.kill()


def test_serve_logs_one_line_and_stops_on_sigterm(served: tuple[subprocess.Popen[str], str],
                                                  capsys: pytest.CaptureFixture[str]
                                                  ) -> None:
    """The server answers ping and stats, then exits 0 on SIGTERM."""
    proc, url = served
    assert 0 == main(["ping", "--url", url])
    assert f"pong from {url}" in capsys.readouterr().out
    assert 0 == main(["stats", "--url", url])
    assert '"version": "0.1"' in capsys.readouterr().out
    proc.send_signal(signal.SIGTERM)
    assert 0 == proc.wait(10)
    assert proc.stderr is not None
    assert "stopping on SIGTERM" in proc.stderr.read()


def test_sigint_stops_it_too(served: tuple[subprocess.Popen[str], str]) -> None:
    """Ctrl-C stops the server cleanly."""
    proc, _ = served
    os.kill(proc.pid, signal.SIGINT)
    assert 0 == proc.wait(10)


def test_cli_speaks_the_protocol_for_humans() -> None:
    """Lines with field=value words become commands; replies print readably."""
    script = io.StringIO("create todo volatile_list\npush_back 1 value=milk\n"
                         "push_back 1 value:int=3\nquery 1\nget 1 key:int=-1\nbogus\n")
    out = io.StringIO()
    with server_thread() as port:
        assert 0 == run_cli(f"corral://127.0.0.1:{port}", None, script, out, prompt=False)
    text = out.getvalue()
    assert "answer ok handle 1 volatile_list" in text
    assert "query 1 item  key=0  value='milk'" in text
    assert "answer ok data  key=1  value=3" in text
    assert "answer error invalid_command" in text


def test_cli_line_parsing() -> None:
    """Typed fields: :int, :double, :json, :raw; other words stay words."""
    assert (["set", "1"], {"key": "k", "value": 3}) == parse_cli_line("set 1 key=k value:int=3")
    assert (["put", "1", "priority=2"], {"value": [1, 2]}) == parse_cli_line(
        "put 1 priority=2 value:json=[1,2]")


def test_unreachable_server_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    """ping of a port nobody serves exits 1 with the reason."""
    with server_thread() as port:
        pass
    assert 1 == main(["ping", "--url", f"corral://127.0.0.1:{port}"])
    assert "corral ping:" in capsys.readouterr().err


def test_serve_refuses_a_public_address_without_a_token(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Binding beyond loopback without --token exits 1 and says why."""
    assert 1 == main(["serve", "--host", "0.0.0.0", "--port", "0"])
    assert "needs --token" in capsys.readouterr().err


def test_serve_zmq_too(capsys: pytest.CaptureFixture[str]) -> None:
    """--zmq serves the same kernel on a ZeroMQ endpoint; ping and stats reach it."""
    proc = subprocess.Popen([sys.executable, "-m", "corral.adapters.cli", "serve",
                             "--port", "0", "--zmq", "tcp://127.0.0.1:0"],
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    with proc:
        try:
            proc.stderr.readline()
            line = proc.stderr.readline()
            match = re.search(r"listening on (tcp://127\.0\.0\.1:\d+) \(ZeroMQ\)", line)
            assert match, line
            url = f"zmq+{match.group(1)}"
            assert 0 == main(["ping", "--url", url])
            assert 0 == main(["stats", "--url", url])
            assert f"pong from {url}" in capsys.readouterr().out
        finally:
            proc.send_signal(signal.SIGTERM)
            assert 0 == proc.wait(10)


def test_a_zmq_endpoint_in_use_is_a_clear_error() -> None:
    """As with a TCP port in use: one line on stderr and exit 1, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "corral.adapters.cli", "serve",
                               "--port", "0", "--zmq", f"tcp://127.0.0.1:{port}"],
                              capture_output=True, text=True, timeout=30)
    assert 1 == proc.returncode
    assert "cannot serve ZeroMQ on tcp://127.0.0.1" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_tcp_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "corral.adapters.cli", "serve",
                               "--port", str(port)], capture_output=True, text=True,
                              timeout=30)
    assert 1 == proc.returncode
    assert "Traceback" not in proc.stderr and "in use" in proc.stderr
