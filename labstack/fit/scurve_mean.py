"""S-curves from time-averaged readout (a lock-in): the mean level against bias.

A lock-in reads a cell's line averaged over its filter window, so each reading is
``c + A (2 P(+1) - 1)`` plus noise, with ``P(+1) = logistic((V - V0) / w)``, i.e.
``y = c + A tanh((V - V0) / (2 w))``: the same ``V0`` and ``w`` as a single-shot
S-curve (:func:`labstack.fit.scurve.fit_scurve`), with no threshold and no
misassignment, since averaging is linear.

Drift. A time average carries the readout offset's slow drift straight into the
level (a single-shot threshold does not care), and a sweep takes many minutes, so a
drift of 1 % of the amplitude over a sweep moves V0 by about a standard error. The
model therefore has a linear baseline over the sweep, ``+ d (V - V_mid) / span``
(the points are taken in order, so V is time), fixed by the flat tails. A short
sweep that barely reaches the tails (a few widths either side) cannot fix it and
drifts little: ``baseline=False`` leaves it out.

Errors come from the readings themselves. Each point is read ``m`` times, far
enough apart to be independent; the spread of a reading has two parts, the
cell's flips averaged over the window (``4 A^2 P (1 - P) / N_eff``, largest at the
switching point) and a white floor (amplifier noise, drift) ``s0^2``. Both are
estimated from all points' sample variances at once (non-negative least squares
against ``P (1 - P)`` from a first fit), and the weighted fit of the point means
then has absolute errors, ``sigma_k^2 = (4 A^2 P_k (1 - P_k) / N_eff + s0^2) / m``.
The two noise parameters are a maximum-likelihood fit of the sample variances, each
``sigma_k^2 chi^2_(m-1) / (m - 1)``: a least-squares fit of variances with two degrees
of freedom each is led by the few large ones and can lose the floor altogether.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize

from labstack.fit.logistic import logistic
from labstack.fit.result import FitResult
from labstack.fit.scurve import ScurveResult


def mean_level(v: np.ndarray, v0: float, w: float, c: float, a: float, d: float = 0.0, mid: float = 0.0, span: float = 1.0) -> np.ndarray:
    v = np.asarray(v)
    return c + a * np.tanh((v - v0) / (2 * w)) + d * (v - mid) / span


def _noise_model(s2: np.ndarray, q: np.ndarray, amp: float, m: int) -> tuple[float, float]:
    """(1 / N_eff, s0^2) from per-point sample variances ``s2`` (``m`` reads) and ``q = P (1 - P)``.

    Maximum likelihood with ``s2_k ~ sigma_k^2 chi^2_(m-1) / (m-1)``, ``sigma_k^2 = 4 A^2 q_k / N + s0^2``.
    """
    flips = 4 * amp**2 * q
    scale = max(float(np.mean(s2)), 1e-300)

    def nll(x: np.ndarray) -> float:
        var = (np.exp(x[0]) * flips + np.exp(x[1])) / scale
        return float(np.sum(s2 / scale / var + np.log(var)))

    start = np.log([max(scale / max(float(flips.max()), 1e-300), 1e-12), max(float(np.median(s2)), scale * 1e-6)])
    best = optimize.minimize(nll, start, method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 1e-6})
    inv_n, floor = float(np.exp(best.x[0])), float(np.exp(best.x[1]))
    return inv_n, max(floor, 1e-6 * inv_n * amp**2, 1e-30)


def fit_mean_scurve(
    volts: np.ndarray, readings: np.ndarray, cell: int = 0, health: str = "", *, baseline: bool = True
) -> ScurveResult:
    """Fit one cell from its time-averaged readings ``(points, reads)`` in volts."""
    volts = np.asarray(volts, float)
    readings = np.asarray(readings, float)
    m = readings.shape[1]
    y = readings.mean(axis=1)
    s2 = readings.var(axis=1, ddof=1) if m > 1 else np.zeros_like(y)
    noise = math.sqrt(float(np.median(s2)) / m) if m > 1 else 0.0
    step = float(y[-1] - y[0])
    if not np.all(np.isfinite(y)) or m < 2 or abs(step) < 8 * max(noise, 1e-15):
        broken = health not in ("", "ok")
        why = f"the mean level moves {step * 1e3:.3g} mV across the sweep, noise {noise * 1e3:.2g} mV"
        return ScurveResult(
            cell,
            FitResult.failed("mean_logistic", f"{health if broken else 'no switching'}: {why}"),
            flag=health if broken else "no_switching",
        )
    c0, a0 = 0.5 * (y[-1] + y[0]), 0.5 * step
    p_guess = (y - y[0]) / step
    v0_guess = float(volts[np.argmin(np.abs(p_guess - 0.5))])
    rising = volts[(p_guess > 0.16) & (p_guess < 0.84)]
    w_guess = max(float(np.ptp(rising)) / 4 if rising.size > 1 else np.diff(volts).mean(), 1e-4)
    span = float(volts.max() - volts.min())
    mid = float(volts.mean())

    def model(v: np.ndarray, v0: float, w: float, c: float, a: float, *d: float) -> np.ndarray:
        return mean_level(v, v0, w, c, a, d[0] if d else 0.0, mid, span)

    lo = [volts.min() - span, 1e-6, -np.inf, -np.inf] + [-np.inf] * baseline
    hi = [volts.max() + span, span, np.inf, np.inf] + [np.inf] * baseline
    p0 = [v0_guess, w_guess, c0, a0] + [0.0] * baseline
    try:
        popt, _ = optimize.curve_fit(model, volts, y, p0=p0, bounds=(lo, hi))
        for _ in range(2):  # weights from the noise model at the current fit, then refit
            p = logistic(volts, popt[0], popt[1])
            inv_n, floor = _noise_model(s2, p * (1 - p), popt[3], m)
            sigma = np.sqrt((4 * popt[3] ** 2 * p * (1 - p) * inv_n + floor) / m)
            popt, pcov = optimize.curve_fit(
                model, volts, y, p0=popt, sigma=sigma, absolute_sigma=True, bounds=(lo, hi)
            )
    except (RuntimeError, ValueError) as exc:
        return ScurveResult(cell, FitResult.failed("mean_logistic", f"fit did not converge: {exc}"), flag="fit_failed")
    residual = (y - model(volts, *popt)) / sigma
    dof = len(volts) - (5 if baseline else 4)
    errors = np.sqrt(np.diag(pcov))
    if not baseline:
        popt, errors = np.append(popt, 0.0), np.append(errors, 0.0)
        pcov = np.pad(pcov, ((0, 1), (0, 1)))
    v0, w, c, a, d = (float(x) for x in popt)
    baseline = d * (volts - mid) / span
    fit = FitResult(
        model="mean_logistic",
        values={"v0_V": v0, "width_V": w, "level_V": c, "amp_V": a, "drift_V": d},
        stderr={k: float(e) for k, e in zip(("v0_V", "width_V", "level_V", "amp_V", "drift_V"), errors, strict=True)},
        chi2_reduced=float(np.sum(residual**2) / dof) if dof > 0 else math.nan,
        dof=dof,
        absolute_sigma=True,
        covariance=pcov,
        names=("v0_V", "width_V", "level_V", "amp_V", "drift_V"),
        extra={
            "p": ((y - baseline - c + a) / (2 * a)).tolist(),
            "p_err": (sigma / abs(2 * a)).tolist(),
            "readout_levels_V": [c - abs(a), c + abs(a)],
            "noise_V": math.sqrt(floor),
            "n_eff": 1 / inv_n if inv_n > 0 else math.inf,
        },
    )
    flag = ""
    if not volts.min() <= v0 <= volts.max():
        fit.success, fit.message, flag = False, f"V0 {v0:.3f} V outside the swept range", "fit_failed"
    return ScurveResult(cell, fit, flag=flag)
