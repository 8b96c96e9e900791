"""Residual diagnostics: is the model right, not just are the numbers small?

A reduced chi-square near 1 says the scatter matches the stated errors; it says
nothing about *structure*. A wrong model leaves residuals that come in long runs
of one sign (an S-curve that is really two steps, a settling curve with a second
time constant). The Wald-Wolfowitz runs test catches that even when chi2 looks
fine, so every fit reports both.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def runs_test(residuals: np.ndarray) -> tuple[int, float, float]:
    """Wald-Wolfowitz runs test on the signs of ``residuals`` (zeros ignored).

    Returns ``(runs, z, p)`` where ``p`` is the *one-sided* probability of this
    few runs or fewer under independent signs: small p = residuals clump, the
    model misses structure. (Too many runs, i.e. alternating residuals, is not a
    failure mode of our fits, so it is not tested.) ``nan`` when undefined.
    """
    r = np.asarray(residuals, dtype=float)
    signs = np.sign(r[r != 0])
    n_pos, n_neg = int(np.sum(signs > 0)), int(np.sum(signs < 0))
    n = n_pos + n_neg
    if n_pos == 0 or n_neg == 0:  # one run: chance of all-equal signs is 2**(1-n)
        return (1, math.nan, 2.0 ** (1 - n)) if n else (0, math.nan, math.nan)
    runs = 1 + int(np.sum(signs[1:] != signs[:-1]))
    mean = 2.0 * n_pos * n_neg / n + 1.0
    var = 2.0 * n_pos * n_neg * (2.0 * n_pos * n_neg - n) / (n * n * (n - 1.0))
    if var <= 0:
        return runs, math.nan, math.nan
    z = (runs - mean) / math.sqrt(var)
    return runs, z, float(stats.norm.cdf(z))


def residual_checks(normalized: np.ndarray, dof: int) -> dict[str, float]:
    """Chi-square, its p-value, the runs test and the largest normalized residual.

    ``normalized`` are residuals divided by their standard errors (Pearson
    residuals for counting data).
    """
    z = np.asarray(normalized, dtype=float)
    chi2 = float(np.sum(z * z))
    _, runs_z, runs_p = runs_test(z)
    return {
        "chi2": chi2,
        "chi2_p": float(stats.chi2.sf(chi2, dof)) if dof > 0 else math.nan,
        "runs_z": runs_z,
        "runs_p": runs_p,
        "max_abs_normalized_residual": float(np.max(np.abs(z))) if z.size else math.nan,
        "frac_beyond_3_sigma": float(np.mean(np.abs(z) > 3)) if z.size else math.nan,
    }
