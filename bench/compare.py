"""flowq against Celery 5.7, side by side on the same Redis: every workload, A B A B.

    pip install -e '.[bench]'                  # Celery 5.7 and matplotlib, only here
    python -m bench compare                     # 3 rounds, the sizes below (~10 minutes)
    python -m bench compare --quick             # sizes / 10, 1 round
    python -m bench compare --systems flowq     # without Celery

Each round runs flowq, then Celery (the next round starts with the other one), each as a
fresh deployment (private queue, key prefix, Redis database) with one real ``worker``
subprocess (prefork, ``-c`` children). Per system and round:

* ``producer``: ``add.delay(i, i)`` N times with no worker running (sends/s);
* a worker starts; ``latency``: median of ``add.delay(1, 1).get()``;
* ``chain``, ``group``, ``chord``: end to end at three sizes each (the scaling runs);
* ``chord`` of the large size (only in the first ``--large-rounds`` rounds: Celery needs
  minutes for it);
* ``drain``: N trivial tasks with results ignored, first send to last task done (each
  task increments one Redis counter, the same cost on both sides);
* ``rss``: the peak resident memory of the worker (main process + children) over the round.

Output: one JSON line per run on stdout, then a JSON ``summary`` line with the medians and
ratios; a table of medians, ratios and goals on stderr; with ``--chart PATH``, a PNG of time
against size for chain, group and chord, both systems. Ratios read "times better for
flowq": Celery's time / flowq's time, flowq's rate / Celery's rate.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.harness import ROOT, emit, parser, progress
from bench.systems import SYSTEMS, celery_missing, deploy

NAME = "compare"
#: Workload -> default size (scaled by --scale / --quick).
SIZES = {"producer": 20_000, "drain": 20_000, "latency": 500, "chain": 1_000,
         "group": 1_000, "chord": 2_000, "chord_large": 10_000}
#: Scaling runs: fractions of the workload's size (the largest is the table's size).
SCALING = (0.25, 0.5, 1.0)
SCALED = ("chain", "group", "chord")
#: Goals from the issue that set them, keyed like the table's rows.
GOALS = {"producer": "≥ 5×", "drain": "≥ 8×", "latency": "≤ ¼ of Celery's, ≤ 1 ms",
         "chain": "≤ 1.0 s", "group": "≤ 0.4 s", "chord": "≤ 0.8 s",
         "chord_large": "≤ 3 s", "rss": "≤ 100 MiB"}
RATES = ("producer", "drain")


def run_workload(stack: Any, system: str, workload: str, size: int) -> dict:
    """Run one workload in a fresh process; return its figures."""
    command = [sys.executable, "-m", "bench.workloads", system, workload, str(size)]
    try:
        done = subprocess.run(command, cwd=ROOT, env=stack.env,
                              capture_output=True, text=True, timeout=max(600, size / 10))
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": "timed out"}
    lines = done.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        return {"ok": False, "error": f"exit {done.returncode}: {done.stderr[-800:]}"}


class PeakRss:
    """Samples a worker's resident memory (main + children) every 0.1 s; keeps the peak."""

    def __init__(self, worker: Any):
        self.worker = worker
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, self.worker.rss_bytes())

    def stop(self) -> float:
        """Stop sampling; the peak in MiB."""
        self._stop.set()
        self._thread.join()
        return self.peak / 2**20


def plan(options: Any, round_no: int) -> list[tuple[str, str, int]]:
    """(row, workload, size) for the runs of one round with a worker running."""
    def size(row: str, fraction: float = 1.0) -> int:
        return max(2, int(SIZES[row] * options.scale * fraction))

    runs = [("latency", "latency", size("latency"))]
    for row in SCALED:
        fractions = SCALING if options.scaling else (1.0,)
        runs += [(row if fraction == 1.0 else f"{row}@{size(row, fraction)}", row,
                  size(row, fraction)) for fraction in fractions]
    if round_no <= options.large_rounds:
        runs.append(("chord_large", "chord", size("chord_large")))
    runs.append(("drain", "drain", size("drain")))
    return runs


def one_round(system: str, round_no: int, options: Any) -> list[dict]:
    """Every workload of one round for one system; the emitted records."""
    records = []
    with deploy(system, options) as stack:
        url = stack.redis_db_url if system == "flowq" else stack.url
        stack.env["BENCH_LEDGER"] = f"{url}#{stack.queue}:ledger"  # workers and workloads

        def record(row: str, workload: str, size: int, figures: dict) -> None:
            records.append(emit(NAME, f"{system} {row}", system=system, round=round_no,
                                row=row, workload=workload, size=size, **stack.description,
                                **figures))
            if not figures.get("ok"):
                progress(f"{system} {row}: FAILED {figures.get('error', '')}")

        producer_size = max(2, int(SIZES["producer"] * options.scale))
        record("producer", "producer", producer_size,
               run_workload(stack, system, "producer", producer_size))
        worker = stack.start_worker(ready=False)
        rss = PeakRss(worker)
        figures = run_workload(stack, system, "ready", 60)
        if not figures.get("ok"):
            progress(f"{system} worker not ready: {figures}\n{worker.log()[-2000:]}")
            rss.stop()
            return records
        for row, workload, size in plan(options, round_no):
            progress(f"round {round_no} {system}: {row} ({workload} {size})")
            record(row, workload, size, run_workload(stack, system, workload, size))
        record("rss", "rss", 0, {"mib": rss.stop(), "ok": True})
    return records


def value(record: dict) -> float | None:
    """The figure a row is compared on: a rate, MiB, or seconds."""
    if not record.get("ok"):
        return None
    if record["row"] in RATES:
        return record["per_s"]
    if record["row"] == "rss":
        return record["mib"]
    return record["seconds"]


def summarise(records: list[dict]) -> dict[str, dict[str, Any]]:
    """Medians per row and system, and flowq's advantage (× better) per row."""
    by_row: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    sizes: dict[str, int] = {}
    for record in records:
        figure = value(record)
        if figure is not None:
            by_row[record["row"]][record["system"]].append(figure)
            sizes[record["row"]] = record["size"]
    table = {}
    for row, systems in by_row.items():
        medians = {system: statistics.median(values) for system, values in systems.items()}
        entry: dict[str, Any] = {"size": sizes[row], "runs": {s: len(v) for s, v in
                                                              systems.items()}, **medians}
        if "flowq" in medians and "celery" in medians and medians["flowq"] > 0:
            flowq, celery = medians["flowq"], medians["celery"]
            entry["flowq_advantage"] = round(flowq / celery if row in RATES else
                                             celery / flowq, 2)
        table[row] = entry
    return table


def show(table: dict[str, dict[str, Any]]) -> str:
    """The medians as a text table (rates in /s, memory in MiB, times in ms or s)."""
    def fmt(row: str, figure: float | None) -> str:
        if figure is None:
            return "-"
        if row in RATES:
            return f"{figure:,.0f}/s"
        if row == "rss":
            return f"{figure:.0f} MiB"
        return f"{figure * 1000:.2f} ms" if figure < 0.1 else f"{figure:.2f} s"

    lines = [f"{'workload':<18}{'size':>8}{'flowq':>14}{'celery':>14}{'flowq ×':>10}  goal"]
    for row, entry in table.items():
        advantage = entry.get("flowq_advantage")
        lines.append(f"{row:<18}{entry['size'] or '':>8}{fmt(row, entry.get('flowq')):>14}"
                     f"{fmt(row, entry.get('celery')):>14}"
                     f"{(f'{advantage:.1f}×' if advantage else '-'):>10}  "
                     f"{GOALS.get(row, '')}")
    return "\n".join(lines)


def chart(table: dict[str, dict[str, Any]], path: Path) -> None:
    """Time against size for chain, group and chord, both systems, as a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        progress("no chart: matplotlib is not installed (pip install -e '.[bench]')")
        return
    figure, axes = plt.subplots(1, len(SCALED), figsize=(4 * len(SCALED), 3.4))
    for axis, workload in zip(axes, SCALED):
        rows = sorted((entry["size"], entry) for row, entry in table.items()
                      if row.split("@")[0] == workload)
        for system in SYSTEMS:
            points = [(size, entry[system]) for size, entry in rows if system in entry]
            if points:
                axis.plot(*zip(*points), marker="o", label=system)
        axis.set_title(workload)
        axis.set_xlabel("size (tasks)")
        axis.set_ylabel("seconds")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    progress(f"chart written to {path}")


def main(argv: list[str]) -> int:
    parse = parser(NAME, __doc__)
    parse.add_argument("--rounds", type=int, default=3, help="A B rounds (default 3)")
    parse.add_argument("--large-rounds", type=int, default=1,
                       help="rounds that include the large chord (default 1)")
    parse.add_argument("--scale", type=float, default=1.0, help="multiply every size")
    parse.add_argument("--systems", default=",".join(SYSTEMS), help="flowq,celery")
    parse.add_argument("--no-scaling", dest="scaling", action="store_false",
                       help="only the table's sizes, no scaling runs")
    parse.add_argument("--celery-db", type=int, default=13, help="Celery's Redis database")
    parse.add_argument("--chart", type=Path, help="write the scaling chart (PNG) here")
    options = parse.parse_args(argv)
    if options.quick:
        options.scale, options.rounds = options.scale * 0.1, 1
    systems = [name.strip() for name in options.systems.split(",") if name.strip()]
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown or not systems:
        print(f"python -m bench compare: unknown systems {unknown}; use {SYSTEMS}",
              file=sys.stderr)
        return 2
    if "celery" in systems and (why := celery_missing()):
        print(f"python -m bench compare: {why}", file=sys.stderr)
        return 2
    records: list[dict] = []
    started = time.monotonic()
    for round_no in range(1, options.rounds + 1):
        order = systems if round_no % 2 else systems[::-1]
        for system in order:
            records += one_round(system, round_no, options)
    table = summarise(records)
    progress(f"medians over {options.rounds} round(s), {time.monotonic() - started:.0f} s:\n"
             + show(table))
    emit(NAME, "summary", rounds=options.rounds, scale=options.scale, table=table)
    if options.chart:
        chart(table, options.chart)
    return 0 if all(record.get("ok") for record in records) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
