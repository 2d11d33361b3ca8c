"""The ``corral`` command."""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from collections.abc import Sequence

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_factorial_cluster

    report = run_factorial_cluster(args.items, args.consumers, out=sys.stdout)
    ok = Counter(report.results) == Counter(f"{n}!={math.factorial(n)}" for n in report.items)
    print("every item processed exactly once" if ok else "MISMATCH: items lost or repeated")
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``corral`` console script."""
    parser = argparse.ArgumentParser(prog="corral", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="run Tio's factorial cluster: a producer and consumer threads")
    demo.add_argument("--items", type=int, default=1000, help="work items (default 1000)")
    demo.add_argument("--consumers", type=int, default=4, help="consumer threads (default 4)")
    demo.set_defaults(run=_demo)
    args = parser.parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
