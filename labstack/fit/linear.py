"""Straight lines, solved in closed form (no iteration, no starting values)."""

from __future__ import annotations

import numpy as np

from labstack.fit.lsq import _result
from labstack.fit.result import FitResult


def fit_linear(x: np.ndarray, y: np.ndarray, sigma: np.ndarray | float | None = None) -> FitResult:
    """Weighted ``y = intercept + slope * x`` with the same error policy as ``fit_curve``."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if y.size < 3:
        return FitResult.failed("linear", f"{y.size} points cannot test a line")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return FitResult.failed("linear", "data contain non-finite values")
    if np.ptp(x) == 0:
        return FitResult.failed("linear", "all x equal: slope undetermined")
    absolute = sigma is not None
    s = np.broadcast_to(np.asarray(sigma if absolute else 1.0, dtype=float), y.shape)
    if absolute and not (np.all(np.isfinite(s)) and np.all(s > 0)):
        return FitResult.failed("linear", "data errors must be finite and > 0")
    design = np.column_stack([np.ones_like(x), x]) / s[:, None]
    coef, *_ = np.linalg.lstsq(design, y / s, rcond=None)
    cov = np.linalg.inv(design.T @ design)
    resid = y - (coef[0] + coef[1] * x)
    if not absolute:
        cov = cov * float(np.sum(resid**2) / (y.size - 2))
    return _result("linear", ("intercept", "slope"), coef, cov, resid, s, absolute)
