"""Two Gaussians in a readout histogram: the -1 and +1 populations of a cell.

Fitted by binned Poisson maximum likelihood: the Poisson deviance is minimized
directly (as least squares on signed deviance residuals), and the covariance is
the inverse Fisher information ``J^T diag(1/mu) J``. Not least squares on counts:
empty tail bins would get zero weight (Neyman) or lone tail counts enormous
weight (model-weighted), biasing widths. Bin contents are the Gaussian CDF
differences over each bin, so wide bins cost no bias. A poor fit is retried from
other starting splits and the best kept.

Parameters: ``n0, mu0, sigma0`` and ``n1, mu1, sigma1`` (counts, mean, width of
each population; ``mu0 < mu1``). Derived, with delta-method errors that include
the parameters' correlations: ``frac1`` (share of the upper population),
``threshold`` (where the two weighted densities cross: the most-likely
assignment boundary) and ``fidelity`` = 1 - (P(1|0) + P(0|1)) / 2 at that
threshold. ``chi2_reduced`` is the Poisson deviance per degree of freedom.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq, least_squares
from scipy.special import ndtr

from labstack.fit.checks import residual_checks
from labstack.fit.lsq import derived
from labstack.fit.result import FitResult

MODEL = "two_gaussians"
NAMES = ("n0", "mu0", "sigma0", "n1", "mu1", "sigma1")


def binned_two_gaussians(edges: np.ndarray, *p: float) -> np.ndarray:
    """Expected counts in each bin between consecutive ``edges``."""
    n0, mu0, s0, n1, mu1, s1 = p
    c0 = ndtr((edges - mu0) / s0)
    c1 = ndtr((edges - mu1) / s1)
    return n0 * np.diff(c0) + n1 * np.diff(c1)


def fit_two_gaussians(
    samples: np.ndarray | None = None,
    *,
    counts: np.ndarray | None = None,
    edges: np.ndarray | None = None,
    bins: int = 80,
    max_iter: int = 30,
) -> FitResult:
    """Fit a histogram given as raw ``samples`` or as ``counts`` over bin ``edges``."""
    if samples is not None:
        x = np.asarray(samples, dtype=float)
        x = x[np.isfinite(x)]
        if x.size < 20:
            return FitResult.failed(MODEL, f"{x.size} samples are too few for two populations")
        counts, edges = np.histogram(x, bins=bins)
    if counts is None or edges is None:
        raise ValueError("give samples, or counts and edges")
    k = np.asarray(counts, dtype=float)
    e = np.asarray(edges, dtype=float)
    if e.size != k.size + 1:
        raise ValueError(f"{e.size} edges for {k.size} bins")
    if k.size <= 6 + 2:
        return FitResult.failed(MODEL, f"{k.size} bins cannot fix 6 parameters")

    first = _start(k, e)
    if first is None:
        return FitResult.failed(MODEL, "histogram has a single population")
    best = _irls(k, e, first, max_iter)
    if isinstance(best, str):
        return FitResult.failed(MODEL, best)
    if _deviance(k, binned_two_gaussians(e, *best[0])) > 2 * (k.size - 6) + 50:
        # Poor fit: perhaps a local minimum. Try splits at other quantiles, keep the best.
        for alt in _quantile_starts(k, e):
            other = _irls(k, e, alt, max_iter)
            if not isinstance(other, str) and _deviance(
                k, binned_two_gaussians(e, *other[0])
            ) < _deviance(k, binned_two_gaussians(e, *best[0])):
                best = other
    p, pcov = best
    if p[1] > p[4]:  # order populations by mean: 0 below 1
        order = [3, 4, 5, 0, 1, 2]
        p, pcov = p[order], pcov[np.ix_(order, order)]
    err = np.sqrt(np.diag(pcov)) if np.all(np.isfinite(pcov)) else np.full(6, np.inf)
    if not np.all(np.isfinite(err)) or min(p[0], p[3]) < 1.0:
        return FitResult.failed(MODEL, "one population is empty or undetermined")
    mu = binned_two_gaussians(e, *p)
    dof = k.size - 6
    pearson = (k - mu) / np.sqrt(np.maximum(mu, 1e-9))
    checks = residual_checks(pearson, dof)
    dev = _deviance(k, mu)
    checks["deviance"] = dev
    fit = FitResult(
        model=MODEL,
        values=dict(zip(NAMES, map(float, p), strict=True)),
        stderr=dict(zip(NAMES, map(float, err), strict=True)),
        chi2_reduced=float(dev / dof),
        dof=dof,
        absolute_sigma=True,
        checks=checks,
        covariance=pcov,
        names=NAMES,
    )
    for name, fn in (("frac1", _frac1), ("threshold", _threshold), ("fidelity", _fidelity)):
        try:
            fit.values[name], fit.stderr[name] = derived(fit, fn)
        except ValueError as exc:  # brentq: densities never cross between the means
            return FitResult.failed(
                MODEL, f"{name}: densities do not cross between the means ({exc}); one population?"
            )
    return fit


def _irls(
    k: np.ndarray, e: np.ndarray, p: list[float], max_iter: int
) -> tuple[np.ndarray, np.ndarray] | str:
    """Poisson ML from start ``p``: minimize the deviance directly, then Fisher covariance.

    (Reweighted least squares reaches the same stationarity condition but can settle
    on a spurious fixed point when a lone count sits where the model predicts ~0:
    its 1/mu weight then dominates. The deviance has no such blow-up.)
    """
    lo = [0.0, e[0], 1e-9, 0.0, e[0], 1e-9]
    hi = [np.inf, e[-1], np.ptp(e), np.inf, e[-1], np.ptp(e)]

    def residuals(q: np.ndarray) -> np.ndarray:
        mu = np.maximum(binned_two_gaussians(e, *q), 1e-300)
        with np.errstate(divide="ignore", invalid="ignore"):
            d = 2 * (mu - k + np.where(k > 0, k * np.log(k / mu), 0.0))
        return np.sign(k - mu) * np.sqrt(np.maximum(d, 0.0))

    x0 = np.clip(np.asarray(p, dtype=float), np.add(lo, 1e-12), hi)
    try:
        sol = least_squares(residuals, x0, bounds=(lo, hi), x_scale="jac", max_nfev=200 * max_iter)
    except (ValueError, np.linalg.LinAlgError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if sol.status <= 0:
        return f"no convergence: {sol.message}"
    q = sol.x
    mu = np.maximum(binned_two_gaussians(e, *q), 1e-12)
    J = _jacobian(e, q)
    try:
        cov = np.linalg.inv((J / mu[:, None]).T @ J)
    except np.linalg.LinAlgError:
        return "singular Fisher information: a population is undetermined"
    return q, cov


def _jacobian(e: np.ndarray, q: np.ndarray) -> np.ndarray:
    """d(expected bin counts)/d(parameters), analytically."""
    cols = []
    for n, mu, s in (q[0:3], q[3:6]):
        z = (e - mu) / s
        pdf = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
        cols += [np.diff(ndtr(z)), -n * np.diff(pdf) / s, -n * np.diff(pdf * z) / s]
    return np.column_stack(cols)


def _deviance(k: np.ndarray, mu: np.ndarray) -> float:
    """Poisson deviance: twice the log-likelihood ratio to the saturated model."""
    mu = np.maximum(mu, 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(2 * np.sum(mu - k + np.where(k > 0, k * np.log(k / mu), 0.0)))


def _quantile_starts(k: np.ndarray, e: np.ndarray) -> list[list[float]]:
    """Starting values splitting the counts at their 25/50/75 % quantiles."""
    c = 0.5 * (e[1:] + e[:-1])
    cdf = np.cumsum(k) / k.sum()
    width = float(np.min(np.diff(e)))
    starts = []
    for qtl in (0.25, 0.5, 0.75):
        cut = c[min(int(np.searchsorted(cdf, qtl)), c.size - 2)] + 0.5 * width
        lo, hi = c < cut, c >= cut
        if k[lo].sum() == 0 or k[hi].sum() == 0:
            continue
        parts = []
        for m in (lo, hi):
            mean = float(np.sum(c[m] * k[m]) / k[m].sum())
            var = float(np.sum(k[m] * (c[m] - mean) ** 2) / k[m].sum())
            parts += [float(k[m].sum()), mean, math.sqrt(max(var, width**2))]
        starts.append(parts)
    return starts


def _frac1(v: dict[str, float]) -> float:
    return v["n1"] / (v["n0"] + v["n1"])


def _threshold(v: dict[str, float]) -> float:
    def log_ratio(x: float) -> float:
        l0 = math.log(v["n0"] / v["sigma0"]) - 0.5 * ((x - v["mu0"]) / v["sigma0"]) ** 2
        l1 = math.log(v["n1"] / v["sigma1"]) - 0.5 * ((x - v["mu1"]) / v["sigma1"]) ** 2
        return l0 - l1

    return brentq(log_ratio, v["mu0"], v["mu1"], xtol=1e-14 * (abs(v["mu1"]) + 1))


def _fidelity(v: dict[str, float]) -> float:
    th = _threshold(v)
    p10 = 1 - ndtr((th - v["mu0"]) / v["sigma0"])  # a -1 read as +1
    p01 = ndtr((th - v["mu1"]) / v["sigma1"])  # a +1 read as -1
    return float(1 - 0.5 * (p10 + p01))


def _start(k: np.ndarray, e: np.ndarray) -> list[float] | None:
    """Starting values by 1-D two-means on the bin centres, weighted by counts."""
    c = 0.5 * (e[1:] + e[:-1])
    total = k.sum()
    if total <= 0:
        return None
    cut = float(np.sum(c * k) / total)
    for _ in range(50):
        lo, hi = c < cut, c >= cut
        if k[lo].sum() == 0 or k[hi].sum() == 0:
            return None
        m0 = float(np.sum(c[lo] * k[lo]) / k[lo].sum())
        m1 = float(np.sum(c[hi] * k[hi]) / k[hi].sum())
        new = 0.5 * (m0 + m1)
        if new == cut:
            break
        cut = new
    lo, hi = c < cut, c >= cut
    width = float(np.min(np.diff(e)))
    s0 = math.sqrt(max(float(np.sum(k[lo] * (c[lo] - m0) ** 2) / k[lo].sum()), width**2))
    s1 = math.sqrt(max(float(np.sum(k[hi] * (c[hi] - m1) ** 2) / k[hi].sum()), width**2))
    return [float(k[lo].sum()), m0, s0, float(k[hi].sum()), m1, s1]
