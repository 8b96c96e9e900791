"""Full cold-start calibration of ever larger chips: wall time, peak memory and lab time per size.

Compared against: the scaling budget of issue 20, not a peer program: wall time at
most 2.2x per doubling of cells and peak memory at most 1.5 GB at 1 024 cells on
the 2-core machine. Each size runs ``labstack calibrate --seed S --cells N`` from
cold in its own process (so its peak resident memory is its own, read from the
kernel's accounting of the finished child), and prints one row per size: cells,
wall, peak RSS, lab time, and the per-node lab and wall split the CLI reports.

``ratio`` is 2.2 / the worst wall-time factor between consecutive sizes, scaled to
a doubling (``factor ** (1 / log2(N2 / N1))``); >= 1 meets the budget. With one
size there is no factor and the ratio is printed as 0.

    python bench/bench_big_chip.py [--cells 64 256 1024] [--seed 3] [--only bias_scurve ...]
"""

from __future__ import annotations

import argparse
import math
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

BUDGET_PER_DOUBLING = 2.2
NODE_LINE = re.compile(r"^(\w+)\s+(\w+)\s+\w+\s+lab (.+?), wall (.+)$")
FRIDGE_LINE = re.compile(r"^fridge time: (.+?) of lab clock")


def run_size(cells: int, seed: int, only: list[str]) -> dict:
    """One cold start in a child process: wall, the child's peak RSS, the CLI's lab-time lines."""
    with tempfile.TemporaryDirectory() as data_dir:
        cmd = [sys.executable, "-m", "labstack.cli", "calibrate", "--seed", str(seed), "--cells", str(cells),
               "--no-progress", "--data-dir", data_dir]
        if only:
            cmd += ["--only", *only]
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    nodes = [m.groups() for line in done.stdout.splitlines() if (m := NODE_LINE.match(line.strip()))]
    stale = [name for name, status, _, _ in nodes if status != "fresh"]
    # exit 1 also when some cells are flagged (dead or stuck cells of a healthy calibration)
    if done.returncode not in (0, 1) or not nodes or stale:
        raise SystemExit(f"{cells} cells: labstack calibrate exited {done.returncode}, not fresh: {stale}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    if peak_kb < before:
        peak_kb = before  # ru_maxrss of children is the largest so far: sizes run in increasing order
    fridge = next((m.group(1) for line in done.stdout.splitlines() if (m := FRIDGE_LINE.match(line.strip()))), "?")
    return {"cells": cells, "wall_s": wall, "peak_gb": peak_kb / 2**20, "lab": fridge, "nodes": nodes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=[], help="only these routines (and their dependencies)")
    args = parser.parse_args()
    sizes = sorted(args.cells)
    print(f"# labstack calibrate --seed {args.seed} from cold, one process per size; {os.cpu_count()} cores")
    print(f"{'cells':>6} {'wall':>9} {'peak RSS':>9} {'lab time':>16}")
    rows = []
    for cells in sizes:
        row = run_size(cells, args.seed, args.only)
        rows.append(row)
        print(f"{cells:>6} {row['wall_s']:>8.1f}s {row['peak_gb']:>7.2f}GB {row['lab']:>16}", flush=True)
        for name, _, lab, wall in row["nodes"]:
            print(f"{'':>8}{name:<24} lab {lab:>12}  wall {wall}")
    factors = [
        (b["wall_s"] / a["wall_s"]) ** (1.0 / math.log2(b["cells"] / a["cells"]))
        for a, b in zip(rows, rows[1:], strict=False)
    ]
    if factors:
        print("wall factor per doubling: " + ", ".join(f"{f:.2f}" for f in factors)
              + f" (budget {BUDGET_PER_DOUBLING})")
    print(f"ratio: {BUDGET_PER_DOUBLING / max(factors) if factors else 0.0:.3f}")


if __name__ == "__main__":
    main()
