"""Bias transfer: each cell's S-curve P(+1) vs bias voltage -> offset V0 and width w.

An isolated cell in equilibrium has ``P(+1) = 1 / (1 + exp(-(V - V0) / w))`` with
``w = T_eff / (2 alpha)``. All bias lines step together through the same voltages
(couplers held at 0 V); at each point the sampler takes ``n_samples`` readings of
every cell, couplers idle at their calibrated zero-coupling voltage (0 V before
that is known). Readings are thresholded per cell halfway between the two readout
levels; the misassignment rate ``e`` that the amplifier noise causes is estimated
from the same two-level fit and folded into the model,
``P_meas = e + (1 - 2e) P(+1)``, so a weakly coupled readout does not narrow the
curve. Binomial errors use the effective number of independent samples from
each point's lag-1 autocorrelation, so slow cells get honestly larger errors.

A cell whose readings never show two levels is flagged with the readout node's
verdict (``dead``, ``stuck_plus``, ``stuck_minus``), or ``no_switching`` if that
node had no objection; a cell whose fit fails or lands outside the swept range is flagged
``fit_failed``. Flags never stop the other cells.

Three steps, each usable alone: :func:`acquire` (instrument -> stored run),
:func:`fit` (dataset -> results, no instrument: re-fit any stored run) and
:func:`update` (results -> calibration-state entries).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import xarray as xr
from scipy import optimize, special

from labstack.calibrate import (
    CalibrationState,
    Context,
    Mode,
    Spec,
    StateChange,
    Tolerance,
    Verdict,
    combine,
)
from labstack.calibrations._common import idle_couplers, run, sample_cells
from labstack.fit import FitResult
from labstack.measure import Sweep

NAME = "bias_scurve"
# readout: thresholds and dead/stuck verdicts; cryostat: widths are only meaningful at a
# known, settled base temperature (and a warmed-up fridge recalibrates them)
DEPENDS_ON: tuple[str, ...] = ("readout", "cryostat")
TIMEOUT_S = 4 * 3600.0


@dataclass
class Parameters:
    v_start: float = -1.0
    v_stop: float = 1.0
    n_points: int = 61
    n_samples: int = 3000
    #: slow enough that successive samples are independent draws (tau_c is microseconds),
    #: which the virtual lab simulates with a few heat-bath sweeps per sample
    sample_rate_Hz: float = 100.0
    settle_s: float = 1e-3
    #: cheap check: fewer points and samples
    check_points: int = 31
    check_samples: int = 1000
    #: how far V0 may move before the cell is out of spec
    tolerance_V: float = 0.01


@dataclass
class CellResult:
    cell: int
    fit: FitResult
    flag: str = ""  # "" (good), "no_switching", "fit_failed"
    threshold_V: float = math.nan
    misassignment: float = math.nan

    @property
    def ok(self) -> bool:
        return not self.flag and self.fit.success


# ------------------------------------------------------------------- acquire
def acquire(ctx: Context, params: Parameters, mode: Mode = Mode.CALIBRATE) -> xr.Dataset:
    """Sweep every bias line together and sample every cell; returns the stored run's dataset."""
    station = ctx.station
    layout = station.layout
    full = mode is Mode.CALIBRATE
    n_points = params.n_points if full else params.check_points
    read = sample_cells(station, layout, params.sample_rate_Hz, params.n_samples if full else params.check_samples)
    idle_couplers(ctx, layout)
    volts = np.linspace(params.v_start, params.v_stop, n_points)
    sequence = Sweep(
        "bias",
        {name: volts for name in layout.bias},
        body=[read],
        settle=params.settle_s,
        coord=volts,
    )
    # the readout node's verdict on each cell, so the fit can say dead or stuck
    health = {str(i): ctx.state.value(f"cells.{i}.health", "") for i in range(len(layout.bias))}
    meta = {"calibration": NAME, "mode": str(mode), "parameters": asdict(params), "health": health}
    return run(ctx, NAME, sequence, meta)


# ----------------------------------------------------------------------- fit
def logistic(v: np.ndarray, v0: float, w: float) -> np.ndarray:
    return special.expit((v - v0) / w)


def two_level_threshold(values: np.ndarray) -> tuple[float, float, float, float]:
    """Split readings into two levels (1-D k-means); (threshold, low, high, noise rms)."""
    lo, hi = np.percentile(values, [2, 98])
    for _ in range(50):
        threshold = 0.5 * (lo + hi)
        below, above = values[values <= threshold], values[values > threshold]
        if below.size == 0 or above.size == 0:
            break
        new_lo, new_hi = float(below.mean()), float(above.mean())
        if np.isclose(new_lo, lo) and np.isclose(new_hi, hi):
            lo, hi = new_lo, new_hi
            break
        lo, hi = new_lo, new_hi
    threshold = 0.5 * (lo + hi)
    below, above = values[values <= threshold], values[values > threshold]
    spread = np.sqrt(
        (np.sum((below - lo) ** 2) + np.sum((above - hi) ** 2)) / max(values.size - 2, 1)
    )
    return threshold, lo, hi, float(spread)


def effective_count(states: np.ndarray) -> np.ndarray:
    """Independent samples per row of a (points, samples) 0/1 array from lag-1 autocorrelation."""
    n = states.shape[-1]
    x = states - states.mean(axis=-1, keepdims=True)
    var = (x**2).mean(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (x[..., 1:] * x[..., :-1]).mean(axis=-1) / var
    rho = np.clip(np.nan_to_num(rho, nan=0.0), 0.0, 0.99)
    return n * (1 - rho) / (1 + rho)


def fit_cell(volts: np.ndarray, readings: np.ndarray, cell: int = 0, health: str = "") -> CellResult:
    """Fit one cell from its readings (points, samples); ``health`` is the readout node's verdict."""
    threshold, lo, hi, noise = two_level_threshold(readings.ravel())
    separation = (hi - lo) / noise if noise > 0 else 0.0
    states = (readings > threshold).astype(np.float64)
    p = states.mean(axis=1)
    if separation < 4.0 or p.max() - p.min() < 0.5:
        why = f"levels {separation:.1f} sigma apart, P(+1) spans {p.min():.2f}..{p.max():.2f}"
        broken = health not in ("", "ok")
        return CellResult(
            cell,
            FitResult.failed("logistic", f"{health if broken else 'no switching'}: {why}"),
            flag=health if broken else "no_switching",
            threshold_V=threshold,
        )
    e = float(special.ndtr(-separation / 2))  # each level's tail past the midpoint
    n_eff = effective_count(states)
    k = p * n_eff
    p_err = np.sqrt((k + 0.5) * (n_eff - k + 0.5) / (n_eff + 1) ** 3)  # binomial, never zero

    def model(v: np.ndarray, v0: float, w: float) -> np.ndarray:
        return e + (1 - 2 * e) * logistic(v, v0, w)

    v0_guess = float(volts[np.argmin(np.abs(p - 0.5))])
    rising = volts[(p > 0.16) & (p < 0.84)]
    w_guess = max(float(np.ptp(rising)) / 4 if rising.size > 1 else np.diff(volts).mean(), 1e-4)
    span = float(volts.max() - volts.min())
    try:
        popt, pcov = optimize.curve_fit(
            model, volts, p, p0=[v0_guess, w_guess], sigma=p_err, absolute_sigma=True,
            bounds=([volts.min() - span, 1e-6], [volts.max() + span, span]),
        )
    except (RuntimeError, ValueError) as exc:
        return CellResult(cell, FitResult.failed("logistic", f"fit did not converge: {exc}"), flag="fit_failed", threshold_V=threshold, misassignment=e)
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
        extra={"p": p.tolist(), "p_err": p_err.tolist(), "readout_levels_V": [lo, hi], "noise_V": noise},
    )
    flag = ""
    if not volts.min() <= popt[0] <= volts.max():
        fit.success, fit.message, flag = False, f"V0 {popt[0]:.3f} V outside the swept range", "fit_failed"
    return CellResult(cell, fit, flag=flag, threshold_V=threshold, misassignment=e)


def fit(dataset: xr.Dataset, params: Parameters | None = None) -> list[CellResult]:
    """Fit every cell of a stored S-curve run. Pure: needs no instrument."""
    samples = dataset["samples"].transpose("cell", "bias", "sample").values
    volts = dataset["bias"].values
    health = json.loads(dataset.attrs.get("health", "{}"))
    return [fit_cell(volts, samples[i], cell=i, health=health.get(str(i), "")) for i in range(samples.shape[0])]


# --------------------------------------------------------------------- check
def check(results: list[CellResult], params: Parameters, state: CalibrationState) -> Verdict:
    """In spec while every calibrated cell's V0 stays within tolerance and still switches."""
    tolerance = Tolerance(params.tolerance_V)
    verdicts = []
    for r in results:
        key = f"cells.{r.cell}.bias_offset_V"
        if key not in state or not state.get(key).valid:
            continue
        old = state.get(key)
        if not r.ok:
            verdicts.append(Verdict(Spec.OUT_OF_SPEC, f"cell {r.cell}: {r.flag or 'fit failed'}"))
            continue
        verdicts.append(
            tolerance.judge(f"cell {r.cell} V0", r.fit["v0_V"], r.fit.error("v0_V"), old.value, old.stderr)
        )
    return combine(verdicts)


# -------------------------------------------------------------------- update
def update(results: list[CellResult], params: Parameters | None = None) -> StateChange:
    """``cells.<i>.bias_offset_V`` and ``cells.<i>.scurve_width_V``; flagged cells marked invalid."""
    change = StateChange()
    for r in results:
        prefix = f"cells.{r.cell}"
        if r.ok:
            change.add_fit(prefix, r.fit, {"v0_V": ("bias_offset_V", "V"), "width_V": ("scurve_width_V", "V")})
        else:
            reason = f"{r.flag}: {r.fit.message}"
            for key in ("bias_offset_V", "scurve_width_V"):
                change.flag(f"{prefix}.{key}", reason, "V")
    return change


def table(results: list[CellResult]) -> str:
    """A readable per-cell table."""
    lines = [f"{'cell':>4}  {'V0 (mV)':>16}  {'width (mV)':>15}  {'chi2_red':>8}  status"]
    for r in results:
        if r.fit.success:
            v0, dv0 = r.fit["v0_V"] * 1e3, r.fit.error("v0_V") * 1e3
            w, dw = r.fit["width_V"] * 1e3, r.fit.error("width_V") * 1e3
            lines.append(f"{r.cell:>4}  {v0:>8.2f} ± {dv0:<5.2f}  {w:>7.2f} ± {dw:<5.2f}  {r.fit.chi2_reduced:>8.2f}  {r.flag or 'ok'}")
        else:
            lines.append(f"{r.cell:>4}  {'—':>16}  {'—':>15}  {'—':>8}  {r.flag}: {r.fit.message}")
    return "\n".join(lines)


def plot(results: list[CellResult], dataset: xr.Dataset) -> Any:
    """S-curves with their fits, one panel per cell (at most 16), for reports and notebooks."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    volts = dataset["bias"].values
    shown = results[:16]
    cols = min(4, len(shown)) or 1
    rows = -(-len(shown) // cols) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.2 * rows), sharex=True, sharey=True, squeeze=False)
    fine = np.linspace(volts.min(), volts.max(), 300)
    for ax, r in zip(axes.flat, shown, strict=False):
        if "p" in r.fit.extra:
            ax.errorbar(volts, r.fit.extra["p"], r.fit.extra["p_err"], fmt=".", ms=3)
        if r.ok:
            ax.plot(fine, logistic(fine, r.fit["v0_V"], r.fit["width_V"]), lw=1)
            ax.set_title(f"cell {r.cell}: V0 {r.fit['v0_V'] * 1e3:.1f} mV", fontsize=8)
        else:
            ax.set_title(f"cell {r.cell}: {r.flag}", fontsize=8, color="#b00")
    for ax in axes.flat[len(shown):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("bias (V)")
    for ax in axes[:, 0]:
        ax.set_ylabel("P(+1)")
    fig.tight_layout()
    return fig
