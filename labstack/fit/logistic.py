"""S-curve of a cell: ``P(+1) = 1 / (1 + exp(-(V - V0) / w))`` from binomial counts.

Fitted by maximum likelihood on the binomial counts (logistic regression), not by
least squares on the fractions: near P = 0 or 1 the fraction's error
``sqrt(p(1-p)/n)`` estimated from the data is zero or tiny, and weighting by it
would pin the curve to the flat tails. The likelihood has no such problem and its
Fisher information gives honest standard errors (tests check the pulls).

In terms of the linear predictor ``logit P = a + b u`` on a centred, scaled
voltage ``u`` the log-likelihood is concave, so Newton's method from a flat start
converges without starting values. ``V0`` and ``w`` and their covariance follow by
the delta method.

Failures are named: no transition in the scan (a stuck or dead cell, or V0 far
outside), a transition narrower than the voltage step (the data separate
perfectly; the width is not determined), or V0 outside the scanned range.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import expit

from labstack.fit.checks import residual_checks
from labstack.fit.result import FitResult

MODEL = "logistic"


def logistic(V: np.ndarray, V0: float, w: float) -> np.ndarray:
    return expit((np.asarray(V, dtype=float) - V0) / w)


def fit_logistic(
    V: np.ndarray, n_plus: np.ndarray, n_shots: np.ndarray | int, max_iter: int = 100
) -> FitResult:
    """Fit ``V0`` (50 % point) and ``w`` (width, > 0 for a rising curve).

    ``n_plus`` of ``n_shots`` readouts were +1 at each voltage ``V``.
    """
    V = np.asarray(V, dtype=float)
    k = np.asarray(n_plus, dtype=float)
    n = np.broadcast_to(np.asarray(n_shots, dtype=float), k.shape).astype(float)
    if V.shape != k.shape:
        raise ValueError(f"V {V.shape} and n_plus {k.shape} differ in shape")
    if V.size < 3:
        return FitResult.failed(MODEL, f"{V.size} points cannot test an S-curve")
    if np.any(n <= 0) or np.any(k < 0) or np.any(k > n) or not np.all(np.isfinite(V)):
        return FitResult.failed(MODEL, "counts must satisfy 0 <= n_plus <= n_shots, n_shots > 0")
    if np.all(k == 0) or np.all(k == n):
        side = "-1" if np.all(k == 0) else "+1"
        return FitResult.failed(
            MODEL, f"no transition: always {side} (stuck/dead cell or V0 out of range)"
        )

    centre, scale = float(np.mean(V)), float(np.ptp(V)) / 2 or 1.0
    X = np.column_stack([np.ones_like(V), (V - centre) / scale])
    p_mean = float(np.clip(k.sum() / n.sum(), 1e-6, 1 - 1e-6))
    theta = np.array([math.log(p_mean / (1 - p_mean)), 0.0])

    def loglik(th: np.ndarray) -> float:
        eta = X @ th
        return float(np.sum(k * eta - n * np.logaddexp(0.0, eta)))

    ll = loglik(theta)
    converged = False
    for _ in range(max_iter):
        p = expit(X @ theta)
        grad = X.T @ (k - n * p)
        info = (X * (n * p * (1 - p))[:, None]).T @ X
        try:
            step = np.linalg.solve(info, grad)
        except np.linalg.LinAlgError:
            break
        t = 1.0
        while t > 1e-8:
            trial = theta + t * step
            ll_trial = loglik(trial)
            if ll_trial >= ll - 1e-12:
                break
            t /= 2
        theta, ll = trial, ll_trial
        if np.max(np.abs(t * step)) < 1e-10 * (1 + np.max(np.abs(theta))):
            converged = True
            break
        if abs(theta[1]) > 1e4:
            break
    a, b = theta
    if not converged or abs(b) > 1e3:
        step_V = float(np.min(np.diff(np.unique(V)))) if np.unique(V).size > 1 else 0.0
        return FitResult.failed(
            MODEL, f"transition narrower than the voltage step {step_V:.3g}: width undetermined"
        )
    p = expit(X @ theta)
    info = (X * (n * p * (1 - p))[:, None]).T @ X
    try:
        cov_ab = np.linalg.inv(info)
    except np.linalg.LinAlgError:
        return FitResult.failed(MODEL, "singular information matrix")
    V0 = centre - scale * a / b
    w = scale / b
    J = np.array([[-scale / b, scale * a / b**2], [0.0, -scale / b**2]])
    cov = J @ cov_ab @ J.T
    err = np.sqrt(np.diag(cov))
    if not (V.min() <= V0 <= V.max()):
        return FitResult.failed(
            MODEL, f"V0 = {V0:.4g} outside the scanned {V.min():.4g}..{V.max():.4g}", V0=V0, w=w
        )
    dof = V.size - 2
    pearson = (k - n * p) / np.sqrt(n * p * (1 - p))
    checks = residual_checks(pearson, dof)
    with np.errstate(divide="ignore", invalid="ignore"):
        dev_terms = np.where(k > 0, k * np.log(k / (n * p)), 0.0) + np.where(
            k < n, (n - k) * np.log((n - k) / (n * (1 - p))), 0.0
        )
    checks["deviance"] = float(2 * np.sum(dev_terms))
    return FitResult(
        model=MODEL,
        values={"V0": float(V0), "w": float(w)},
        stderr={"V0": float(err[0]), "w": float(err[1])},
        chi2_reduced=checks["chi2"] / dof if dof > 0 else math.nan,
        dof=dof,
        absolute_sigma=True,
        checks=checks,
        covariance=cov,
        names=("V0", "w"),
    )
