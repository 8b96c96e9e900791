"""Benchmark: labstack's simulator against thrml on the same 2-D grid Ising model.

Run: ``python bench/bench_sim_vs_thrml.py [--quick]``. Prints cell updates per second
for both samplers at 64x64 and larger grids, a scaling table of this simulator up to
10^6 cells, and as its last line ``ratio: <labstack / thrml updates per second>``, the
smallest ratio over the grids both ran (so the worst case, not the best).

What is compared: one "update" is one cell resampled by block Gibbs (heat-bath) on a
two-colour checkerboard, which is what thrml does; both run one chain on the CPU with
the threads they choose (XLA's for thrml; ours from 4096 cells), compiled before
timing, best of 3, wall clock, set-up (coefficients, layout) included. Two
workloads for each: "sampling" records a sample every 2 sweeps, "long" runs many
sweeps between few samples; the ratio divides the better of ours by the better of
thrml's, so it does not flatter us. The machine may be shared: rerun if in doubt. Model: random fields h ~ N(0, 15 mK) and couplings
J ~ N(12, 12 mK) at T_eff = 35 mK (thrml: beta = 1/T_eff, biases h, weights J).
Our sweeps of chains and grids run on labstack.sim.lattice_kernels (float32, 8-lane
vectors). The scaling table also gives this simulator's physical update (the exact
two-state step over a finite dt, which the virtual lab uses between closely spaced
samples) and the serial and threaded heat-bath sweeps.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from labstack.sim.dynamics import CellEnsemble, CouplingGraph
from labstack.sim.truth import _coupler_pairs

T_EFF = 0.035


def grid(side: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, CouplingGraph]:
    n = side * side
    pairs = _coupler_pairs(n, "grid", (side, side))
    rng = np.random.default_rng(seed)
    h = rng.normal(0.0, 0.015, n)
    j = rng.normal(0.012, 0.012, len(pairs))
    return pairs, h, j, CouplingGraph.build(n, pairs, j)


def best_of(run, repeats: int = 3) -> float:
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def sweeps_for(run_one, target_s: float) -> int:
    """Sweeps per timed call: ~target_s long and >= 20x the per-call set-up (table, layout)."""
    t1 = best_of(lambda: run_one(1), 2)
    t9 = best_of(lambda: run_one(9), 2)
    per_sweep = max((t9 - t1) / 8, 0.2 * t9 / 9)  # noise can make the difference ~0
    setup = max(t1 - per_sweep, 0.0)
    return int(min(max(10, target_s / per_sweep, 20 * setup / per_sweep), 200 * target_s / t9))


class Ours:
    """This simulator on one grid; ``sampling`` records a sample every 2 sweeps."""

    def __init__(self, side: int, threshold: int) -> None:
        _, self.h, _, self.graph = grid(side)
        self.n = side * side
        self.cells = CellEnsemble(1e9 * np.ones(self.n), 0.25 * np.ones(self.n),
                                  np.zeros(self.n, np.int8), np.random.default_rng(1),
                                  parallel_threshold=threshold)

    def sweep_rate(self, dt: float, target_s: float) -> float:
        def run(k: int) -> None:
            self.cells.sweeps(k, self.h, T_EFF, self.graph, dt=dt)

        run(2)  # compile, build the layout
        k = sweeps_for(run, target_s)
        return self.n * k / best_of(lambda: run(k))

    def sampling_rate(self, n_samples: int) -> float:
        def run() -> None:
            self.cells.gibbs(n_samples, self.h, T_EFF, self.graph, sweeps_per_sample=2)

        run()
        return self.n * 2 * n_samples / best_of(run)


def thrml_rates(side: int, n_samples: int, target_s: float) -> tuple[float, float]:
    """thrml updates/s: (sampling: a sample every 2 sweeps; long: 10 samples, many sweeps)."""
    from labstack.sim.thrml_peer import PeerModel

    pairs, h, j, graph = grid(side)
    peer = PeerModel.build(side * side, pairs, h, j, T_EFF, graph.colors)
    peer._run(n_samples, 2, 0, 0)
    sampling = side * side * 2 * n_samples / best_of(lambda: peer._run(n_samples, 2, 0, 1))
    per_sample = max(1, int(target_s * sampling / (side * side) / 10))
    peer._run(10, per_sample, 0, 0)
    long = side * side * 10 * per_sample / best_of(lambda: peer._run(10, per_sample, 0, 2))
    return sampling, long


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller grids only")
    args = parser.parse_args()
    thrml_sides = [64, 128] if args.quick else [64, 128, 256, 512]
    our_sides = [64, 128, 256, 512] if args.quick else [64, 128, 256, 512, 1000]
    auto = CellEnsemble(np.ones(1), np.ones(1), np.zeros(1), np.random.default_rng()).parallel_threshold
    import jax
    import thrml  # noqa: F401

    print(f"# {platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}, "
          f"jax {jax.__version__} ({jax.default_backend()}), thrml 0.1.4; best of 3, wall clock")
    print("# sampling = one chain, a recorded sample every 2 sweeps (1000 samples);"
          " long = one chain, few samples")
    print(f"\n{'grid':>11} {'cells':>8} {'thrml sampling':>15} {'thrml long':>11} "
          f"{'labstack sampling':>18} {'labstack long':>14} {'ratio':>6}")
    ratios: dict[int, float] = {}
    for side in thrml_sides:
        ours = Ours(side, auto)
        o_sampling = ours.sampling_rate(1000)
        o_long = ours.sweep_rate(np.inf, 0.5)
        t_sampling, t_long = thrml_rates(side, 1000, 0.5)
        ratios[side] = max(o_sampling, o_long) / max(t_sampling, t_long)
        print(f"{side:>5}x{side:<5} {side * side:>8} {t_sampling:>15.3e} {t_long:>11.3e} "
              f"{o_sampling:>18.3e} {o_long:>14.3e} {ratios[side]:>6.1f}")
    print("# ratio = best labstack mode / best thrml mode; the last line gives the smallest")

    print("\nlabstack scaling (long chain). Gibbs = heat-bath sweeps; physical = exact two-state"
          " step, dt = 1 ns (threads as chosen)")
    print(f"{'grid':>11} {'cells':>8} {'Gibbs serial':>13} {'Gibbs threads':>14} "
          f"{'ns/update':>10} {'physical':>11} {'ns/update':>10}")
    for side in our_sides:
        serial = Ours(side, 10**12).sweep_rate(np.inf, 0.4)
        threads = Ours(side, 1).sweep_rate(np.inf, 0.4)
        physical = Ours(side, auto).sweep_rate(1e-9, 0.4)
        print(f"{side:>5}x{side:<5} {side * side:>8} {serial:>13.3e} {threads:>14.3e} "
              f"{1e9 / max(serial, threads):>10.2f} {physical:>11.3e} {1e9 / physical:>10.2f}")
    print(f"ratio: {min(ratios.values()):.2f}")


if __name__ == "__main__":
    main()
