"""Bias transfer: each cell's S-curve P(+1) vs bias voltage -> offset V0 and width w.

An isolated cell in equilibrium has ``P(+1) = 1 / (1 + exp(-(V - V0) / w))`` with
``w = T_eff / (2 alpha)``. All bias lines step together through the same voltages
(couplers held at 0 V); at each point the sampler takes ``n_samples`` readings of
every cell, couplers idle at their calibrated zero-coupling voltage (0 V before
that is known). Each cell is fitted from its raw readings by
:func:`labstack.fit.scurve.fit_scurve`: thresholded halfway between the two readout
levels, with the misassignment rate ``e`` folded into the model,
``P_meas = e + (1 - 2e) P(+1)``, so a weakly coupled readout does not narrow the
curve, and binomial errors from each point's effective number of independent
samples, so slow cells get honestly larger errors.

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
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import xarray as xr

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
from labstack.calibrations._common import idle_couplers, run, sample_cells, settle_time
from labstack.fit import ScurveResult, fit_scurve, logistic
from labstack.measure import Sweep

NAME = "bias_scurve"
# readout: thresholds and dead/stuck verdicts; cryostat: widths are only meaningful at a
# known, settled base temperature (and a warmed-up fridge recalibrates them)
DEPENDS_ON: tuple[str, ...] = ("readout", "cryostat")
# offsets wander by up to ~1 mV per sqrt(hour) (flux noise): 8 h keeps them within a
# third of the check's 10 mV tolerance, and a cold calibration of a realistic fridge
# (plateaus settling over tens of minutes) finishes within it
TIMEOUT_S = 8 * 3600.0


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
        settle=settle_time(ctx, params.settle_s),
        coord=volts,
    )
    # the readout node's verdict on each cell, so the fit can say dead or stuck
    health = {str(i): ctx.state.value(f"cells.{i}.health", "") for i in range(len(layout.bias))}
    meta = {"calibration": NAME, "mode": str(mode), "parameters": asdict(params), "health": health}
    return run(ctx, NAME, sequence, meta)


# ----------------------------------------------------------------------- fit
def fit(dataset: xr.Dataset, params: Parameters | None = None) -> list[ScurveResult]:
    """Fit every cell of a stored S-curve run. Pure: needs no instrument."""
    samples = dataset["samples"].transpose("cell", "bias", "sample").values
    volts = dataset["bias"].values
    health = json.loads(dataset.attrs.get("health", "{}"))
    return [fit_scurve(volts, samples[i], cell=i, health=health.get(str(i), "")) for i in range(samples.shape[0])]


# --------------------------------------------------------------------- check
def check(results: list[ScurveResult], params: Parameters, state: CalibrationState) -> Verdict:
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
def update(results: list[ScurveResult], params: Parameters | None = None) -> StateChange:
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


def table(results: list[ScurveResult]) -> str:
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


def plot(results: list[ScurveResult], dataset: xr.Dataset) -> Any:
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


def figures(results: list[ScurveResult], dataset: xr.Dataset | None = None) -> list[Any]:
    """S-curves with their fits and residuals (one panel per cell), and V0 and width per cell.

    The fit line includes the readout misassignment ``e`` the fit folded in, so the
    residuals are those the fit minimised.
    """
    from labstack.calibrations import _figures as F

    out = []
    if dataset is not None and "bias" in dataset:
        volts = np.asarray(dataset["bias"].values, float)
        fine = np.linspace(volts.min(), volts.max(), 300)
        shown = results[: F.MAX_PANELS]
        fig, axes, resid = F.panels_with_residuals(len(shown), f"{NAME}: P(+1) vs bias, fit and residuals")
        for ax, rax, r in zip(axes, resid, shown, strict=False):
            title = f"cell {r.cell}"
            if "p" not in r.fit.extra:
                F.failed_panel(ax, rax, f"{title}: {r.flag}", r.fit.message, "bias (V)", "P(+1) measured")
                continue
            p, p_err = np.asarray(r.fit.extra["p"]), np.asarray(r.fit.extra["p_err"])
            ax.errorbar(volts, p, p_err, fmt=".", ms=3, lw=0.8, label="data")
            ax.set_ylabel("P(+1) measured")
            rax_label = "bias (V)"
            if r.ok:
                e = r.misassignment if np.isfinite(r.misassignment) else 0.0

                def model(v: np.ndarray, r: ScurveResult = r, e: float = e) -> np.ndarray:
                    return e + (1 - 2 * e) * logistic(v, r.fit["v0_V"], r.fit["width_V"])

                ax.plot(fine, model(fine), lw=1, color="C1", label="fit")
                F.residuals(rax, volts, (p - model(volts)) / p_err, rax_label)
                v0 = F.value_text("V0", r.fit["v0_V"], r.fit.error("v0_V"), "V")
                w = F.value_text("w", r.fit["width_V"], r.fit.error("width_V"), "V")
                ax.set_title(f"{title}: {v0}\n{w}, χ²ᵣ {r.fit.chi2_reduced:.2f}", fontsize=7)
            else:
                ax.set_title(f"{title}: {r.flag}", fontsize=7, color="#b00")
                rax.set_visible(False)
                ax.set_xlabel(rax_label)
                ax.tick_params(labelbottom=True)
        out.append(fig)
    good = [r for r in results if r.ok]
    if good:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7, 3.2), layout="constrained")
        ax_v, ax_w = fig.subplots(1, 2)
        cells = [r.cell for r in good]
        ax_v.errorbar(cells, [r.fit["v0_V"] * 1e3 for r in good], [r.fit.error("v0_V") * 1e3 for r in good], fmt="o", ms=4)
        ax_w.errorbar(cells, [r.fit["width_V"] * 1e3 for r in good], [r.fit.error("width_V") * 1e3 for r in good], fmt="o", ms=4)
        for ax, name in ((ax_v, "offset V0 (mV)"), (ax_w, "width w (mV)")):
            ax.set_xlabel("cell")
            ax.set_ylabel(name)
            F.integer_ticks(ax)
        ax_v.set_title("offsets")
        ax_w.set_title("widths")
        flagged = [f"{r.cell} ({r.flag})" for r in results if not r.ok]
        fig.suptitle(f"{NAME}: per cell" + (f"; flagged: {', '.join(flagged)}" if flagged else ""))
        out.append(fig)
    return out
