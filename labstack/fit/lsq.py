"""Weighted least squares with honestly scaled uncertainties.

:func:`fit_curve` wraps :func:`scipy.optimize.curve_fit` and answers the question
curve_fit leaves to the caller: *which* standard errors?

* Errors of the data known (``sigma`` given): ``absolute_sigma=True``. The
  covariance comes from the stated errors alone, and the reduced chi-square is a
  real test (≈ 1 for a right model with right errors). If it is large, the errors
  are *not* inflated to hide it; the fit reports it and :class:`FitQuality` in the
  engine calls the data bad.
* Errors unknown (``sigma=None``): the residual scatter is the only noise
  estimate, so the covariance is scaled by it (``absolute_sigma=False``) and the
  chi-square tests nothing: ``chi2_reduced`` is ``nan`` and the estimated noise is
  in ``extra["noise"]``.

Failures (no convergence, an undetermined parameter, non-finite data, too few
points) come back as ``FitResult.failed`` with the reason, not as exceptions.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

from labstack.fit.checks import residual_checks
from labstack.fit.result import FitResult


def fit_curve(
    model: Callable[..., np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    p0: Sequence[float],
    *,
    sigma: np.ndarray | float | None = None,
    names: Sequence[str] | None = None,
    bounds: tuple[Sequence[float] | float, Sequence[float] | float] = (-np.inf, np.inf),
    model_name: str | None = None,
    maxfev: int = 20000,
) -> FitResult:
    """Fit ``y ≈ model(x, *p)``; ``sigma`` = standard errors of ``y`` if known."""
    name = model_name or getattr(model, "__name__", "model")
    names = tuple(names) if names is not None else tuple(f"p{i}" for i in range(len(p0)))
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n, k = y.size, len(p0)
    if len(names) != k:
        raise ValueError(f"{len(names)} names for {k} parameters")
    if n <= k:
        return FitResult.failed(name, f"{n} points cannot determine {k} parameters")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return FitResult.failed(name, "data contain non-finite values")
    absolute = sigma is not None
    s = np.broadcast_to(np.asarray(sigma if absolute else 1.0, dtype=float), y.shape)
    if absolute and not (np.all(np.isfinite(s)) and np.all(s > 0)):
        return FitResult.failed(name, "data errors must be finite and > 0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        try:
            popt, pcov = curve_fit(
                model,
                x,
                y,
                p0=list(p0),
                sigma=s if absolute else None,
                absolute_sigma=absolute,
                bounds=bounds,
                maxfev=maxfev,
            )
        except (RuntimeError, ValueError) as exc:  # no convergence / non-finite model
            return FitResult.failed(name, f"{type(exc).__name__}: {exc}")
    return _result(name, names, popt, pcov, y - model(x, *popt), s, absolute)


def _result(
    name: str,
    names: tuple[str, ...],
    popt: np.ndarray,
    pcov: np.ndarray,
    resid: np.ndarray,
    sigma: np.ndarray,
    absolute: bool,
) -> FitResult:
    n, k = resid.size, popt.size
    dof = n - k
    err = np.sqrt(np.diag(pcov)) if np.all(np.isfinite(pcov)) else np.full(k, np.inf)
    if not np.all(np.isfinite(err)):
        bad = [nm for nm, e in zip(names, err, strict=True) if not math.isfinite(e)]
        return FitResult.failed(name, f"parameters not determined by the data: {bad}")
    corr = pcov / np.outer(err, err) if np.all(err > 0) else np.eye(k)
    degenerate = [
        (names[i], names[j])
        for i in range(k)
        for j in range(i + 1, k)
        if abs(corr[i, j]) > 1 - 1e-9
    ]
    if degenerate:
        return FitResult.failed(name, f"parameters not determined by the data: {degenerate}")
    z = resid / sigma
    checks = residual_checks(z, dof)
    extra = {}
    if absolute:
        chi2_red = checks["chi2"] / dof
    else:
        chi2_red = math.nan  # the scatter was used as the noise estimate; nothing to test
        extra["noise"] = math.sqrt(checks["chi2"] / dof)
        checks["chi2_p"] = math.nan
    return FitResult(
        model=name,
        values={nm: float(v) for nm, v in zip(names, popt, strict=True)},
        stderr={nm: float(e) for nm, e in zip(names, err, strict=True)},
        chi2_reduced=float(chi2_red),
        dof=dof,
        absolute_sigma=absolute,
        checks=checks,
        covariance=np.asarray(pcov, dtype=float),
        names=names,
        extra=extra,
    )


def derived(
    fit: FitResult, fn: Callable[[dict[str, float]], float], step: float = 1e-6
) -> tuple[float, float]:
    """Value and standard error of ``fn(values)`` by the delta method.

    Uses the fit's covariance with a central-difference gradient, so correlations
    between parameters are accounted for (e.g. a threshold between two peaks).
    """
    if fit.covariance is None:
        raise ValueError(f"{fit.model}: no covariance to propagate")
    base = dict(fit.values)
    value = float(fn(base))
    grad = np.zeros(len(fit.names))
    for i, nm in enumerate(fit.names):
        h = step * max(abs(base[nm]), math.sqrt(fit.covariance[i, i]), 1e-12)
        up, dn = dict(base), dict(base)
        up[nm] += h
        dn[nm] -= h
        grad[i] = (fn(up) - fn(dn)) / (2 * h)
    return value, float(math.sqrt(max(grad @ fit.covariance @ grad, 0.0)))
