"""What realism costs: a cold-start calibration of a 64-cell chip, realistic vs ideal, same seed.

Both chips have the same cells (the realistic one adds the per-seed fridge, readout,
DACs, thermometry and drift, :mod:`labstack.sim.truth`); both run every installed
routine with the same settings, as ``labstack calibrate`` does, in one process, one
after the other (the ideal first, so the realistic run finds the kernels compiled).
Reported per node: wall time of each chip and their ratio.

The peer is the issue's budget: the realistic calibration may take at most 1.5x the
wall time of the ideal one. ``ratio`` is 1.5 / (realistic / ideal) (higher is better;
> 1 meets it). On a shared machine wall times wander by ~10 %; the CPU times are
printed too.

    python bench/bench_realism_cost.py [--cells 64] [--seed 7]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labstack.calibrate import Context  # noqa: E402
from labstack.session import build_graph  # noqa: E402
from labstack.visa import open_station  # noqa: E402
from tests.conftest import lab_description, lab_of  # noqa: E402

BUDGET = 1.5


def calibrate(realism: str, cells: int, seed: int, dead: float, crosstalk: float) -> tuple[float, float, dict[str, float], str]:
    """(wall s, cpu s, wall s per node, status line) of one cold-start calibration."""
    description = lab_description(seed=seed, cells=cells, dead=dead, crosstalk=crosstalk, realism=realism)
    station = open_station("virtual", lab=description)
    lab = lab_of(description)
    lab.acquire(2, 1e-5)  # compile the kernels outside the timing (cached after the first run)
    per_node: dict[str, float] = defaultdict(float)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context.create(tmp, station)
        graph = build_graph(ctx)
        for name in graph.names:
            node = graph[name]
            for phase in ("acquire", "fit"):
                original = getattr(node, phase)

                def timed(*args, _original=original, _name=name, **kwargs):
                    start = time.perf_counter()
                    try:
                        return _original(*args, **kwargs)
                    finally:
                        per_node[_name] += time.perf_counter() - start

                setattr(node, phase, timed)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        status = graph.calibrate_all()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    station.close()
    summary = ", ".join(f"{n} {s.value}" for n, s in status.items() if s.value != "fresh") or "all fresh"
    return wall, cpu, dict(per_node), f"{summary}; lab time {lab.clock.now():.0f} s"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", type=int, default=64)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--dead", type=float, default=0.05)
    ap.add_argument("--crosstalk", type=float, default=0.05)
    args = ap.parse_args()
    results = {}
    for realism in ("ideal", "realistic"):
        results[realism] = calibrate(realism, args.cells, args.seed, args.dead, args.crosstalk)
        wall, cpu, _, summary = results[realism]
        print(f"{realism:>9}: wall {wall:6.1f} s, cpu {cpu:6.1f} s ({summary})")
    ideal, real = results["ideal"], results["realistic"]
    print(f"\n{'node':<22} {'ideal s':>8} {'realistic s':>12} {'x':>6}")
    for name in real[2]:
        a, b = ideal[2].get(name, 0.0), real[2][name]
        print(f"{name:<22} {a:>8.1f} {b:>12.1f} {b / a if a else float('nan'):>6.2f}")
    slowdown = real[0] / ideal[0]
    print(f"\nrealistic / ideal wall time: {slowdown:.3f} (cpu {real[1] / ideal[1]:.3f}); budget {BUDGET}")
    print(f"ratio: {BUDGET / slowdown:.3f}")


if __name__ == "__main__":
    main()
