"""Arrhenius law for thermally activated times: ``tau = tau0 * exp(barrier / T)``.

Fitted as a straight line ``ln tau = ln tau0 + barrier * (1/T)``: linear, so no
starting values, and the errors of ``ln tau`` (``tau_err / tau``) are the natural
weights because relative errors of measured times are roughly constant.
``tau0`` is log-normal; its stderr is first-order (``tau0 * se(ln tau0)``), and
``ln_tau0`` is reported too for anyone who needs the exact interval.
"""

from __future__ import annotations

import math

import numpy as np

from labstack.fit.linear import fit_linear
from labstack.fit.result import FitResult


def fit_arrhenius(
    temperature_K: np.ndarray, tau_s: np.ndarray, tau_err_s: np.ndarray | None = None
) -> FitResult:
    """Fit ``barrier_K`` and ``tau0_s`` (and the attempt rate ``gamma0_Hz = 1/tau0``)."""
    T = np.asarray(temperature_K, dtype=float)
    tau = np.asarray(tau_s, dtype=float)
    if np.any(T <= 0) or np.any(tau <= 0):
        return FitResult.failed("arrhenius", "temperatures and times must be > 0")
    sigma = None if tau_err_s is None else np.asarray(tau_err_s, dtype=float) / tau
    line = fit_linear(1.0 / T, np.log(tau), sigma)
    if not line.success:
        return FitResult.failed("arrhenius", line.message)
    ln_tau0, se_ln = line["intercept"], line.error("intercept")
    tau0 = math.exp(ln_tau0)
    return FitResult(
        model="arrhenius",
        values={
            "barrier_K": line["slope"],
            "ln_tau0": ln_tau0,
            "tau0_s": tau0,
            "gamma0_Hz": 1.0 / tau0,
        },
        stderr={
            "barrier_K": line.error("slope"),
            "ln_tau0": se_ln,
            "tau0_s": tau0 * se_ln,
            "gamma0_Hz": se_ln / tau0,
        },
        chi2_reduced=line.chi2_reduced,
        dof=line.dof,
        absolute_sigma=line.absolute_sigma,
        checks=line.checks,
        covariance=line.covariance,  # of (ln_tau0, barrier_K)
        names=("ln_tau0", "barrier_K"),
        extra=line.extra,
    )
