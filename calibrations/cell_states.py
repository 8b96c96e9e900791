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
:func:`digitize_cells` therefore fits each cell's readings on its own state and its
channel neighbours' states, subtracts the neighbours' leak and thresholds again.
"""

from __future__ import annotations

import json
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


def remove_leak(readings: np.ndarray) -> np.ndarray:
    """``readings`` ``(cell, …, sample)`` with each cell's channel neighbours' leak removed.

    Each cell's readings are fitted by least squares as ``c + a s_i + l_- s_(i-1) + l_+
    s_(i+1)`` (states +-1, from a first thresholding; only neighbours with a two-level
    signal: a dead line leaks nothing, a stuck one only a constant), and ``l_- s_(i-1) +
    l_+ s_(i+1)`` is subtracted. Cells without a two-level signal, or without such a
    neighbour, are returned as they were. Float64, the input untouched.

    The fit needs the neighbours' states to move independently of the cell's own: not
    so along an S-curve, where every line sweeps together (there the own state, read
    through misassignments, is the noisier copy, and the fit hands part of the cell's
    signal to its neighbours); :func:`subtract_leak` takes the leak measured apart.
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
        spins = [2.0 * first[k].states.ravel() - 1.0 for k in (i, *neighbours)]
        design = np.column_stack([np.ones_like(y), *spins])
        coef = np.linalg.lstsq(design, y, rcond=None)[0]
        out[i] = (y - design[:, 2:] @ coef[2:]).reshape(values[i].shape)
    return out


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

    The leak is fitted from the readings here. Subtracting the readout node's measured leak
    instead (:func:`subtract_leak`, as the bias S-curves do) was tried for the coupler node
    and did slightly worse: refitted from a fresh family's stored coupler runs (444 zeros),
    pull rms 1.020 with the fit, 1.043 with the measured leak."""
    leak_free = remove_leak(readings)
    wanted = range(leak_free.shape[0]) if cells is None else cells
    return {i: digitize(leak_free[i]) for i in wanted}


def n_effective(states: np.ndarray) -> np.ndarray:
    """Independent samples per row of a ``(…, sample)`` 0/1 array (lag-1 autocorrelation)."""
    return effective_count(states)
