"""Targets on calibrated chips, and the judge of a trained chip against the simulator's truth.

Shared by tests/test_train_chip.py and bench/bench_train_family.py. Targets are drawn
from what the calibration state says is usable (as a user would), never from the
truth; :func:`truth_kl` and :func:`truth_distribution` then read the chip's actual
fields, couplings and effective temperature at the programmed voltages and score the
exact distribution of the target's cells by enumeration (no sampling noise).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from labstack.train import exact
from labstack.train.calibration import Couplers, VirtualBias

#: what training reads (the couplers node; its dependencies come along) with lighter
#: routine parameters: one fine chip-wide S-curve sweep resolves every cell without
#: per-cell windows, fewer samples, one settling repeat, three temperatures for T_eff.
#: The training tests and bench/bench_train_loop.py calibrate with it.
CALIBRATE = {
    "names": ["couplers"],
    "params": {
        "bias_scurve": {"n_points": 121, "n_samples": 500},
        "bias_settling": {"repeats": 1},
        "effective_temperature": {"temperatures_K": [0.0, 0.035, 0.08], "n_samples": 200},
        "couplers": {"n_samples": 3000},
    },
}


def usable_graph(state: Any, layout: Any) -> tuple[np.ndarray, dict[int, list[int]]]:
    """(usable cells, neighbours over calibrated couplers) as the state has them."""
    n, pairs = layout.n_cells, [tuple(p) for p in layout.coupler_pairs]
    usable = VirtualBias.from_state(state, n).usable
    ok = Couplers.from_state(state, len(pairs)).ok
    nbr: dict[int, list[int]] = {i: [] for i in range(n)}
    for k, (a, b) in enumerate(pairs):
        if ok[k] and usable[a] and usable[b]:
            nbr[a].append(b)
            nbr[b].append(a)
    return usable, nbr


def chain_cells(state: Any, layout: Any, size: int) -> list[int]:
    """A path of ``size`` usable cells joined by calibrated couplers."""
    usable, nbr = usable_graph(state, layout)

    def extend(path: list[int]) -> list[int] | None:
        if len(path) == size:
            return path
        for nxt in sorted(nbr[path[-1]]):
            if nxt not in path:
                found = extend(path + [nxt])
                if found:
                    return found
        return None

    for start in np.flatnonzero(usable):
        found = extend([int(start)])
        if found:
            return found
    raise RuntimeError(f"no chain of {size} usable cells")


def grid_block(state: Any, layout: Any, side: int = 3) -> list[int] | None:
    """A ``side x side`` block of usable cells of a grid chip, row by row, every link calibrated."""
    usable, nbr = usable_graph(state, layout)
    n = layout.n_cells
    cols = int(round(np.sqrt(n)))
    if cols * cols != n:
        return None
    for r0 in range(cols - side + 1):
        for c0 in range(cols - side + 1):
            cells = [(r0 + r) * cols + c0 + c for r in range(side) for c in range(side)]
            links = [(a, a + 1) for a in cells if (a % cols) - c0 < side - 1] + \
                    [(a, a + cols) for a in cells if a // cols - r0 < side - 1]
            if all(usable[c] for c in cells) and all(b in nbr[a] for a, b in links):
                return cells
    return None


def model_target(cells: list[int], pairs: list[tuple[int, int]], t_eff_K: float, seed: int,
                 theta_max: float = 0.5, beta_max: float = 0.5) -> dict[str, Any]:
    """A random model on ``cells`` and the chip couplings among them (as the validation node draws)."""
    rng = np.random.default_rng(seed)
    members = set(cells)
    links = [(a, b) for a, b in pairs if a in members and b in members]
    return {
        "cells": cells,
        "h_K": (rng.uniform(-theta_max, theta_max, len(cells)) * t_eff_K).tolist(),
        "J_K": [[int(a), int(b), float(rng.uniform(-beta_max, beta_max) * t_eff_K)] for a, b in links],
    }


def bars_and_stripes(side: int = 3, n_samples: int = 2000, seed: int = 0) -> np.ndarray:
    """Bars-and-stripes patterns on a ``side x side`` grid (row by row), drawn uniformly."""
    patterns = set()
    for bits in range(2**side):
        row = [1 if (bits >> k) & 1 else -1 for k in range(side)]
        patterns.add(tuple(v for _ in range(side) for v in row))  # stripes: every row the same
        patterns.add(tuple(row[r] for r in range(side) for _ in range(side)))  # bars
    table = np.array(sorted(patterns), dtype=int)
    rng = np.random.default_rng(seed)
    return table[rng.integers(0, len(table), n_samples)]


def write(doc: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(doc))
    return path


def truth_distribution(lab: Any, cells: list[int], edges: np.ndarray, edge_couplers: np.ndarray) -> np.ndarray:
    """The chip's exact distribution on ``cells`` at its present voltages (from the truth)."""
    t_eff = lab.t_eff()
    theta = lab.fields()[cells] / t_eff
    cp = lab.truth.couplers
    beta = cp.kappa_K_per_V[edge_couplers] * (lab.coupler_V[edge_couplers] - cp.vc0_V[edge_couplers]) / t_eff
    return exact.distribution(np.concatenate([theta, beta]), len(cells), edges)


def truth_kl(lab: Any, result: Any, target_params: np.ndarray, edge_couplers: list[int]) -> float:
    """``KL(chip || target)`` at the chip's present voltages, exact (no sampling noise)."""
    edges = np.asarray(result.edges, dtype=int).reshape(-1, 2)
    p_chip = truth_distribution(lab, result.cells, edges, np.asarray(edge_couplers, dtype=int))
    q = exact.distribution(target_params, len(result.cells), edges)
    return exact.kl(p_chip, q)
