"""Benchmark: labstack's simulator against thrml on the same 2-D grid Ising model.

Run: ``python bench/bench_sim_vs_thrml.py [--quick]``. Prints cell updates per second
for both samplers at 64x64 and larger grids, a scaling table of this simulator up to
10^6 cells, and as its last line ``ratio: <labstack / thrml updates per second at 64x64>``.

What is compared: one "update" is one cell resampled by block Gibbs (heat-bath) on a
two-colour checkerboard, which is what thrml does; both run one chain, on the CPU,
compiled before timing, best of 3. Model: random fields h ~ N(0, 15 mK) and couplings
J ~ N(12, 12 mK) at T_eff = 35 mK (thrml: beta = 1/T_eff, biases h, weights J).
The table also gives this simulator's physical update (exact telegraph step over a
finite dt, the one the virtual lab uses) and its serial / threaded sweeps.
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


def labstack_rate(side: int, dt: float, threshold: int, target_s: float = 0.4) -> float:
    """Best-of-3 cell updates per second of ``CellEnsemble.sweeps`` (``dt = inf``: Gibbs)."""
    _, h, _, graph = grid(side)
    n = side * side
    rng = np.random.default_rng(1)
    cells = CellEnsemble(1e9 * np.ones(n), 0.25 * np.ones(n), np.zeros(n, np.int8), rng,
                         parallel_threshold=threshold)
    cells.sweeps(2, h, T_EFF, graph, dt=dt)  # compile, build the layout
    start = time.perf_counter()
    cells.sweeps(5, h, T_EFF, graph, dt=dt)
    n_sweeps = max(5, int(target_s / ((time.perf_counter() - start) / 5)))
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        cells.sweeps(n_sweeps, h, T_EFF, graph, dt=dt)
        best = min(best, time.perf_counter() - start)
    return n * n_sweeps / best


def thrml_rate(side: int) -> float:
    from labstack.sim.thrml_peer import PeerModel

    pairs, h, j, graph = grid(side)
    peer = PeerModel.build(side * side, pairs, h, j, T_EFF, graph.colors)
    n_sweeps = max(50, int(4e7 / (side * side)))
    return peer.updates_per_second(n_sweeps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller grids only")
    args = parser.parse_args()
    thrml_sides = [64, 128] if args.quick else [64, 128, 256]
    our_sides = [64, 128, 256, 512] if args.quick else [64, 128, 256, 512, 1000]
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"numpy {np.__version__}")

    import jax
    import thrml

    print(f"# thrml {getattr(thrml, '__version__', '0.1.4')}, jax {jax.__version__} "
          f"({jax.default_backend()})")
    theirs: dict[int, float] = {}
    print("\nthrml block Gibbs (one chain)")
    print(f"{'grid':>11} {'cells':>9} {'updates/s':>12}")
    for side in thrml_sides:
        theirs[side] = thrml_rate(side)
        print(f"{side:>5}x{side:<5} {side * side:>9} {theirs[side]:>12.3e}")

    print("\nlabstack (one chain); Gibbs = heat-bath sweeps, physical = telegraph step dt = 1 ns")
    head = (f"{'grid':>11} {'cells':>9} {'Gibbs serial':>13} {'Gibbs threads':>14} "
            f"{'Gibbs auto':>11} {'ns/update':>10} {'physical':>11} {'vs thrml':>9}")
    print(head)
    ours: dict[int, float] = {}
    for side in our_sides:
        serial = labstack_rate(side, np.inf, 10**12)
        threads = labstack_rate(side, np.inf, 1)
        auto = labstack_rate(side, np.inf, CellEnsemble(np.ones(1), np.ones(1), np.zeros(1), np.random.default_rng()).parallel_threshold)
        physical = labstack_rate(side, 1e-9, CellEnsemble(np.ones(1), np.ones(1), np.zeros(1), np.random.default_rng()).parallel_threshold)
        ours[side] = auto
        versus = f"{auto / theirs[side]:>9.1f}" if side in theirs else f"{'':>9}"
        print(f"{side:>5}x{side:<5} {side * side:>9} {serial:>13.3e} {threads:>14.3e} "
              f"{auto:>11.3e} {1e9 / auto:>10.2f} {physical:>11.3e} {versus}")
    print(f"ratio: {ours[64] / theirs[64]:.2f}")


if __name__ == "__main__":
    main()
