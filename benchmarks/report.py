"""The benchmark suite in one command: a Markdown report with charts.

Runs ``handoff.py``, ``jobs.py --quick`` and ``end_to_end.py``, each as a subprocess
writing its results as JSON (``--json``), and writes ``benchmarks/report/README.md``
with PNG charts beside it (matplotlib, Agg backend):

- ``ratios.png``: corral / peer per measure (above 1: corral is faster), on a log
  scale, with a line at 1.0 and each measure's target marked;
- ``throughput.png``: end-to-end jobs/s per system, one at a time and all at once;
- ``latency.png``: end-to-end latency p50 and p99 per system (log scale).

The report states the date, the machine (CPUs, CPU model), Python and each measure's
numbers in tables, and keeps each script's printed output. A script that fails or
times out is noted in the report and the rest go on. ``--quick``: fewer items for
``handoff.py`` and ``end_to_end.py --quick``. Bounded: every script runs under a
time-out and its processes stop with it.

The results of all three are kept beside the report as ``results.json``;
``--replot`` writes the report and charts again from it without running anything.

    python benchmarks/report.py [--quick] [--out DIR] [--replot]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# What each ratio is measured against, as the issue sets the targets: the thread facade
# 1.5x queue.Queue, a job cycle 0.5x, the trio facade 1.0x a memory channel, end to end
# 1.5x the fastest job library (and the job-cycle loop 1.5x beanstalkd).
HANDOFF_TARGETS = {"threads list": 1.5, "threads queue": 1.5, "threads jobs": 0.5,
                   "threads jobs 1": 0.5, "trio list": 1.0, "trio queue": 1.0,
                   "trio jobs": 1.0, "trio jobs 1": 1.0}


# -- running the suite -----------------------------------------------------------------------


def run_script(args: list[str], json_path: Path, limit: float) -> tuple[Any, str, str | None]:
    """Run a benchmark script (its output shown as it comes) for at most ``limit``
    seconds; its JSON results, its printed output and, if it failed, why."""
    command = [sys.executable, str(HERE / args[0]), *args[1:], "--json", str(json_path)]
    print(f"$ {' '.join(['python', f'benchmarks/{args[0]}', *args[1:]])}", flush=True)
    lines: list[str] = []
    proc = subprocess.Popen(command, cwd=HERE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def relay() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            print("  " + line, end="", flush=True)
            lines.append(line)

    reader = threading.Thread(target=relay, daemon=True)
    reader.start()
    error = None
    try:
        proc.wait(limit)
    except subprocess.TimeoutExpired:
        error = f"gave up after {limit:.0f} s"
    finally:
        if proc.poll() is None:  # its own session: the script and what it started
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        reader.join(10)
        if proc.stdout:
            proc.stdout.close()
    if error is None and proc.returncode != 0:
        error = f"exited with status {proc.returncode}"
    results = None
    if error is None:
        try:
            results = json.loads(json_path.read_text())
        except (OSError, ValueError) as failure:
            error = f"no JSON results: {failure}"
    return results, "".join(lines), error


# -- the machine -----------------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            "cpus": str(os.cpu_count()), "usable cpus": str(len(os.sched_getaffinity(0))),
            "cpu model": model, "python": f"{platform.python_implementation()} "
            f"{platform.python_version()}", "os": f"{platform.system()} {platform.release()}"}


# -- charts ----------------------------------------------------------------------------------


def ratio_rows(handoff: Any, e2e: Any) -> list[tuple[str, float, float | None]]:
    """(measure, corral / peer, target or None), in the order the chart shows them."""
    rows: list[tuple[str, float, float | None]] = []
    if handoff:
        for title, pair in handoff["pairs"].items():
            rows.append((f"hand-off {title} / {pair['peer']}", pair["ratio"],
                         HANDOFF_TARGETS.get(title)))
    if e2e:
        for measure, ratio in e2e["ratios"].items():
            label = measure.replace("job cycles / beanstalkd",
                                    "job-cycle loop, corral server / beanstalkd")
            if "fastest library" in measure:
                label = label.replace("fastest library", f"fastest library ({ratio['peer']})")
            rows.append((f"end to end, {label}" if "loop" not in label else label,
                         ratio["ratio"], ratio.get("target")))
    return rows


def chart_ratios(rows: list[tuple[str, float, float | None]], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 0.42 * len(rows) + 1.6))
    labels = [row[0] for row in rows][::-1]
    values = [row[1] for row in rows][::-1]
    targets = [row[2] for row in rows][::-1]
    colors = ["#999999" if t is None else ("#2a9d4b" if v >= t else "#d1495b")
              for v, t in zip(values, targets, strict=True)]
    bars = ax.barh(range(len(rows)), values, color=colors, height=0.65)
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=1.2, label="1.0 (as fast as the peer)")
    first = True
    for i, target in enumerate(targets):
        if target is not None:
            ax.plot([target, target], [i - 0.42, i + 0.42], color="#1f3b99", linewidth=2.5,
                    label="target" if first else None)
            first = False
    for bar, value, target in zip(bars, values, targets, strict=True):
        ax.text(max(value, target or 0) * 1.06, bar.get_y() + bar.get_height() / 2,
                f"{value:.2f}x",
                va="center", fontsize=9,
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 1, "alpha": 0.85})
    ax.set_yticks(range(len(rows)), labels, fontsize=9)
    low, high = min(values + [t for t in targets if t]), max(values + [t for t in targets if t])
    ax.set_xlim(low / 1.6, high * 2.2)
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ticks = [t for t in (0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200)
             if low / 1.6 <= t <= high * 2.2]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.set_xlabel("corral / peer (log scale; above 1: corral is faster)")
    ax.set_title("corral against its peers: green meets its target, red does not, "
                 "grey has none", fontsize=11)
    ax.legend(loc="lower right", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def e2e_systems(e2e: Any) -> list[tuple[str, dict[str, float]]]:
    return [(label(e2e, name), result) for name, result in e2e["systems"].items()
            if isinstance(result, dict)]


def label(e2e: Any, name: str) -> str:
    """A system's name on the x axis: its version below, the floor's note below."""
    version = e2e["versions"].get(name)
    shown = name.replace(" (floor)", "\n(floor)").replace("corral ", "corral\n")
    return f"{shown}\n{version}" if version and "corral" not in name else shown


COLORS = {"corral": "#2a6fdb", "beanstalkd": "#e07b00", "floor": "#777777",
          "library": "#6aa84f"}


def system_color(e2e: Any, shown: str) -> str:
    name = next((n for n in e2e["systems"] if label(e2e, n) == shown), shown)
    return COLORS[e2e["kinds"].get(name, "library")]


def finish_axes(ax: Any, e2e: Any, legend: list[Any]) -> None:
    """Plain numbers on the log axis, and a legend of what the colours are."""
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.10g}"))
    kinds = {"corral": "corral", "beanstalkd": "beanstalkd", "floor": "raw redis-py (floor)",
             "library": "Python job library on Redis"}
    present = set(e2e["kinds"].get(name) for name, r in e2e["systems"].items()
                  if isinstance(r, dict))
    patches = [Patch(color=COLORS[k], label=text) for k, text in kinds.items() if k in present]
    ax.legend(handles=patches + legend, fontsize=8.5, loc="upper right", ncol=2)


def chart_throughput(e2e: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    systems = e2e_systems(e2e)
    fig, ax = plt.subplots(figsize=(11, 5.2))
    width = 0.4
    for offset, (measure, hatch, title) in enumerate((
            ("one at a time, jobs/s", "", "one at a time"),
            ("all at once, jobs/s", "//", "all at once"))):
        xs = [i + (offset - 0.5) * width for i in range(len(systems))]
        values = [result[measure] for _, result in systems]
        bars = ax.bar(xs, values, width, hatch=hatch, edgecolor="white", label=title,
                      color=[system_color(e2e, name) for name, _ in systems])
        for bar, value in zip(bars, values, strict=True):
            ax.text(bar.get_x() + bar.get_width() / 2, value * 1.05, f"{value:,.0f}",
                    ha="center", va="bottom", fontsize=7.5, rotation=90)
    ax.set_yscale("log")
    ax.set_xticks(range(len(systems)), [name for name, _ in systems], fontsize=8.5)
    ax.set_ylabel("jobs/s (log scale; higher is better)")
    ax.set_ylim(top=max(r["all at once, jobs/s"] for _, r in systems) * 12)
    from matplotlib.patches import Patch

    finish_axes(ax, e2e, [Patch(facecolor="white", edgecolor="black", label="one at a time"),
                          Patch(facecolor="white", edgecolor="black", hatch="//",
                                label="all at once")])
    ax.set_title(f"end to end: {e2e['jobs']:,} no-op jobs, one producer, {e2e['workers']} "
                 "workers; plain bars one at a time, hatched all at once", fontsize=11)
    ax.grid(axis="y", which="both", alpha=0.25)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def chart_latency(e2e: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    systems = e2e_systems(e2e)
    fig, ax = plt.subplots(figsize=(11, 5.2))
    width = 0.4
    for offset, (measure, alpha) in enumerate((("p50 ms", 1.0), ("p99 ms", 0.45))):
        xs = [i + (offset - 0.5) * width for i in range(len(systems))]
        values = [result[measure] for _, result in systems]
        bars = ax.bar(xs, values, width, alpha=alpha, label=measure.replace(" ms", ""),
                      color=[system_color(e2e, name) for name, _ in systems],
                      edgecolor="black", linewidth=0.4)
        for bar, value in zip(bars, values, strict=True):
            ax.text(bar.get_x() + bar.get_width() / 2, value * 1.06, f"{value:.2f}",
                    ha="center", va="bottom", fontsize=7.5)
    ax.set_yscale("log")
    ax.set_xticks(range(len(systems)), [name for name, _ in systems], fontsize=8.5)
    ax.set_ylabel("ms from put to the result (log scale; lower is better)")
    ax.set_ylim(top=max(r["p99 ms"] for _, r in systems) * 8)
    from matplotlib.patches import Patch

    finish_axes(ax, e2e, [Patch(facecolor="#555555", edgecolor="black", label="p50"),
                          Patch(facecolor="#555555", edgecolor="black", alpha=0.45,
                                label="p99")])
    ax.set_title("end to end, one job at a time: latency p50 (solid) and p99 (pale)",
                 fontsize=11)
    ax.grid(axis="y", which="both", alpha=0.25)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- the report ------------------------------------------------------------------------------


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(row) + " |" for row in rows])


def handoff_section(handoff: Any) -> list[str]:
    out = [f"{handoff['items']:,} items per round, best of {handoff['rounds']} interleaved "
           "rounds; one producer, one consumer (threads, or trio tasks).", ""]
    rows = []
    for title, pair in handoff["pairs"].items():
        target = HANDOFF_TARGETS.get(title)
        rows.append([title, f"{pair['corral items/s']:,.0f}", pair["peer"],
                     f"{pair['peer items/s']:,.0f}", f"{pair['ratio']:.2f}x",
                     verdict(pair["ratio"], target)])
    return out + table(["measure", "corral items/s", "peer", "peer items/s",
                        "corral / peer", "target"], rows)


def verdict(ratio: float, target: float | None) -> str:
    if target is None:
        return ""
    return f">= {target:.1f}x: {'met' if ratio >= target else '**not met**'}"


def jobs_section(jobs: Any) -> list[str]:
    rows = [["job cycles (put, claim, finish), one thread", f"{jobs['cycles/s, one thread']:,.0f}"
             " cycles/s"],
            ["producer + 4 worker threads",
             f"{jobs['jobs/s, producer + 4 worker threads']:,.0f} jobs/s"],
            [f"claim hand-off to a parked worker thread, p50 ({jobs['claim latency samples']}"
             " samples)", f"{jobs['claim latency p50 us']:,.0f} µs"],
            ["claim hand-off, p99", f"{jobs['claim latency p99 us']:,.0f} µs"]]
    for size, cost in jobs["advance us per expired lease"].items():
        rows.append([f"kernel `advance()` per expired lease, {int(size):,} leased",
                     f"{cost:.2f} µs"])
    return ([f"Through the thread facade, {jobs['jobs']:,} jobs (no peer: absolute figures)."
             , ""] + table(["measure", "value"], rows))


def e2e_section(e2e: Any) -> list[str]:
    out = [f"{e2e['jobs']:,} no-op jobs one at a time, then {e2e['jobs']:,} all at once; "
           f"one producer, {e2e['workers']} workers (processes; threads for corral "
           "embedded); every job checked to run exactly once"
           + ("; every process pinned to CPU 0" if e2e["pinned"] else "; not pinned")
           + f"; the Redis libraries over {e2e['redis via']}. Servers: "
           + ", ".join(e2e["servers"].values()) + ".", ""]
    rows = []
    for name, result in e2e["systems"].items():
        shown = name + (f" {v}" if (v := e2e["versions"].get(name)) else "")
        if isinstance(result, str):
            rows.append([shown, result, "", "", ""])
        else:
            rows.append([shown, f"{result['one at a time, jobs/s']:,.0f}",
                         f"{result['p50 ms']:.2f}", f"{result['p99 ms']:.2f}",
                         f"{result['all at once, jobs/s']:,.0f}"])
    out += table(["system", "one at a time, jobs/s", "p50 ms", "p99 ms",
                  "all at once, jobs/s"], rows)
    out += ["", "Ratios (above 1: corral is faster):", ""]
    rows = [[measure, ratio["peer"], f"{ratio['ratio']:.2f}x",
             verdict(ratio["ratio"], ratio.get("target"))]
            for measure, ratio in e2e["ratios"].items()]
    out += table(["measure", "peer", "corral / peer", "target"], rows)
    cycle = e2e["cycle"]
    out += [""]
    if "failed" in cycle:
        out += [f"Job cycles in a loop: failed: {cycle['failed']}"]
    else:
        out += [f"Job cycles in a loop, one client process over TCP, best of 3 rounds of "
                f"{e2e['cycles per round']:,}: corral server (put, claim, finish) "
                f"{cycle['corral']:,.0f}/s"
                + (f", beanstalkd with greenstalk (put, reserve, delete) "
                   f"{cycle['beanstalkd']:,.0f}/s." if "beanstalkd" in cycle else ".")]
    return out


def write_report(out_dir: Path, info: dict[str, str], quick: bool,
                 runs: dict[str, tuple[Any, str, str | None, list[str]]]) -> None:
    handoff, e2e = runs["handoff"][0], runs["end_to_end"][0]
    charts: list[tuple[str, str]] = []
    rows = ratio_rows(handoff, e2e)
    if rows:
        chart_ratios(rows, out_dir / "ratios.png")
        charts.append(("ratios.png", "corral / peer per measure"))
    if e2e and e2e_systems(e2e):
        chart_throughput(e2e, out_dir / "throughput.png")
        chart_latency(e2e, out_dir / "latency.png")
        charts += [("throughput.png", "end-to-end jobs/s per system"),
                   ("latency.png", "end-to-end latency p50 and p99 per system")]
    lines = ["# corral benchmark report", "",
             "Written by `benchmarks/report.py`" + (" --quick" if quick else "")
             + "; each ratio is corral / peer, above 1 means corral is faster. One run on a "
             "shared machine: run it twice before believing a difference of a few percent.",
             "", *table(["", ""], [["date", info["date"]],
                                   ["machine", f"{info['cpus']} CPUs ({info['usable cpus']} "
                                    f"usable), {info['cpu model']}"],
                                   ["OS", info["os"]], ["Python", info["python"]]]), ""]
    for file, title in charts:
        lines += [f"![{title}]({file})", ""]
    lines += ["Targets: the thread facade's list and queue 1.5x `queue.Queue`; the thread "
              "facade's job cycle 0.5x `queue.Queue` put/get/task_done; the trio facade's "
              "list, queue and jobs 1.0x a trio memory channel (\"jobs 1\": the worker "
              "finishes and claims in one call); end to end 1.5x the fastest Python job "
              "library, and the job-cycle loop 1.5x beanstalkd. Ratios with no target are "
              "shown grey.", ""]
    sections = [("handoff", "Hand-off (`handoff.py`)", handoff_section),
                ("jobs", "Job queues (`jobs.py --quick`)", jobs_section),
                ("end_to_end", "End to end (`end_to_end.py`)", e2e_section)]
    for key, title, section in sections:
        results, _, error, command = runs[key]
        lines += [f"## {title}", "", f"`python {' '.join(command)}`", ""]
        if error is not None:
            lines += [f"**Failed**: {error}.", ""]
        if results is not None:
            lines += section(results) + [""]
    lines += ["## What each script printed", ""]
    for _, printed, _, command in runs.values():
        lines += [f"<details><summary><code>python {' '.join(command)}</code></summary>", "",
                  "```", printed.rstrip(), "```", "", "</details>", ""]
    (out_dir / "README.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="handoff.py with 20,000 items and 3 rounds, end_to_end.py --quick")
    parser.add_argument("--out", type=Path, default=HERE / "report",
                        help="where README.md and the charts go (default benchmarks/report)")
    parser.add_argument("--replot", action="store_true",
                        help="only write the report again from DIR/results.json")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    args.out.mkdir(parents=True, exist_ok=True)
    saved = args.out / "results.json"
    if args.replot:
        kept = json.loads(saved.read_text())
        write_report(args.out, kept["machine"], kept["quick"],
                     {key: tuple(run) for key, run in kept["runs"].items()})
        print(f"wrote {args.out / 'README.md'} from {saved}")
        return
    info = machine()
    quick = ["--quick"] if args.quick else []
    suite = {"handoff": (["handoff.py", *(["--items", "20000", "--rounds", "3"] if args.quick
                                          else [])], 1200.0),
             "jobs": (["jobs.py", "--quick"], 900.0),
             "end_to_end": (["end_to_end.py", *quick], 2400.0)}
    runs: dict[str, tuple[Any, str, str | None, list[str]]] = {}
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="corral-report-") as tmp:
        for key, (command, limit) in suite.items():
            results, printed, error = run_script(command, Path(tmp) / f"{key}.json", limit)
            if error is not None:
                print(f"  ({command[0]} failed: {error})", flush=True)
            runs[key] = (results, printed, error, [f"benchmarks/{command[0]}", *command[1:]])
    saved.write_text(json.dumps({"machine": info, "quick": args.quick, "runs": runs},
                                indent=1))
    write_report(args.out, info, args.quick, runs)
    print(f"wrote {args.out / 'README.md'} ({time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
