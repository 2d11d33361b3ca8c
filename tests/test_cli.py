"""The corral command: serve as a real process, then ping, stats, jobs, job and cli
against it."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs
import pytest
from conftest import server_thread, wait_until

from corral.adapters.cli import main, parse_cli_line, run_cli
from corral.adapters.client import connect
from corral.kernel import JobInfo, JobState


@contextmanager
def serve_process(*options: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`corral serve --port 0 OPTIONS` as a child process; yields it and its URL."""
    proc = subprocess.Popen([sys.executable, "-m", "corral.adapters.cli", "serve",
                             "--port", "0", *options], stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    with proc:  # closes the pipe and reaps the process
        try:
            lines = []
            while not (match := re.search(r"listening on 127\.0\.0\.1:(\d+)",
                                          line := proc.stderr.readline())):
                assert line, lines  # it exited before it listened
                lines.append(line)
            yield proc, f"corral://127.0.0.1:{match.group(1)}"
        finally:
            if proc.poll() is None:
                proc.kill()


@pytest.fixture
def served() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`corral serve --port 0` as a child process; yields it and its URL."""
    with serve_process() as served:
        yield served


def test_serve_logs_one_line_and_stops_on_sigterm(served: tuple[subprocess.Popen[str], str],
                                                  capsys: pytest.CaptureFixture[str]
                                                  ) -> None:
    """The server answers ping and stats, then exits 0 on SIGTERM."""
    proc, url = served
    assert 0 == main(["ping", "--url", url])
    assert f"pong from {url}" in capsys.readouterr().out
    assert 0 == main(["stats", "--url", url, "--json"])
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
                         "push_back 1 value:int=3\nquery 1\nget 1 key:int=-1\nbogus\n"
                         "push_back 1 value:int=abc\nhelp\nhelp claim\n"
                         "push_back 1 'value=two words'\nget 1 key:int=-1\n")
    out = io.StringIO()
    with server_thread() as port:
        assert 0 == run_cli(f"corral://127.0.0.1:{port}", None, script, out, prompt=False)
    text = out.getvalue()
    assert "answer ok handle 1 volatile_list" in text
    assert "query 1 item  key=0  value='milk'" in text
    assert "answer ok data  key=1  value=3" in text
    assert "answer error invalid_command" in text
    assert "error: value:int=abc: not int" in text  # one line, and the cli goes on
    assert "  finish_claim" in text and "claim HANDLE lease=... timeout=... tag=T" in text
    assert "answer ok data  key=2  value='two words'" in text


def test_cli_prints_an_event_as_it_arrives() -> None:
    """An event that comes while the cli waits for the next line (here a parked wait
    timing out) is printed when it comes, not after the next command."""
    read_fd, write_fd = os.pipe()
    out = io.StringIO()
    with server_thread() as port, os.fdopen(read_fd) as lines, \
            os.fdopen(write_fd, "w") as typed:
        cli = threading.Thread(target=run_cli, args=(f"corral://127.0.0.1:{port}", None,
                                                     lines, out), kwargs={"prompt": False})
        cli.start()
        typed.write("create work volatile_list\nwnp_next 1 timeout=0.2 tag=t\n")
        typed.flush()
        # no next line is typed until the event shows
        wait_until(lambda: "event 1 cancelled tag=t empty" in out.getvalue(),
                   said=out.getvalue)
        typed.write("quit\n")
        typed.flush()
        cli.join(10)
        assert not cli.is_alive()
    assert "answer ok handle 1 volatile_list" in out.getvalue()


def test_cli_line_parsing() -> None:
    """Typed fields: :int, :double, :json, :raw; other words stay words."""
    assert (["set", "1"], {"key": "k", "value": 3}) == parse_cli_line("set 1 key=k value:int=3")
    assert (["push_back", "1"], {"value": "two words"}) == parse_cli_line(
        'push_back 1 value="two words"')
    for bad, said in (("push_back 1 value:int=abc", "value:int=abc: not int"),
                      ("push_back 1 value:json={bad", "value:json={bad: not json"),
                      ('push_back 1 value="open', "quotation")):
        with pytest.raises(ValueError, match=said):
            parse_cli_line(bad)
    assert (["put", "1", "priority=2"], {"value": [1, 2]}) == parse_cli_line(
        "put 1 priority=2 value:json=[1,2]")


def test_unreachable_server_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    """ping of a port nobody serves exits 1 with the reason."""
    with server_thread() as port:
        pass
    assert 1 == main(["ping", "--url", f"corral://127.0.0.1:{port}"])
    assert "corral ping:" in capsys.readouterr().err


def test_an_unreachable_server_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    with server_thread() as port:
        pass
    assert 1 == main(["stats", "--url", f"corral://127.0.0.1:{port}"])
    assert f"cannot reach corral://127.0.0.1:{port}:" in capsys.readouterr().err


def test_version_and_bad_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    """--version says the installed version; a port out of range, or a demo with no
    consumers, is refused by the parser (exit 2) with the reason."""
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert 0 == exited.value.code
    assert capsys.readouterr().out.startswith("corral ")
    for argv, reason in ((["serve", "--port", "99999"], "a port is 1-65535"),
                         (["serve", "--port", "-5"], "a port is 1-65535"),
                         (["demo", "--consumers", "0"], "must be at least 1"),
                         (["serve", "--log-level", "LOUD"], "invalid choice")):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert 2 == exited.value.code
        assert reason in capsys.readouterr().err


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


TRACEBACK = ('Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n'
             'ZeroDivisionError: division by zero\n')


def stall(url: str, name: str = "q", error: str = TRACEBACK, **item: int) -> str:
    """Put a job in job queue ``name`` (one attempt only) and fail it with ``error``,
    as a worker does with its exception's traceback, so it stalls; returns its id."""
    with connect(url, reconnect=None) as c:
        jobs = c.jobs(name, max_attempts=1)
        id = jobs.put(item)
        job = jobs.claim(timeout=10)
        assert id == job.id
        job.cancel(reason=error)
        assert JobState.STALLED == jobs.state(id)
    return id


@pytest.fixture
def stalled(served: tuple[subprocess.Popen[str], str], monkeypatch: pytest.MonkeyPatch
            ) -> tuple[str, str]:
    """Job queue q on the served server: a stalled job, failed with TRACEBACK, and a
    ready one, "waiting", after it. Returns the URL and the stalled job's id. (The
    terminal is wide, whatever the one running the tests: no line is cut.)"""
    monkeypatch.setenv("COLUMNS", "200")
    _, url = served
    id = stall(url, n=1)
    with connect(url, reconnect=None) as c:
        c.jobs("q").put({"n": 2}, priority=3, id="waiting")
    return url, id


def state_of(url: str, id: str) -> JobState:
    with connect(url, reconnect=None) as c:
        return c.jobs("q").state(id)


def test_jobs_lists_the_jobs_not_ended_with_their_error_lines(
        stalled: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """A header with the counts per state, then one line per job: id, state, attempt,
    priority and the exception line of its error."""
    url, id = stalled
    assert 0 == main(["jobs", "q", "--url", url])
    lines = capsys.readouterr().out.splitlines()
    assert ("job queue 'q': 1 ready, 0 delayed, 0 claimed, 1 stalled, 0 finished, "
            "0 retracted") == lines[0]
    assert ["ID", "STATE", "ATTEMPT", "PRIORITY", "ERROR"] == lines[1].split()
    assert [id, "stalled", "1", "0", "ZeroDivisionError:", "division", "by",
            "zero"] == lines[2].split()
    assert ["waiting", "ready", "0", "3"] == lines[3].split()
    assert 4 == len(lines)


def test_jobs_in_one_state(stalled: tuple[str, str],
                           capsys: pytest.CaptureFixture[str]) -> None:
    """--state stalled lists the stalled ones only (the state's case does not matter);
    a state without jobs says so."""
    url, id = stalled
    assert 0 == main(["jobs", "q", "--state", "stalled", "--url", url])
    lines = capsys.readouterr().out.splitlines()
    assert 3 == len(lines)
    assert lines[2].startswith(f"{id} ") and "stalled" in lines[2]
    assert lines[2].endswith("ZeroDivisionError: division by zero")
    assert 0 == main(["jobs", "q", "--state", "READY", "--url", url])
    assert "waiting" in capsys.readouterr().out.splitlines()[2]
    assert 0 == main(["jobs", "q", "--state", "finished", "--url", url])
    assert "no finished jobs" == capsys.readouterr().out.splitlines()[-1]


def test_jobs_as_json(stalled: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """--json: a list of every JobInfo field, the state as its value, times as numbers."""
    url, id = stalled
    assert 0 == main(["jobs", "q", "--json", "--url", url])
    listed = json.loads(capsys.readouterr().out)
    assert [id, "waiting"] == [job["id"] for job in listed]
    first = listed[0]
    assert set(attrs.fields_dict(JobInfo)) == set(first)
    assert {"state": "stalled", "attempt": 1, "priority": 0, "item": {"n": 1},
            "error": TRACEBACK, "result": None, "ended": None,
            "deadline": None} == {k: first[k] for k in ("state", "attempt", "priority",
                                                       "item", "error", "result",
                                                       "ended", "deadline")}
    assert isinstance(first["created"], float) and isinstance(first["claimed"], float)
    assert first["created"] <= first["claimed"]
    assert "ready" == listed[1]["state"] and listed[1]["claimed"] is None


def test_jobs_pages(served: tuple[subprocess.Popen[str], str],
                    capsys: pytest.CaptureFixture[str]) -> None:
    """--start and --limit page through the jobs, in put order; a page that is not the
    last says how to see more."""
    _, url = served
    with connect(url, reconnect=None) as c:
        jobs = c.jobs("q")
        ids = [jobs.put(n) for n in range(5)]
    assert 0 == main(["jobs", "q", "--start", "1", "--limit", "2", "--url", url])
    lines = capsys.readouterr().out.splitlines()
    assert ids[1:3] == [line.split()[0] for line in lines[2:4]]
    assert "more with --start 3" in lines[4]
    assert 0 == main(["jobs", "q", "--start", "3", "--limit", "2", "--url", url])
    lines = capsys.readouterr().out.splitlines()
    assert ids[3:] == [line.split()[0] for line in lines[2:]]
    assert 0 == main(["jobs", "q", "--start", "5", "--url", url])
    assert "no jobs that have not ended from --start 5" in capsys.readouterr().out
    assert 0 == main(["jobs", "q", "--start", "2", "--limit", "1", "--json", "--url", url])
    assert [ids[2]] == [job["id"] for job in json.loads(capsys.readouterr().out)]


def test_jobs_truncates_the_error_line_to_fit(served: tuple[subprocess.Popen[str], str],
                                             capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A long exception line is cut to the terminal's width."""
    _, url = served
    stall(url, error=TRACEBACK + "ValueError: " + "x" * 200 + "\n")
    monkeypatch.setenv("COLUMNS", "60")
    assert 0 == main(["jobs", "q", "--url", url])
    row = capsys.readouterr().out.splitlines()[2]
    assert 60 > len(row) and row.endswith("...") and "ValueError: xxx" in row


def test_job_shows_everything_and_the_whole_traceback(
        stalled: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """Each field on its line; item and result as JSON; the error whole."""
    url, id = stalled
    assert 0 == main(["job", "q", id, "--url", url])
    out = capsys.readouterr().out
    fields = dict(line.split(":", 1) for line in out.splitlines()[:10])
    assert {"id": id, "state": "stalled", "attempt": "1", "priority": "0",
            "item": '{"n": 1}', "result": "null", "ended": "-",
            "deadline": "-"} == {k: fields[k].strip() for k in (
                "id", "state", "attempt", "priority", "item", "result", "ended",
                "deadline")}
    assert "s after it was created" in fields["claimed"]
    assert out.endswith("error:\n" + TRACEBACK)
    assert 0 == main(["job", "q", "waiting", "--url", url])
    assert "error:    -" in capsys.readouterr().out


def test_job_as_json(stalled: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    url, id = stalled
    assert 0 == main(["job", "q", id, "--json", "--url", url])
    info = json.loads(capsys.readouterr().out)
    assert set(attrs.fields_dict(JobInfo)) == set(info)
    assert (id, "stalled", 1, TRACEBACK, {"n": 1}) == (
        info["id"], info["state"], info["attempt"], info["error"], info["item"])
    assert isinstance(info["created"], float)


def test_job_times_are_dates_on_a_journaled_server(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A journaled server's clock is the wall clock: times show as dates; a claimed
    job's deadline is when its lease ends."""
    # (c stays open: closing it would release the claim)
    with serve_process("--journal", str(tmp_path)) as (_, url), connect(
            url, reconnect=None) as c:
        jobs = c.jobs("q", lease=60)
        id = jobs.put("x")
        jobs.claim(timeout=10)
        assert 0 == main(["job", "q", id, "--url", url])
    out = capsys.readouterr().out
    assert re.search(r"created: +20\d\d-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", out), out
    assert re.search(r"deadline: +20\d\d-.*\(60\.\d{3} s after it was created; the lease "
                     r"ends\)", out), out


def test_job_retry_and_retract(stalled: tuple[str, str],
                               capsys: pytest.CaptureFixture[str]) -> None:
    """--retry makes a stalled job ready and says so; --retract withdraws a job."""
    url, id = stalled
    assert 0 == main(["job", "q", id, "--retry", "--url", url])
    assert f"retried job {id!r} in 'q': now ready" == capsys.readouterr().out.strip()
    assert JobState.READY == state_of(url, id)
    assert 0 == main(["job", "q", id, "--retract", "--json", "--url", url])
    assert {"id": id, "state": "retracted"} == json.loads(capsys.readouterr().out)
    assert JobState.RETRACTED == state_of(url, id)
    assert 0 == main(["job", "q", "waiting", "--retract", "--url", url])
    assert "retracted job 'waiting' in 'q'" == capsys.readouterr().out.strip()


def test_jobs_retry_stalled_counts(served: tuple[subprocess.Popen[str], str],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    _, url = served
    ids = [stall(url, n=n) for n in range(2)]
    assert 0 == main(["jobs", "q", "--retry-stalled", "--url", url])
    assert "retried 2 stalled jobs in 'q'" == capsys.readouterr().out.strip()
    assert [JobState.READY] * 2 == [state_of(url, id) for id in ids]
    assert 0 == main(["jobs", "q", "--retry-stalled", "--json", "--url", url])
    assert {"retried": 0} == json.loads(capsys.readouterr().out)


def test_job_errors_are_one_line_and_exit_1(stalled: tuple[str, str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown queue (which an inspection does not create), a container of another
    kind, an unknown job, a retry of a job that is not stalled: a line naming them."""
    url, id = stalled
    with connect(url, reconnect=None) as c:
        c.list("a-list")
    for argv, message in (
            (["jobs", "nope"], "corral jobs: no job queue 'nope'"),
            (["job", "nope", id], "corral job: no job queue 'nope'"),
            (["jobs", "a-list"], "corral jobs: 'a-list' is a volatile_list, not a job queue"),
            (["job", "q", "zz"], "corral job: info on 'q': no job 'zz'"),
            (["job", "q", "zz", "--retry"], "corral job: retry on 'q': no job 'zz'"),
            (["job", "q", "waiting", "--retry"],
             "corral job: retry on 'q': job waiting is ready, not stalled")):
        assert 1 == main([*argv, "--url", url]), argv
        captured = capsys.readouterr()
        assert ("", message) == (captured.out, captured.err.strip())
    with connect(url, reconnect=None) as c:
        assert "nope" not in c.stats()["containers"]


@pytest.mark.parametrize(("argv", "message"), [
    (["jobs", "q", "--state", "bogus"], "argument --state: invalid choice: 'bogus'"),
    (["jobs", "q", "--limit", "0"], "argument --limit: must be at least 1, not 0"),
    (["jobs", "q", "--start", "-1"], "argument --start: must be at least 0, not -1"),
    (["job", "q", "1", "--retry", "--retract"], "not allowed with argument --retry"),
])
def test_bad_arguments_are_usage_errors(argv: list[str], message: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert 2 == exit.value.code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_jobs_and_job_help_describe_them(capsys: pytest.CaptureFixture[str]) -> None:
    for command, text in (("jobs", "last line of the job's last error"),
                          ("job", "its last error whole")):
        with pytest.raises(SystemExit) as exit:
            main([command, "--help"])
        assert 0 == exit.value.code
        out = capsys.readouterr().out
        assert text in " ".join(out.split()) and "--json" in out
