"""Judging many values at once without crying wolf.

A check that compares hundreds of calibrated numbers (every entry of a crosstalk
matrix, every coupler) at a fixed 3 sigma flags some of them on noise alone on most
runs: 200 entries at 3 sigma give a false "out of spec" ~40 % of the time. The
threshold here keeps the family-wise false-alarm rate at ``alpha`` (Bonferroni on a
two-sided normal test), so a recalibration means something moved.
"""

from __future__ import annotations

from scipy import stats


def family_n_sigma(n_values: int, alpha: float = 0.01, floor: float = 3.0) -> float:
    """Sigma threshold so that ``n_values`` unchanged values all pass with probability 1 - alpha."""
    if n_values <= 0:
        return floor
    return max(floor, float(stats.norm.isf(alpha / (2 * n_values))))
