"""Readings -> cell states, with each cell's misassignment rate, from the data alone.

The crosstalk, coupler and validation nodes all threshold a cell's readings halfway
between its two readout levels, found by the same 1-D two-level split the bias
S-curve uses on the readings of that very run (so a drifted readout offset is
followed). Gaussian amplifier noise of rms ``sigma`` misassigns each reading with
probability ``e = Phi(-separation / 2)``, ``separation = (high - low) / sigma``; the
nodes fold ``e`` into their models instead of ignoring it, since a weakly coupled
cell (separation ~4) misreads ~2 % of its samples.

A cell whose readings do not show two levels (dead, stuck, or parked far from its
switching point) is marked not ``ok`` and its states are meaningless.

Readout crosstalk: a few per cent of each channel's signal leaks into channels
``i +- 1``, so a cell's reading sits a little closer to its threshold when its
readout neighbour is in the other state, and is misread more often then. Misreadings
that depend on the neighbour's state pose as a coupling between them (of the order
of the coupler node's statistical error for neighbours on adjacent channels).
:func:`digitize_cells` therefore measures each neighbour's leak from the data (how
the cell's two levels move with the neighbour's state), subtracts it and thresholds
again.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from labstack.fit.two_level import effective_count, two_level_threshold

#: fewer sigma between the two readout levels than this: no usable two-level signal
#: (the weakest cells of a realistic readout sit at 2.5-4 sigma; pure noise splits at ~1)
MIN_SEPARATION = 2.0


@dataclass(frozen=True)
class Digitized:
    """One cell's states ``(…, sample)`` (0/1) and how far to trust them."""

    states: np.ndarray
    threshold_V: float
    separation: float
    misassignment: float
    ok: bool


def digitize(readings: np.ndarray, min_fraction: float = 0.005) -> Digitized:
    """Threshold one cell's readings (any shape, samples last).

    ``ok`` needs two levels ``MIN_SEPARATION`` sigma apart with at least
    ``min_fraction`` of the readings in each.
    """
    values = np.asarray(readings, dtype=np.float64)
    threshold, lo, hi, noise = two_level_threshold(values.ravel())
    separation = (hi - lo) / noise if noise > 0 else 0.0
    states = (values > threshold).astype(np.float64)
    frac = float(states.mean())
    ok = separation >= MIN_SEPARATION and min_fraction <= frac <= 1 - min_fraction
    e = float(special.ndtr(-separation / 2)) if separation > 0 else 0.5
    return Digitized(states, float(threshold), float(separation), e, bool(ok))


#: readings in one combination of the neighbours' states needed to place a cell's two levels there
MIN_SPLIT_READINGS = 200


def remove_leak(readings: np.ndarray) -> np.ndarray:
    """``readings`` ``(cell, …, sample)`` with each cell's channel neighbours' leak removed.

    A neighbour's leak shifts both of the cell's readout levels by ``l_j s_j`` (``s_j``
    = +-1), so the midpoint of the cell's two levels, found by the two-level split
    within each combination of its neighbours' states (from a first thresholding),
    moves as ``c + sum_j l_j s_j``; a weighted straight-line fit over the combinations
    gives each ``l_j`` (divided by ``1 - 2 e_j``: a neighbour misread at rate ``e_j``
    dilutes its split), and ``l_j s_j`` is subtracted. Only neighbours with a two-level
    signal count (a dead line leaks nothing, a stuck one only a constant, which the
    threshold absorbs). Cells without a two-level signal, without such a neighbour, or
    with too few combinations showing both of their levels are returned as they were.
    Float64, the input untouched.

    The split needs no model of how the cell's own state goes with its neighbours'.
    A least-squares fit of the readings on the cell's own thresholded state and its
    neighbours' (used before) does: the own state, misread at ~5 % on a weak readout,
    is the noisier regressor, and where the pair is coupled the fit hands part of the
    cell's own signal to the neighbour. On synthetic pairs (a cell 3.3 sigma between
    levels, 0.15 mV leak) the coupler zero came out -2.0 sigma off on average with it,
    +0.0 to +0.4 with the split (tests/test_readout_leak.py); on chip fam-918 it had
    put coupler 2's zero 4.2 sigma off.
    """
    values = np.asarray(readings, dtype=np.float64)
    n = values.shape[0]
    first = [digitize(values[i]) for i in range(n)]
    out = values.copy()
    for i in range(n):
        neighbours = [j for j in (i - 1, i + 1) if 0 <= j < n and first[j].ok]
        if not first[i].ok or not neighbours:
            continue
        y = values[i].ravel()
        spins = np.column_stack([2.0 * first[j].states.ravel() - 1.0 for j in neighbours])
        leak = _leak_by_split(y, spins, np.array([first[j].misassignment for j in neighbours]))
        if leak is not None:
            out[i] = (y - spins @ leak).reshape(values[i].shape)
    return out


def _leak_by_split(y: np.ndarray, spins: np.ndarray, misread: np.ndarray) -> np.ndarray | None:
    """Each neighbour's leak ``l_j`` into readings ``y``, from the midpoints of ``y``'s two
    levels in each combination of the neighbours' states ``spins`` ``(sample, neighbour)``
    (+-1); None when fewer combinations than unknowns show both levels."""
    rows, centres, weights = [], [], []
    k = spins.shape[1]
    codes = (spins > 0).astype(np.int64) @ (1 << np.arange(k))  # each combination as one integer
    for code in range(1 << k):
        chosen = y[codes == code]
        combo = 2.0 * ((code >> np.arange(k)) & 1) - 1.0
        if chosen.size < MIN_SPLIT_READINGS:
            continue
        threshold, low, high, _ = two_level_threshold(chosen)
        upper = float(np.mean(chosen > threshold))
        if not 0.02 <= upper <= 0.98:  # one level only: its midpoint is not placed
            continue
        rows.append([1.0, *combo])
        centres.append(0.5 * (low + high))
        weights.append(math.sqrt(chosen.size))
    if len(rows) <= k:
        return None
    w = np.asarray(weights)
    coef = np.linalg.lstsq(np.asarray(rows) * w[:, None], np.asarray(centres) * w, rcond=None)[0]
    return coef[1:] / (1.0 - 2.0 * misread)


def subtract_leak(readings: np.ndarray, leak_V: np.ndarray, live: np.ndarray | None = None) -> np.ndarray:
    """``readings`` ``(cell, …, sample)`` less each cell's channel neighbours' leak as the
    readout node measured it, with every line held saturated (``leak_V``: what its
    neighbours add together when they read +1; NaN: unknown, nothing subtracted).

    The leak is shared evenly between the live neighbours (``live``: the readout node's
    healthy cells; default: those showing two levels here), as the readout node's
    contrasts saw them (a dead line leaks nothing, a stuck one only a constant), and each
    live neighbour that moves in these readings is subtracted times its state (+-1) from
    a first thresholding (one held at a level adds a constant, which the threshold
    absorbs). Float64, the input untouched.
    """
    values = np.asarray(readings, dtype=np.float64)
    n = values.shape[0]
    thresholds = []
    for i in range(n):
        d = digitize(values[i])
        thresholds.append(d.threshold_V if d.ok else None)
    alive = np.array([t is not None for t in thresholds]) if live is None else np.asarray(live, dtype=bool)
    out = values.copy()
    for i in range(n):
        if not np.isfinite(leak_V[i]) or leak_V[i] == 0:
            continue
        neighbours = [j for j in (i - 1, i + 1) if 0 <= j < n and alive[j]]
        if not neighbours:
            continue
        share = float(leak_V[i]) / len(neighbours)
        for j in neighbours:
            if thresholds[j] is not None:
                out[i] -= share * np.where(values[j] > thresholds[j], 1.0, -1.0)
    return out


def leak_values(attr: object) -> np.ndarray | None:
    """A run's ``readout_leak_V`` attribute (JSON text or list, None entries) as floats (NaN:
    unknown); None when the run has none."""
    if attr is None:
        return None
    items = json.loads(attr) if isinstance(attr, str) else attr
    return np.array([np.nan if x is None else x for x in items], dtype=float)


def digitize_cells(readings: np.ndarray, cells: list[int] | None = None) -> dict[int, Digitized]:
    """Threshold every cell of ``readings`` ``(cell, …, sample)`` with its channel
    neighbours' leak removed (:func:`remove_leak`); ``cells``: the ones wanted (default all).

    The leak is measured from the readings here. The readout node's measured leak
    (:func:`subtract_leak`, as the bias S-curves use it) shares each cell's total evenly
    between its two neighbours, while each channel pair leaks its own amount; for the
    coupler node it did worse than the regression on the readings this function used
    before the split (a fresh family's stored coupler runs, 444 zeros: pull rms 1.043
    against 1.020). The split against that regression, refitting the same stored runs:
    1.054 against 1.064 (fresh family, 444 zeros), 0.998 against 1.006 (fixed family, 538)."""
    leak_free = remove_leak(readings)
    wanted = range(leak_free.shape[0]) if cells is None else cells
    return {i: digitize(leak_free[i]) for i in wanted}


def n_effective(states: np.ndarray) -> np.ndarray:
    """Independent samples per row of a ``(…, sample)`` 0/1 array (lag-1 autocorrelation)."""
    return effective_count(states)
