"""Exponential settling after a step: ``T(t) = T_inf + (T0 - T_inf) exp(-(t - t_step)/tau)``.

The cryostat's heater steps and the chip's lag behind the mixing chamber both look
like this. Starting values come from the data (last tenth for ``T_inf``, the 1/e
crossing for ``tau``) so the fit needs no hand-tuning per stage.
"""

from __future__ import annotations

import numpy as np

from labstack.fit.lsq import fit_curve
from labstack.fit.result import FitResult


def settling(t: np.ndarray, T_inf: float, T0: float, tau: float, t_step: float = 0.0) -> np.ndarray:
    return T_inf + (T0 - T_inf) * np.exp(-(t - t_step) / tau)


def fit_settling(
    t: np.ndarray, T: np.ndarray, sigma: np.ndarray | float | None = None, t_step: float = 0.0
) -> FitResult:
    """Fit ``T_inf``, ``T0`` (value at ``t_step``) and ``tau`` (same units as ``t``)."""
    t = np.asarray(t, dtype=float)
    T = np.asarray(T, dtype=float)
    if t.size < 4:
        return FitResult.failed("settling", f"{t.size} points cannot fix 3 parameters")
    order = np.argsort(t)
    t, T = t[order], T[order]
    if sigma is not None and np.ndim(sigma):
        sigma = np.asarray(sigma, dtype=float)[order]
    tail = max(2, t.size // 10)
    T_inf0 = float(np.mean(T[-tail:]))
    T00 = float(T[0])
    span = float(t[-1] - t[0]) or 1.0
    dist = np.abs(T - T_inf0)
    below = np.nonzero(dist <= dist[0] / np.e)[0]
    tau0 = float(t[below[0]] - t[0]) if below.size and below[0] > 0 else span / 3
    tau0 = max(tau0, span / (10 * t.size))

    def model(t: np.ndarray, T_inf: float, T0: float, tau: float) -> np.ndarray:
        return settling(t, T_inf, T0, tau, t_step)

    fit = fit_curve(
        model,
        t,
        T,
        [T_inf0, T_inf0 + (T00 - T_inf0) * np.exp((t[0] - t_step) / tau0), tau0],
        sigma=sigma,
        names=("T_inf", "T0", "tau"),
        bounds=([-np.inf, -np.inf, 0.0], [np.inf, np.inf, np.inf]),
        model_name="settling",
    )
    if fit.success and fit["tau"] > 5 * span:
        return FitResult.failed(
            "settling", f"tau {fit['tau']:.3g} far beyond the {span:.3g} observed: not settled"
        )
    return fit
