"""Bias transfer: each cell's S-curve P(+1) vs bias voltage -> offset V0 and width w.

An isolated cell in equilibrium has ``P(+1) = 1 / (1 + exp(-(V - V0) / w))`` with
``w = T_eff / (2 alpha)``. All bias lines step together through the same voltages
(couplers held at 0 V); at each point the sampler takes ``n_samples`` readings of
every cell, couplers idle at their calibrated zero-coupling voltage (0 V before
that is known). Each cell is fitted from its raw readings by
:func:`labstack.fit.scurve.fit_scurve`: each point's P(+1) is its share of the
upper readout level, fitted with the offset both levels sit at during that point,
so neither the readout's misassignment nor its slow offset wander moves or narrows
the curve, and its errors come from each point's effective number of independent
samples, so slow cells get honestly larger errors.

A cell whose readings never show two levels is flagged with the readout node's
verdict (``dead``, ``stuck_plus``, ``stuck_minus``), or ``no_switching`` if that
node had no objection; a cell whose fit fails or lands outside the swept range is flagged
``fit_failed``. Flags never stop the other cells.

With lock-in readout (the station's readout role) the same sweep is run once per
preamp relay position and each point is the cell's time-averaged level, read
three times (:mod:`._lockin`); it is fitted with
:func:`labstack.fit.fit_mean_scurve`, whose V0 and w mean the same as above. A
line's mean level also carries a few per cent of its neighbouring lines (readout
crosstalk): each relay position is swept again with the cells it reads held at
``v_start``, and that reading, the neighbours' leak along the same sweep, is
subtracted read by read before the fit.

Single shots carry the same leak, and a threshold does not make it go away: every
line sweeps together, so while a cell switches its channel neighbours sit at one
level, and both of its levels are shifted that way against a threshold set by the
whole sweep. Its +1 and -1 are then misread at different rates, which a symmetric
misassignment model took for a shifted centre: 2.5 mV (4.5 sigma) on a weak cell
next to a 2.8 % leak. The per-point shares of the fit take out the leak's mean over a
point with the offset, but not what neighbours switching during the point add reading by
reading. So each cell's readings are cleared of the leak the readout node
measured with every line held saturated (``cells.<i>.readout_leak_V``), times its
neighbours' states, before the fit (:func:`labstack.calibrations.cell_states.subtract_leak`).
Fitting the leak from the sweep itself does not work: along it every cell's state
tracks its neighbours', and the fit took part of a weak cell's own signal for leak.

Three steps, each usable alone: :func:`acquire` (instrument -> stored run),
:func:`fit` (dataset -> results, no instrument: re-fit any stored run) and
:func:`update` (results -> calibration-state entries).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
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
    family_n_sigma,
)
from labstack.calibrations import _lockin
from labstack.calibrations._common import (
    cell_values,
    decorrelated_rate,
    idle_couplers,
    line_limits,
    run,
    sample_cells,
    settle_time,
)
from labstack.calibrations.cell_states import leak_values, subtract_leak
from labstack.calibrations.idle_coupling import idle_coupling, offset_errors
from labstack.calibrations.scurve_windows import Window, merged_volts, needs_window
from labstack.data import values_in
from labstack.fit import ScurveResult, fit_mean_scurve, fit_scurve, logistic
from labstack.measure import Sweep

NAME = "bias_scurve"
#: single shots from a sampler, or time-averaged levels from lock-ins
READOUT_KINDS = ("sampler", "lockin")
# readout: thresholds and dead/stuck verdicts; cryostat: widths are only meaningful at a
# known, settled base temperature (and a warmed-up fridge recalibrates them)
DEPENDS_ON: tuple[str, ...] = ("readout", "cryostat")
# offsets wander by up to ~1 mV per sqrt(hour) (flux noise): 8 h keeps them within a
# third of the check's 10 mV tolerance, and a cold calibration of a realistic fridge
# (plateaus settling over tens of minutes) finishes within it
TIMEOUT_S = 8 * 3600.0
FIXED_POINT = "bias_loop"
#: a check that finds some cells moved recalibrates those alone, in windows around their
#: stored offsets, the other lines moving with them as in every S-curve
PER_CELL = True




@dataclass
class Parameters:
    v_start: float = -1.0
    v_stop: float = 1.0
    n_points: int = 61
    n_samples: int = 3000
    #: a millisecond apart: the slowest cells' correlation times reach a millisecond only on
    #: chips whose excess noise is below the realistic range (labstack.sim.realism), so
    #: successive samples are near-independent draws, and the errors count the lag-1
    #: correlation that is left (effective_count). 100 Hz cost the fridge ten times as long
    #: for the same number of independent samples: repeated sweeps of two family chips in a
    #: calibrated state gave width pulls of rms 1.01 and 1.10 at 1 kHz against 1.14 and 1.20
    #: at 100 Hz, offsets 0.99 and 0.93 against 1.02 and 0.94, in 15 min of fridge time
    #: instead of 2 h 20 min
    sample_rate_Hz: float = 1000.0
    settle_s: float = 1e-3
    #: cheap check: fewer points and samples
    check_points: int = 31
    check_samples: int = 1000
    #: the check samples as fast as the chip's measured correlation times allow
    #: (:func:`._common.decorrelated_rate`: five of the slowest cell's apart), between the
    #: calibration's rate and ``check_rate_max_Hz``: its errors stay those of independent
    #: draws (the guard band turns larger ones into needless recalibrations), and a chip of
    #: microsecond cells is checked at 10 kHz (a 64-cell maintain pass: 25 -> 7 s)
    check_rate_Hz: float = 1000.0
    check_rate_max_Hz: float = 10000.0
    #: how far V0 may move before the cell is out of spec: 10 mV moves P(+1) at a cell's
    #: centre by 10 mV / (4 w), 4-6 % for the 40-65 mV widths of a chip at base
    tolerance_V: float = 0.01
    #: a cell is recalibrated once its check has not shown it within tolerance at this
    #: many standard errors (Tolerance.guard_sigma): offsets drift steadily, and a check
    #: that reads 9 +- 1.5 mV has not shown a cell within 10 mV
    check_guard_sigma: float = 2.0
    #: the check sweeps only where a stored S-curve is decided: this many widths either
    #: side of the stored offsets (the rest of the range is +-1 plateaus that say nothing
    #: about an offset and cost fridge time)
    check_widths: float = 5.0
    #: how a lock-in readout is driven (used only when the readout role is lock-ins)
    lockin: _lockin.LockinSettings = field(default_factory=_lockin.LockinSettings)
    #: a cell the chip-wide sweep does not resolve gets a window of its own:
    #: centre +- this many widths, in this many points (scurve_windows); False: never
    windows: bool = True
    window_widths: float = 6.0
    window_points: int = 31
    #: every window in one sweep (scurve_windows.merged_volts); False: one sweep per window,
    #: as before December 2026 (what bench/bench_lab_time.py's earlier settings measure)
    windows_together: bool = True
    #: the bias lines' safe range, which a window never leaves
    limits_V: tuple[float, float] = (-1.5, 1.5)


# ------------------------------------------------------------------- acquire
def acquire(ctx: Context, params: Parameters, mode: Mode = Mode.CALIBRATE) -> xr.Dataset:
    """Sweep every bias line together and sample every cell; returns the stored run's dataset.

    In a calibration, cells the sweep did not resolve are measured again in windows of
    their own (:mod:`labstack.calibrations.scurve_windows`), and a per-cell
    recalibration (``ctx.selection``) measures only windows around the selected cells'
    stored offsets; the parts are returned as one dataset (stored as a derived run).
    """
    station = ctx.station
    layout = station.layout
    full = mode is Mode.CALIBRATE
    n_points = params.n_points if full else params.check_points
    if _lockin.is_lockin(layout):
        return _acquire_lockin(ctx, params, mode, np.linspace(params.v_start, params.v_stop, n_points))
    read = (sample_cells(station, layout, params.sample_rate_Hz, params.n_samples) if full
            else sample_cells(station, layout, decorrelated_rate(ctx, params.check_rate_Hz, params.check_rate_max_Hz),
                              params.check_samples))
    idle_couplers(ctx, layout)
    # the readout node's verdict on each cell, so the fit can say dead or stuck
    health = {str(i): ctx.state.value(f"cells.{i}.health", "") for i in range(len(layout.bias))}
    # the couplers' idle coupling is known only to their zeros' errors: the fit adds what
    # that can shift each offset (labstack.calibrations.idle_coupling)
    coupling = idle_coupling(ctx.state, list(layout.coupler_pairs))
    # and the readout leak of its channel neighbours, which the fit removes first
    leak = [None if not np.isfinite(x) else float(x) for x in cell_values(ctx, len(layout.bias), "readout_leak_V")]
    meta = {"calibration": NAME, "mode": str(mode), "parameters": asdict(params), "health": health,
            "idle_coupling": coupling, "readout_leak_V": json.dumps(leak)}
    if full and ctx.selection:
        windows = _stored_windows(ctx, ctx.selection)
        if windows is not None:
            return _merged(*_window_runs(ctx, params, read, meta, windows), windows, main=None)
    volts = np.linspace(params.v_start, params.v_stop, n_points)
    if not full:
        return _sweep(ctx, params, read, meta, check_span(ctx, volts, params.check_widths))
    main = _sweep(ctx, params, read, meta, volts)
    broken = {int(i) for i, h in health.items() if h not in ("", "ok")}
    windows = needs_window(fit(main, params), volts, broken) if params.windows else []
    if not windows:
        return main
    return _merged(*_window_runs(ctx, params, read, meta, windows), windows, main=main)


def check_span(ctx: Context, volts: np.ndarray, widths: float) -> np.ndarray:
    """The points of the check's sweep within ``widths`` S-curve widths of a stored offset.

    The grid stays the check's own (same spacing, so the same precision per cell), cut to
    the span from the lowest stored offset minus ``widths`` of its width to the highest
    plus as many, with one point more on each side. Every point if a calibrated cell has
    no valid offset or width (nothing to centre on), or if fewer than 7 points remain.
    """
    n = len(ctx.station.layout.bias)
    lows, highs = [], []
    for i in range(n):
        key = f"cells.{i}.bias_offset_V"
        if key not in ctx.state or not ctx.state.get(key).valid:
            continue
        v0 = float(ctx.state.value(key))
        w = ctx.state.value(f"cells.{i}.scurve_width_V", None)
        if w is None or not np.isfinite(w) or w <= 0 or not np.isfinite(v0):
            return volts
        lows.append(v0 - widths * float(w))
        highs.append(v0 + widths * float(w))
    if not lows:
        return volts
    step = float(np.abs(np.diff(volts)).max()) if len(volts) > 1 else 0.0
    keep = (volts >= min(lows) - step) & (volts <= max(highs) + step)
    return volts[keep] if keep.sum() >= 7 else volts


def _sweep(ctx: Context, params: Parameters, read: Any, meta: dict[str, Any], volts: np.ndarray) -> xr.Dataset:
    sequence = Sweep(
        "bias",
        {name: volts for name in ctx.station.layout.bias},
        body=[read],
        settle=settle_time(ctx, params.settle_s),
        coord=volts,
    )
    return run(ctx, NAME, sequence, meta)


def _acquire_lockin(ctx: Context, params: Parameters, mode: Mode, volts: np.ndarray) -> xr.Dataset:
    """The same sweep read by lock-ins: each cell's mean level (cell, bias, read)."""
    layout = ctx.station.layout
    settings = _lockin.as_settings(params.lockin)
    idle_couplers(ctx, layout)
    chain = _lockin.prepare(
        ctx, settings, {b: params.v_stop for b in layout.bias}, {b: params.v_start for b in layout.bias}
    )
    health = {str(i): ctx.state.value(f"cells.{i}.health", "") for i in range(len(layout.bias))}
    meta = {"calibration": NAME, "mode": str(mode), "parameters": asdict(params), "health": health}
    # each relay position is swept a second time with the cells it reads held at the
    # sweep's low end (every curve the sweep can fit is at -1 there), which measures
    # their neighbours' readout leak along the same sweep (``_lockin.sweep``)
    park = {b: params.v_start for b in layout.bias}
    ds = _lockin.sweep(ctx, settings, {b: volts for b in layout.bias}, volts, "bias", run, NAME, meta, chain, park=park)
    ds.attrs.update(calibration=NAME, health=json.dumps(health))
    return ds


def _window_runs(
    ctx: Context, params: Parameters, read: Any, meta: dict[str, Any], windows: list[Window]
) -> tuple[list[xr.Dataset], list[list[int]]]:
    """The windows' runs (one, or one per window) and the cells each is for."""
    groups = [windows] if params.windows_together else [[w] for w in windows]
    return ([_windows_run(ctx, params, read, meta, g) for g in groups],
            [sorted(w.cell for w in g) for g in groups])


def _windows_run(ctx: Context, params: Parameters, read: Any, meta: dict[str, Any], windows: list[Window]) -> xr.Dataset:
    """Every window in one sweep (:func:`~labstack.calibrations.scurve_windows.merged_volts`),
    within every line's limits: all lines move together."""
    low, high = line_limits(ctx, ctx.station.layout.bias, params.limits_V)
    volts = merged_volts(windows, params.window_widths, params.window_points, (float(low.max()), float(high.min())))
    cells = [{"cell": w.cell, "why": w.why} for w in windows]
    return _sweep(ctx, params, read, {**meta, "windows": cells}, volts)


def _stored_windows(ctx: Context, cells: Any) -> list[Window] | None:
    """Windows around the selected cells' stored offsets (None if one has none: sweep all)."""
    out = []
    for cell in sorted(cells):
        v0 = ctx.state.value(f"cells.{cell}.bias_offset_V", None)
        w = ctx.state.value(f"cells.{cell}.scurve_width_V", None)
        if v0 is None or w is None or not ctx.state.get(f"cells.{cell}.bias_offset_V").valid:
            return None
        out.append(Window(int(cell), float(v0), float(w), f"recalibration: {cells[cell]}"))
    return out


def _merged(
    window_parts: list[xr.Dataset], window_cells: list[list[int]], windows: list[Window], main: xr.Dataset | None
) -> xr.Dataset:
    """The chip-wide sweep (if any) and the windows' runs as one dataset along ``bias``:
    ``block`` says which run each point came from, ``block_cells`` which cells a block is
    for (None: every cell; a windows' run is for the cells it has windows for),
    ``bias_clock`` counts from the first part's start."""
    parts = ([main] if main is not None else []) + window_parts
    t0 = float(parts[0].attrs["clock_start"])
    samples = np.concatenate([values_in(p["samples"], "bias", "cell", "sample") for p in parts])
    clock = np.concatenate([np.asarray(p["bias_clock"].values, float) + float(p.attrs["clock_start"]) - t0 for p in parts])
    block = np.concatenate([np.full(p.sizes["bias"], k) for k, p in enumerate(parts)])
    cells = ([None] if main is not None else []) + window_cells
    ds = xr.Dataset(
        {"samples": (("bias", "cell", "sample"), samples, dict(parts[0]["samples"].attrs)),
         "bias_clock": (("bias",), clock), "block": (("bias",), block)},
        coords={"bias": np.concatenate([p["bias"].values for p in parts])},
    )
    ds.attrs.update(parts[0].attrs)
    ds.attrs["run_id"] = "+".join(str(p.attrs["run_id"]) for p in parts)
    ds.attrs["block_cells"] = json.dumps(cells)
    ds.attrs["windows"] = json.dumps([{"cell": w.cell, "centre_V": w.centre_V, "width_V": w.width_V, "why": w.why} for w in windows])
    return ds


# ----------------------------------------------------------------------- fit
def fit(dataset: xr.Dataset, params: Parameters | None = None) -> list[ScurveResult]:
    """Fit every measured cell of a stored S-curve run (with its windows). Pure: needs no instrument."""
    if "level" in dataset:  # lock-in readout: time-averaged levels
        levels = values_in(dataset["level"], "cell", "bias", "read")
        if "leak" in dataset:  # the neighbours' readout leak, measured with the cell held
            levels = levels - values_in(dataset["leak"], "cell", "bias", "read")
        volts = dataset["bias"].values
        health = json.loads(dataset.attrs.get("health", "{}"))
        return [fit_mean_scurve(volts, levels[i], cell=i, health=health.get(str(i), "")) for i in range(levels.shape[0])]
    samples = values_in(dataset["samples"], "cell", "bias", "sample")
    volts = np.asarray(dataset["bias"].values, dtype=float)
    health = json.loads(dataset.attrs.get("health", "{}"))
    leak = leak_values(dataset.attrs.get("readout_leak_V"))
    if leak is not None:  # the channel neighbours' readout leak, removed before thresholding
        live = np.array([health.get(str(i), "") in ("", "ok") for i in range(samples.shape[0])])
        samples = subtract_leak(samples, leak, live)
    block = np.asarray(dataset["block"].values) if "block" in dataset else np.zeros(volts.size, int)
    block_cells = json.loads(dataset.attrs.get("block_cells", "[null]"))
    results = []
    for i in range(samples.shape[0]):
        mask = np.array([block_cells[b] is None or i in block_cells[b] for b in block])
        if not mask.any():
            continue  # a per-cell recalibration did not measure this cell
        order = np.argsort(volts[mask], kind="stable")
        v = volts[mask][order]
        readings = samples[i][mask][order]
        r = fit_scurve(v, readings, cell=i, health=health.get(str(i), ""))
        r.fit.extra["v"] = v.tolist()
        if "p" not in r.fit.extra and np.isfinite(r.threshold_V):  # where a window should look
            p = (readings > r.threshold_V).mean(axis=1)
            n = readings.shape[1]
            r.fit.extra["p"] = p.tolist()
            r.fit.extra["p_err"] = np.sqrt((p * n + 0.5) * (n - p * n + 0.5) / (n + 1) ** 3).tolist()
        results.append(r)
    coupling = dataset.attrs.get("idle_coupling")
    if coupling:
        coupling = json.loads(coupling) if isinstance(coupling, str) else coupling
        v0 = np.full(samples.shape[0], np.nan)
        width = np.full(samples.shape[0], np.nan)
        for r in results:
            if r.ok:
                v0[r.cell], width[r.cell] = r.fit["v0_V"], r.fit["width_V"]
        extra = offset_errors(coupling, v0, width)
        for r in results:
            e = extra[r.cell]
            if r.ok and e > 0:
                r.fit.extra["v0_fit_err_V"] = r.fit.error("v0_V")
                r.fit.extra["v0_idle_coupling_err_V"] = float(e)
                r.fit.stderr["v0_V"] = float(np.hypot(r.fit.error("v0_V"), e))
    return results


# --------------------------------------------------------------------- check
def check(results: list[ScurveResult], params: Parameters, state: CalibrationState) -> Verdict:
    """In spec while every calibrated cell's V0 stays within tolerance and still switches.

    A move counts as significant at the family-wise threshold of all the cells the
    check judges (:func:`~labstack.calibrate.family_n_sigma`, as every other node's
    check): at a flat 3 sigma a 16-cell check re-measured a cell that had not moved
    once in every ~25 checks, on noise alone."""
    tolerance = Tolerance(params.tolerance_V, n_sigma=family_n_sigma(len(results)),
                          guard_sigma=params.check_guard_sigma)
    verdicts = []
    for r in results:
        key = f"cells.{r.cell}.bias_offset_V"
        if key not in state or not state.get(key).valid:
            continue
        old = state.get(key)
        if not r.ok:
            verdicts.append(Verdict(Spec.OUT_OF_SPEC, f"cell {r.cell}: {r.flag or 'fit failed'}").about(r.cell))
            continue
        verdict = tolerance.judge(f"cell {r.cell} V0", r.fit["v0_V"], r.fit.error("v0_V"), old.value, old.stderr)
        verdicts.append(verdict.about(r.cell))  # out of spec: this cell alone is measured again
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
            ax.errorbar(np.asarray(r.fit.extra.get("v", volts)), r.fit.extra["p"], r.fit.extra["p_err"], fmt=".", ms=3)
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

    The points are each one's share of the upper readout level (misassignment and the
    offset's wander taken out, :func:`labstack.fit.fit_scurve`), so the fit line is the
    logistic itself and the residuals are those the fit minimised.
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
            volts = np.asarray(r.fit.extra.get("v", dataset["bias"].values), float)
            ax.errorbar(volts, p, p_err, fmt=".", ms=3, lw=0.8, label="data")
            ax.set_ylabel("P(+1) measured")
            rax_label = "bias (V)"
            if r.ok:
                def model(v: np.ndarray, r: ScurveResult = r) -> np.ndarray:
                    return logistic(v, r.fit["v0_V"], r.fit["width_V"])

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
