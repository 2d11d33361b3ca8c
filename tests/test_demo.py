"""Tio's factorial cluster: a producer and four consumer threads."""

from __future__ import annotations

import io
import math
from collections import Counter

from corral.adapters.cli import main
from corral.adapters.demo import run_factorial_cluster


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
