"""Readings of a two-state cell: where the two levels are, and how many samples are independent.

A cell's readout is a telegraph signal plus amplifier noise. Every routine that
turns readings into states (the bias S-curve, and through
``calibrations/cell_states.py`` the crosstalk, coupler and validation nodes)
splits them halfway between the two levels it finds in the very readings it
thresholds, so a drifted readout offset is followed rather than trusted from an
old calibration. The same routines count a series of states by the number of
*independent* samples in it, which a slow cell makes much smaller than its
length; counting every sample would make binomial errors too small.

Pure numerics: no station, no instrument.
"""

from __future__ import annotations

import numpy as np


def two_level_threshold(values: np.ndarray) -> tuple[float, float, float, float]:
    """Split readings into two levels (1-D k-means); (threshold, low, high, noise rms)."""
    lo, hi = np.percentile(values, [2, 98])
    for _ in range(50):
        threshold = 0.5 * (lo + hi)
        below, above = values[values <= threshold], values[values > threshold]
        if below.size == 0 or above.size == 0:
            break
        new_lo, new_hi = float(below.mean()), float(above.mean())
        if np.isclose(new_lo, lo) and np.isclose(new_hi, hi):
            lo, hi = new_lo, new_hi
            break
        lo, hi = new_lo, new_hi
    threshold = 0.5 * (lo + hi)
    below, above = values[values <= threshold], values[values > threshold]
    spread = np.sqrt(
        (np.sum((below - lo) ** 2) + np.sum((above - hi) ** 2)) / max(values.size - 2, 1)
    )
    return threshold, lo, hi, float(spread)


def effective_count(states: np.ndarray) -> np.ndarray:
    """Independent samples per row of a (points, samples) 0/1 array from lag-1 autocorrelation.

    ``n (1 - rho) / (1 + rho)`` is the large-``n`` count of a two-state Markov chain,
    whose autocorrelation is ``rho^k``. ``rho`` is clipped to ``0 .. 0.99``: an
    anticorrelated row never counts as more than ``n`` samples, a nearly frozen one
    as no fewer than ``n / 199``. A row with no variance has no correlation to
    measure and counts all ``n``.
    """
    n = states.shape[-1]
    x = states - states.mean(axis=-1, keepdims=True)
    var = (x**2).mean(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (x[..., 1:] * x[..., :-1]).mean(axis=-1) / var
    rho = np.clip(np.nan_to_num(rho, nan=0.0), 0.0, 0.99)
    return n * (1 - rho) / (1 + rho)
