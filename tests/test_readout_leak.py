"""A weak cell's readout leak, measured from the two-level split, leaves coupler zeros unbiased.

Synthetic pairs as the coupler node sees them: cell 1 read 3.3 sigma between its levels
(misread ~5 % of the time), its readout neighbour 2 read well, 0.15 mV of cell 2's
signal leaking into cell 1's channel, the pair's coupling swept through zero. The
leak makes cell 1's misreadings depend on cell 2's state, which poses as a coupling
and moves the zero. :func:`remove_leak` measures the leak from how cell 1's two levels
move with cell 2's state; the least-squares fit on both thresholded states it replaced
(kept here as the wrong model) gives part of cell 1's own signal to its coupled
neighbour and leaves the zero biased by about two standard errors.
"""

from __future__ import annotations

import numpy as np

from labstack.calibrations import cell_states, couplers

VOLTS = np.linspace(-0.4, 0.4, 9)
SLOPE_PER_V = 2.5  # beta = slope (V - Vc0), Vc0 = 0
SEEDS = range(8)


def _pair(rng: np.random.Generator, beta: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Two cells at zero field, coupled by ``beta``: P(s1, s2) ~ exp(beta s1 s2)."""
    weights = np.exp(beta * np.array([1.0, -1.0, -1.0, 1.0]))  # ++, +-, -+, --
    k = rng.choice(4, size=n, p=weights / weights.sum())
    return np.where(k < 2, 1.0, -1.0), np.where(k % 2 == 0, 1.0, -1.0)


def _readings(seed: int, leak_V: float = 0.15e-3, n: int = 6000) -> np.ndarray:
    """``(cell, point, sample)`` readings (V) of three channels, cells 1-2 coupled."""
    rng = np.random.default_rng(seed)
    points = []
    for v in VOLTS:
        s1, s2 = _pair(rng, SLOPE_PER_V * v, n)
        s0 = rng.choice([-1.0, 1.0], size=n)
        noise = rng.normal(0.0, 1.27e-3, (3, n))
        points.append(np.stack([
            4.0e-3 * s0 + 0.05e-3 * s1,
            3.4e-3 + 2.1e-3 * s1 + leak_V * s2 + 0.06e-3 * s0,
            1.9e-3 + 4.0e-3 * s2 + 0.05e-3 * s1,
        ]) + noise)
    return np.stack(points, axis=1)


def _regression_leak_removed(readings: np.ndarray) -> np.ndarray:
    """The wrong model: readings fitted on the cell's own and its neighbours' thresholded states."""
    first = [cell_states.digitize(r) for r in readings]
    out = readings.copy()
    for i in range(readings.shape[0]):
        neighbours = [j for j in (i - 1, i + 1) if 0 <= j < readings.shape[0] and first[j].ok]
        y = readings[i].ravel()
        design = np.column_stack([np.ones_like(y), *(2.0 * first[k].states.ravel() - 1.0 for k in (i, *neighbours))])
        coef = np.linalg.lstsq(design, y, rcond=None)[0]
        out[i] = (y - design[:, 2:] @ coef[2:]).reshape(readings[i].shape)
    return out


def _zero_pull(leak_free: np.ndarray) -> float:
    a, b = cell_states.digitize(leak_free[1]), cell_states.digitize(leak_free[2])
    stats = [couplers.log_odds_coupling(a.states[k], b.states[k], a.misassignment, b.misassignment) for k in range(VOLTS.size)]
    line = couplers.fit_line(VOLTS, np.array([s[0] for s in stats]), np.array([s[1] for s in stats]), None)
    return line["vc0_V"] / line.error("vc0_V")


def test_leak_from_the_split_leaves_the_zero_unbiased_and_the_regression_did_not():
    data = [_readings(seed) for seed in SEEDS]
    split = np.array([_zero_pull(cell_states.remove_leak(r)) for r in data])
    assert abs(split.mean()) < 0.6 and 0.5 < np.sqrt(np.mean(split**2)) < 1.5, split
    regression = np.array([_zero_pull(_regression_leak_removed(r)) for r in data])
    assert regression.mean() < -1.2, regression
    untouched = np.array([_zero_pull(r) for r in data])
    assert untouched.mean() < -4.0, untouched  # the leak matters: left in, it moves the zero most


def test_the_measured_leak_is_the_true_one():
    readings = _readings(0, leak_V=0.3e-3)
    removed = readings[1] - cell_states.remove_leak(readings)[1]
    spins = np.where(cell_states.digitize(readings[2]).states > 0.5, 1.0, -1.0)
    leak = np.mean(removed * spins)  # what was taken off per unit of the neighbour's state
    assert abs(leak - 0.3e-3) < 0.03e-3, leak
