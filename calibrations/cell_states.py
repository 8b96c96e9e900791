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
"""

from __future__ import annotations

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


def n_effective(states: np.ndarray) -> np.ndarray:
    """Independent samples per row of a ``(…, sample)`` 0/1 array (lag-1 autocorrelation)."""
    return effective_count(states)
