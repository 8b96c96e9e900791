"""One cell's S-curve from its raw readings: offset V0 and width w, with the readout's errors folded in.

An isolated cell in equilibrium has ``P(+1) = 1 / (1 + exp(-(V - V0) / w))``.
Where :mod:`labstack.fit.logistic` fits counts that are already states, this fit
starts from the amplifier's readings ``(points, samples)``. The two readout levels
and their noise are found in all the readings together
(:func:`~labstack.fit.two_level.two_level_threshold`). Each point's P(+1) is then
that point's share of the upper level, fitted with the offset both levels sit at
during it (:func:`~labstack.fit.two_level.point_shares`): the amplifier's offset
wanders slowly (1/f, drift), and against a fixed threshold that wander is a
misassignment that differs between the two levels and moves from point to point,
by several mV of V0 on a weakly read cell, together over neighbouring points (a
slow wander moves the whole curve, and its residuals do not show it). The share
is free of both the wander and the misassignment, so a weak readout does not
narrow the curve either. Its errors are binomial times the mixture's own variance
factor (:func:`~labstack.fit.two_level.share_variance_factor`: what fitting the
point's offset and not knowing each reading's level cost), from the effective
number of independent samples of each point's lag-1 autocorrelation
(:func:`~labstack.fit.two_level.effective_count`), so slow cells get honestly
larger errors; the variance is taken from the fitted curve, not from each
point's own share (which biases the width at a few hundred samples a point).

A cell whose readings never show two levels is flagged with the readout node's
verdict passed in as ``health`` (``dead``, ``stuck_plus``, ``stuck_minus``), or
``no_switching`` if that had no objection; a cell whose fit fails or lands outside
the swept range is flagged ``fit_failed``. The bias S-curve node fits every cell
with it, and the effective-temperature node fits its per-temperature curves with
it, so both measure the same width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from labstack.fit.logistic import logistic
from labstack.fit.result import FitResult
from labstack.fit.two_level import (
    effective_count,
    point_shares,
    share_variance_factor,
    two_level_threshold,
)

#: fewer noise sigmas than this between the two readout levels: no usable two-level signal
#: (each reading misassigned more than 16 % of the time). Pure noise splits at ~1 sigma, and
#: a cell that does not switch fails the P(+1) span anyway: the weakest cells a realistic
#: readout still resolves sit at 2.5-4 sigma
MIN_SEPARATION = 2.0


@dataclass
class ScurveResult:
    """One cell's fit (values ``v0_V`` and ``width_V``), why it is flagged, and its readout split."""

    cell: int
    fit: FitResult
    flag: str = ""  # "" (good), "no_switching", "fit_failed", or the readout node's verdict
    threshold_V: float = math.nan
    misassignment: float = math.nan

    @property
    def ok(self) -> bool:
        return not self.flag and self.fit.success


def fit_scurve(volts: np.ndarray, readings: np.ndarray, cell: int = 0, health: str = "") -> ScurveResult:
    """Fit one cell from its readings (points, samples); ``health`` is the readout node's verdict."""
    threshold, lo, hi, noise = two_level_threshold(readings.ravel())
    separation = (hi - lo) / noise if noise > 0 else 0.0
    p = (readings > threshold).mean(axis=1)  # a plain count: is there a curve to fit at all?
    if separation < MIN_SEPARATION or p.max() - p.min() < 0.5:
        why = f"levels {separation:.1f} sigma apart, P(+1) spans {p.min():.2f}..{p.max():.2f}"
        broken = health not in ("", "ok")
        return ScurveResult(
            cell,
            FitResult.failed("logistic", f"{health if broken else 'no switching'}: {why}"),
            flag=health if broken else "no_switching",
            threshold_V=threshold,
        )
    e = float(special.ndtr(-separation / 2))  # each level's tail past the midpoint
    # each point's share, free of the offset wander; the levels' separation within a point
    p, shift, within = point_shares(readings, lo, hi, noise)
    n_eff = effective_count(readings > threshold + shift[:, None])
    k = p * n_eff
    p_err = np.sqrt(share_variance_factor(p, within) * (k + 0.5) * (n_eff - k + 0.5) / (n_eff + 1) ** 3)

    def model(v: np.ndarray, v0: float, w: float) -> np.ndarray:
        return logistic(v, v0, w)

    v0_guess = float(volts[np.argmin(np.abs(p - 0.5))])
    rising = volts[(p > 0.16) & (p < 0.84)]
    w_guess = max(float(np.ptp(rising)) / 4 if rising.size > 1 else np.diff(volts).mean(), 1e-4)
    span = float(volts.max() - volts.min())
    bounds = ([volts.min() - span, 1e-6], [volts.max() + span, span])
    try:
        popt, pcov = optimize.curve_fit(
            model, volts, p, p0=[v0_guess, w_guess], sigma=p_err, absolute_sigma=True, bounds=bounds,
        )
        inside = volts.min() <= popt[0] <= volts.max()
        # errors from the model, not from each point's own count: weights taken from the
        # measured p favour points that came out low near 0 and high near 1, which narrows
        # the curve by ~1 % at a few hundred samples a point; re-weighting by the fitted
        # curve is the binomial maximum likelihood
        for _ in range(3 if inside else 0):
            q = np.clip(model(volts, *popt), 0.5 / n_eff, 1 - 0.5 / n_eff)
            p_err = np.sqrt(share_variance_factor(q, within) * q * (1 - q) / n_eff)
            popt, pcov = optimize.curve_fit(
                model, volts, p, p0=popt, sigma=p_err, absolute_sigma=True, bounds=bounds,
            )
    except (RuntimeError, ValueError) as exc:
        return ScurveResult(cell, FitResult.failed("logistic", f"fit did not converge: {exc}"), flag="fit_failed", threshold_V=threshold, misassignment=e)
    residual = (p - model(volts, *popt)) / p_err
    dof = len(volts) - 2
    chi2 = float(np.sum(residual**2) / dof)
    errors = np.sqrt(np.diag(pcov))
    fit = FitResult(
        model="logistic",
        values={"v0_V": float(popt[0]), "width_V": float(popt[1])},
        stderr={"v0_V": float(errors[0]), "width_V": float(errors[1])},
        chi2_reduced=chi2,
        dof=dof,
        extra={"p": p.tolist(), "p_err": p_err.tolist(), "readout_levels_V": [lo, hi], "noise_V": noise,
               "offset_shift_V": shift.tolist()},
    )
    flag = ""
    if not volts.min() <= popt[0] <= volts.max():
        fit.success, fit.message, flag = False, f"V0 {popt[0]:.3f} V outside the swept range", "fit_failed"
    return ScurveResult(cell, fit, flag=flag, threshold_V=threshold, misassignment=e)
