"""Every ```python block of README.md and docs/*.md runs as written and prints what its
comments say it prints; the commands the README gives a newcomer run too.

Each block runs in a fresh process, as a script in an empty directory of its own; one
that defines ``Test...`` names is a test module, run by pytest as docs/testing.md says
to run it. A ``print(...)  # text`` line promises that ``text`` is a line of the
output, in that order. The docs' addresses are the defaults of a server and a Redis on
this machine; the test points them at its own, on free ports: ``127.0.0.1:2605`` and
``127.0.0.1:2606`` at a ``corral serve`` started for the block,
``redis://127.0.0.1:6379/0`` at the tests' redis-server. A block with
``<!-- not-runnable: why -->`` on the line before it is only compiled.
"""

from __future__ import annotations

import ast
import pathlib
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from test_examples import CORRAL, Launch, corral_serve, processes

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^(<!-- not-runnable: .+ -->\n)?```python\n(.*?)^```", re.M | re.S)


def blocks() -> list[Any]:
    """Each block: its file, the line it starts on, its code, and whether it is marked
    not runnable."""
    return [pytest.param(path, line, match.group(2), bool(match.group(1)),
                         id=f"{path.name}:{line}")
            for path in DOCS for text in [path.read_text()]
            for match in BLOCK.finditer(text)
            for line in [text.count("\n", 0, match.start(2))]]


def printed(code: str) -> list[str]:
    """What the block's ``print(...)  # text`` lines say it prints, in order."""
    return re.findall(r"^\s*print\(.*\)\s+#\s*(.+?)\s*$", code, re.M)


def is_test_module(code: str) -> bool:
    """Whether the block defines ``Test...`` classes or ``test_...`` functions."""
    return any(name.startswith(("Test", "test_")) for node in ast.parse(code).body
               for name in [getattr(node, "name", "")] + [
                   target.id for target in getattr(node, "targets", [])
                   if isinstance(target, ast.Name)])


@pytest.fixture
def launch(tmp_path: pathlib.Path) -> Iterator[Launch]:
    with processes(tmp_path) as launch:
        yield launch


@pytest.mark.parametrize(("path", "line", "code", "fragment"), blocks())
def test_block_runs_as_written(path: pathlib.Path, line: int, code: str, fragment: bool,
                               tmp_path: pathlib.Path, launch: Launch,
                               request: pytest.FixtureRequest) -> None:
    """The block runs to its end, exit 0, and prints what it says."""
    where = f"{path.relative_to(ROOT)}:{line}"
    if fragment:
        compile(code, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        return
    if re.search(r"127\.0\.0\.1:260[56]", code):
        served = corral_serve(launch)
        code = code.replace("127.0.0.1:2605", served.tcp.removeprefix("corral://")).replace(
            "127.0.0.1:2606", served.zmq.removeprefix("zmq+tcp://"))
    if "redis://127.0.0.1:6379/0" in code:
        socket = request.getfixturevalue("redis_server").connection_pool.connection_kwargs[
            "path"]
        code = code.replace("redis://127.0.0.1:6379/0", f"unix://{socket}")
    script = tmp_path / ("test_block.py" if is_test_module(code) else "block.py")
    script.write_text(code)
    argv = ([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", script.name]
            if script.name.startswith("test_") else [sys.executable, script.name])
    proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert 0 == proc.returncode, f"{where}\n{proc.stdout}{proc.stderr}"
    lines = iter(proc.stdout.splitlines())
    for text in printed(code):
        assert text in lines, f"{where}: no {text!r} in\n{proc.stdout}"


def readme_commands() -> list[list[str]]:
    """The ``.venv/bin/corral`` commands of the README's ```sh blocks (the venv and pip
    lines beside them are the machine's business)."""
    text = (ROOT / "README.md").read_text()
    return [command.split("#")[0].split()[1:]
            for block in re.findall(r"^```sh\n(.*?)^```", text, re.M | re.S)
            for command in re.split(r"&&|\n", block)
            if command.strip().startswith(".venv/bin/corral ")]


def test_the_readme_gives_a_newcomer_demo_and_serve() -> None:
    """What the next test runs is what the README shows."""
    assert [["demo"], ["serve"]] == readme_commands()


def test_readme_demo_runs() -> None:
    """``corral demo``: Tio's factorial cluster, checked."""
    proc = subprocess.run([str(CORRAL), "demo"], capture_output=True, text=True,
                          timeout=120)
    assert 0 == proc.returncode, proc.stdout + proc.stderr
    assert "every item processed exactly once" in proc.stdout


def test_readme_serve_runs(launch: Launch) -> None:
    """``corral serve`` (on a free port) listens, answers, and stops on Ctrl-C."""
    serve = launch([str(CORRAL), "serve", "--port", "0"])
    url = "corral://" + serve.says(r"listening on (127\.0\.0\.1:\d+)$").group(1)
    ping = subprocess.run([str(CORRAL), "ping", "--url", url], capture_output=True,
                          text=True, timeout=60)
    assert f"pong from {url}" in ping.stdout
    serve.interrupt()
    assert "stopping on SIGINT" in serve.ends()
