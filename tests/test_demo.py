"""Tio's factorial cluster: a producer and four consumer threads."""

from __future__ import annotations

import io
import math
import pathlib
import re
from collections import Counter

import pytest
from conftest import server_thread

from corral.adapters.cli import main
from corral.adapters.client import connect
from corral.adapters.demo import run_factorial_cluster

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_every_item_processed_exactly_once() -> None:
    """4 consumers share 2000 items; each result appears once and is right."""
    report = run_factorial_cluster(items=2000, consumers=4, seed=11)
    assert Counter(f"{n}!={math.factorial(n)}" for n in report.items) == Counter(report.results)
    assert 2000 == sum(report.per_consumer.values())
    assert set(report.per_consumer) <= {f"consumer-{i}" for i in range(1, 5)}


def test_demo_command_prints_what_it_did(capsys: object) -> None:
    """`corral demo` reports the producer, each consumer and the check, and exits 0."""
    assert 0 == main(["demo", "--items", "300"])
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "producer: pushed 300 items" in out
    assert "every item processed exactly once" in out
    assert sum(int(line.split()[2]) for line in out.splitlines()
               if line.startswith("consumer-")) == 300


def test_report_goes_to_the_given_stream() -> None:
    """With out=, the demo narrates; without it, it is silent."""
    out = io.StringIO()
    run_factorial_cluster(items=10, out=out)
    assert "10 results in all" in out.getvalue()


def test_readme_example_runs(capsys: object) -> None:
    """The README's embedded example runs as written and prints what it says."""
    example, _, _ = python_blocks(ROOT / "README.md")
    exec(compile(example, "README.md", "exec"), {})
    assert "9801\n" == capsys.readouterr().out  # type: ignore[attr-defined]


def test_readme_client_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The README's client example runs as written against a server (on a test port):
    it puts the job it claims, and prints the result."""
    _, example, _ = python_blocks(ROOT / "README.md")
    with server_thread() as port, connect(f"corral://127.0.0.1:{port}") as corral:
        exec(compile(example.replace(":2605", f":{port}"), "README.md", "exec"), {})
        assert "done" == corral.jobs("render").result("1", timeout=5)
    assert "done\n" == capsys.readouterr().out


def test_readme_workers_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The README's workers example runs against a server (on a test port)."""
    _, _, example = python_blocks(ROOT / "README.md")
    with server_thread() as port:
        exec(compile(example.replace(":2605", f":{port}"), "README.md", "exec"), {})
    assert "6765\n" == capsys.readouterr().out


def test_kernel_doc_example_runs() -> None:
    """docs/kernel.md's example runs as written (its asserts are the check)."""
    (example,) = python_blocks(ROOT / "docs" / "kernel.md")
    exec(compile(example, "docs/kernel.md", "exec"), {})


def python_blocks(path: pathlib.Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)
