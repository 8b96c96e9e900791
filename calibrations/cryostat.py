"""Cryostat: base temperature, heater response and thermalization times of fridge and chip.

One run: a short baseline, then the sample heater steps on in open loop (a fixed
current), the mixing chamber (MC) and chip thermometers are traced while it warms,
then the heater steps off and they are traced while it cools back to base.

Model. The MC obeys ``C dT/dt = P + P_load - a T^2``. For constant heater power
the exact solution is a *dilution settling* curve::

    u(t) = u0 exp(-t / tau),   T = T_inf (1 + u) / (1 - u),   u = (T - T_inf) / (T + T_inf)

with ``tau = C / (2 a T_inf)``: exponential for small steps, and exact for the
large ones a fridge needs (a plain exponential leaves systematic residuals when
the step is a few times the base temperature). The cool-down gives the base
temperature ``T_inf`` and the small-signal time constant at base; the warm-up,
with the known heater current ``I``, gives the *heating coefficient*
``K = (T_hot^2 - T_base^2) / I^2`` (= R_heater / a, in K^2/A^2): the current that
holds any temperature, ``I = sqrt((T^2 - T_base^2) / K)``, which
:func:`labstack.calibrations.fridge.heat_to` uses for the other routines.

The chip follows the MC as a first-order lag, ``dT_chip/dt = (T_mc - T_chip) / tau_chip``:
its thermometer trace is fitted as the lag of the fitted MC curve, one parameter
``tau_chip`` plus its starting temperature and the relative calibration difference
of the two sensors, ``d sqrt(10 mK / T)`` (two RuOx curves each a few % off at 10 mK:
left out, it would pose as lag). Thermometer errors are relative (a resistance
bridge's), so every fit is made on ``ln T``, where they are uniform, and the
standard errors are scaled by the residuals.

Thermometers share one scanner, so the two are read in turn, each after switching
the scanner to it and waiting its pause (:func:`labstack.calibrations.fridge.fresh_read_steps`):
every reading's time is known (the repetition's start plus its waits), and the fits
use those times rather than the trace's nominal ones. The calibration curve's own
uncertainty (the certificate's, :data:`~labstack.calibrations.fridge.CALIBRATION_REL_10MK`)
is added to every result: to the temperatures directly, to the heating coefficient
through both temperatures of the same sensor, and to the time constants by refitting
the traces with the readings moved by one sigma of it.

Closed loop. A thermometry role that offers set-points only (an Oxford Triton) is
stepped by its set-point instead: the controller's PID holds the mixing chamber at
``setpoint_K`` (its hold gives ``mc_hot_K``), then the loop is switched off and the
free cool-down is fitted exactly as above (base temperature, time constant at base,
chip lag). The controller chooses the heater power, so no heating coefficient is
measured: routines that heat such a fridge give it set-points
(:func:`labstack.calibrations.fridge.heat_to`). The cool-down is traced until
``cool_taus`` time constants at base have passed, as its own first part predicts them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import xarray as xr

from labstack.calibrate import (
    CalibrationState,
    Context,
    FitQuality,
    Mode,
    Spec,
    StateChange,
    Tolerance,
    Verdict,
    combine,
)
from labstack.calibrations import _lockin
from labstack.calibrations._common import run
from labstack.calibrations.fridge import (
    CALIBRATION_REL_10MK,
    HEATER_RANGES_A,
    LOOP_RANGE_MA,
    closed_loop,
    fresh_read_steps,
    heater,
    output_index,
    scan_all,
    set_heater_current,
)
from labstack.calibrations.fridge_fit import (
    UNITS,
    CryostatResult,
    _lag_exact,
    _reading_times,
    dilution_settling,
    fit_dilution,
    fit_traces,
    predicted_tau_base,
)
from labstack.calibrations.fridge_fit import update as update_from
from labstack.fit import FitResult
from labstack.measure import Sequence, Set, Step, Trace

NAME = "cryostat"
DEPENDS_ON: tuple[str, ...] = ()
TIMEOUT_S = 24 * 3600.0

@dataclass
class Parameters:
    heater_range: str = "1mA"
    heater_percent: float = 35.0  # 0.35 mA: warms a 10 mK fridge to ~40 mK
    baseline_s: float = 50.0
    heat_s: float = 1500.0
    #: the cool-down lasts at least this long, and at least ``cool_taus`` time constants at
    #: base as the warm-up predicts them (a fridge's heat capacity and cooling power vary)
    cool_s: float = 3000.0
    cool_taus: float = 3.5
    interval_s: float = 5.0
    cool_interval_s: float = 20.0
    #: cheap check: a baseline of the mixing chamber only (base temperature still where it was?)
    check_points: int = 4
    #: the heater step and cool-down are left to the shared ladder (:mod:`.ladder`, run by the
    #: effective-temperature node, which writes ``cryostat.*`` from them) when that node is in
    #: the graph with a ladder: a calibration here is then the baseline only. False, no such
    #: node, or a lock-in readout (no ladder): this node's own heater step and cool-down
    ladder: bool = True
    tolerance_K: float = 1e-3
    #: how well a reading's time stamp matches the temperature it reports (bridge filter,
    #: integration step); added in quadrature to the time constants' statistical errors
    timing_uncertainty_s: float = 0.5
    #: 1-sigma calibration-curve error of the RuOx sensors at 10 mK (their certificate)
    calibration_rel_10mK: float = CALIBRATION_REL_10MK
    #: closed loop (a Triton): the set-point the warm step holds (K)
    setpoint_K: float = 0.040


# ------------------------------------------------------------------- acquire
def acquire(ctx: Context, params: Parameters, mode: Mode = Mode.CALIBRATE) -> xr.Dataset:
    """Baseline, heater step on, heater step off; both thermometers traced throughout."""
    layout = ctx.station.layout
    if layout.thermometer_mc is None or layout.heater is None:
        raise RuntimeError("the cryostat routine needs a mixing-chamber thermometer and a heater")
    thermometers = {"T_mc": layout.thermometer_mc}
    if layout.thermometer_chip:
        thermometers["T_chip"] = layout.thermometer_chip
    offsets: dict[str, float] = {}  # when, after its repetition starts, each reading is taken

    def reads(phase: str) -> list[Step]:
        return reads_of(ctx, thermometers, offsets, phase)

    channel = heater(ctx)
    set_heater_current(ctx, 0.0)
    base_steps = reads("base")
    interval = max(params.interval_s, offsets[list(thermometers)[-1]])
    cool_interval = max(params.cool_interval_s, interval)
    baseline_only = mode is Mode.CHECK or (params.ladder and ladder_follows(ctx))
    if baseline_only:
        if mode is Mode.CHECK:  # the mixing chamber alone says whether base moved
            offsets.clear()
            base_steps = reads_of(ctx, {"T_mc": layout.thermometer_mc}, offsets, "base")
            interval = max(params.interval_s, offsets["T_mc"])
        n = params.check_points if mode is Mode.CHECK else max(2, int(params.baseline_s / interval))
        seq = Sequence((Trace("t_base", n, interval, base_steps),))
        meta = {"mode": str(mode), "parameters": asdict(params), "read_offset_s": offsets,
                "baseline_only": mode is not Mode.CHECK}
        try:
            return run(ctx, NAME, seq, meta)
        finally:
            scan_all(ctx)
    if closed_loop(ctx):
        return _acquire_closed_loop(ctx, params, mode, interval, cool_interval, base_steps, reads, offsets)
    current = HEATER_RANGES_A[params.heater_range] * params.heater_percent / 100
    channel.output_range(params.heater_range)
    channel.write(f"MOUT {output_index(channel)},{params.heater_percent:.4f}")
    mode_param = f"{layout.heater}.mode"
    warm = Sequence(
        (
            Trace("t_base", max(2, int(params.baseline_s / interval)), interval, base_steps),
            Set(mode_param, "open_loop"),
            Trace("t_heat", int(params.heat_s / interval) + 1, interval, reads("heat")),
        )
    )
    meta = {"mode": str(mode), "parameters": asdict(params), "heater_current_A": current, "read_offset_s": offsets}
    try:
        first = run(ctx, NAME, warm, meta)
        cool_s = max(params.cool_s, params.cool_taus * predicted_tau_base(first))
        cool = Sequence(
            (
                Set(mode_param, "off"),
                Trace("t_cool", int(cool_s / cool_interval) + 1, cool_interval, reads("cool")),
            )
        )
        second = run(ctx, NAME, cool, {**meta, "cool_s": cool_s})
    finally:
        scan_all(ctx)
    attrs = {**first.attrs, "run_id": f"{first.attrs['run_id']}+{second.attrs['run_id']}"}
    return xr.merge([first, second], combine_attrs="drop").assign_attrs(attrs)


def ladder_follows(ctx: Context) -> bool:
    """Whether the effective-temperature node is in this graph and will run the shared ladder
    (sampler readout), which measures the heater step and the cool-down instead."""
    t_eff = ctx.graph_params.get("effective_temperature")
    return bool(getattr(t_eff, "ladder", False)) and not _lockin.is_lockin(ctx.station.layout)


def reads_of(ctx: Context, thermometers: dict[str, str], offsets: dict[str, float], phase: str) -> list[Step]:
    """Fresh readings of each thermometer in turn; ``offsets`` gets when each is taken."""
    steps: list[Step] = []
    elapsed = 0.0
    for name, p in thermometers.items():
        more, wait = fresh_read_steps(ctx, p, f"{name}_{phase}")
        steps += more
        elapsed += wait
        offsets[name] = elapsed
    return steps


def _acquire_closed_loop(
    ctx: Context,
    params: Parameters,
    mode: Mode,
    interval: float,
    cool_interval: float,
    base_steps: list[Step],
    reads: Any,
    offsets: dict[str, float],
) -> xr.Dataset:
    """Baseline, the loop holding ``setpoint_K``, the loop off: the free cool-down traced."""
    layout = ctx.station.layout
    setpoint, loop_mode = str(layout.heater_setpoint), str(layout.heater_mode)
    ctx.station.parameter(str(layout.heater_range)).set(LOOP_RANGE_MA)
    warm = Sequence(
        (
            Trace("t_base", max(2, int(params.baseline_s / interval)), interval, base_steps),
            Set(setpoint, params.setpoint_K),
            Set(loop_mode, "on"),
            Trace("t_heat", int(params.heat_s / interval) + 1, interval, reads("heat")),
        )
    )
    meta = {
        "mode": str(mode), "parameters": asdict(params), "control": "closed_loop",
        "setpoint_K": params.setpoint_K, "read_offset_s": offsets,
    }
    runs = []
    try:
        runs.append(run(ctx, NAME, warm, meta))
        cool = Sequence((Set(loop_mode, "off"), Trace("t_cool", int(params.cool_s / cool_interval) + 1, cool_interval, reads("cool"))))
        runs.append(run(ctx, NAME, cool, {**meta, "cool_s": params.cool_s}))
        first_cool = fit_dilution(_reading_times(runs[-1], "cool", "T_mc"), runs[-1]["T_mc_cool"].values.astype(float))
        more = params.cool_taus * first_cool["tau"] - params.cool_s if first_cool.success else 0.0
        if more > cool_interval:  # a slow fridge: trace on until cool_taus time constants at base
            rest = Sequence((Trace("t_cool2", int(more / cool_interval) + 1, cool_interval, reads("cool2")),))
            runs.append(run(ctx, NAME, rest, meta))
    finally:
        scan_all(ctx)
    attrs = {**runs[0].attrs, "run_id": "+".join(r.attrs["run_id"] for r in runs)}
    return xr.merge(runs, combine_attrs="drop").assign_attrs(attrs)


# --------------------------------------------------------------------- check
def check(result: CryostatResult, params: Parameters, state: CalibrationState) -> Verdict:
    """In spec while the baseline sits within tolerance of the calibrated base temperature."""
    if "cryostat.mc_base_K" not in state:
        return Verdict(Spec.BAD_DATA, "no calibrated base temperature to compare with")
    old = state.get("cryostat.mc_base_K")
    return combine(
        [
            Tolerance(params.tolerance_K).judge(
                "MC base temperature", result.baseline_K, result.baseline_err_K, old.value, old.stderr
            )
        ]
    )


# ----------------------------------------------------------------------- fit
def fit(dataset: xr.Dataset, params: Parameters | None = None) -> CryostatResult:
    """Fit a stored cryostat run (pure): :func:`labstack.calibrations.fridge_fit.fit_traces`."""
    params = params or Parameters()
    return fit_traces(dataset, params.calibration_rel_10mK, params.timing_uncertainty_s)


# -------------------------------------------------------------------- update
def update(result: CryostatResult, params: Parameters | None = None) -> StateChange:
    return update_from(result)


def table(result: CryostatResult) -> str:
    d = result.derived
    if not d.success:
        return f"cryostat: FAILED ({d.message})"
    quality = FitQuality()
    lines = [f"{'quantity':<20} {'value':>24}"]
    for name, value in d.values.items():
        lines.append(f"{name:<20} {value:>12.5g} ± {d.error(name):<9.2g} {UNITS[name]}")
    for label, f in (("MC warm-up", result.heat), ("MC cool-down", result.cool), ("chip warm-up", result.chip_heat), ("chip cool-down", result.chip_cool)):
        if f is not None and f.message != "baseline only":
            lines.append(f"{label:<20} {quality.judge(label, f).spec.value} (chi2_red {f.chi2_reduced:.3g})")
    return "\n".join(lines)


def figures(result: CryostatResult, dataset: xr.Dataset | None = None) -> list[Any]:
    """Warm-up and cool-down of the mixing chamber and the chip with their fits and residuals.

    Fits are made on ln T with errors scaled by the residuals, so the residual panels
    show ``(ln T - model) / rms``: structure in them is a wrong model, not noise.
    """
    from labstack.calibrations import _figures as F

    if dataset is None:
        return []
    if "t_heat" not in dataset.dims:  # a baseline (the heater step is the ladder's): the readings
        from matplotlib.figure import Figure

        fig = Figure(figsize=(5, 2.8), layout="constrained")
        ax = fig.add_subplot()
        for name in ("T_mc_base", "T_chip_base"):
            if name in dataset:
                t = dataset["t_base"].values.astype(float)
                ax.plot(t - t[0], dataset[name].values.astype(float) * 1e3, "o", ms=3, label=name[2:-5])
        ax.axhline(result.baseline_K * 1e3, color="C1", lw=1, label="base")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("T (mK)")
        ax.legend(fontsize=7)
        ax.set_title(f"{NAME}: baseline, {F.value_text('T_base', result.baseline_K, result.baseline_err_K, 'K')}", fontsize=8)
        return [fig]
    steps = [("heat", "warm-up", result.heat, result.chip_heat), ("cool", "cool-down", result.cool, result.chip_cool)]
    out = []
    for stage, label in (("mc", "mixing chamber"), ("chip", "chip")):
        fig, axes, resid = F.panels_with_residuals(2, f"{NAME}: {label} temperature after a heater step", cols=2, size=(4.2, 2.8))
        for ax, rax, (phase, title, mc_fit, chip_fit) in zip(axes, resid, steps, strict=True):
            var = f"T_{stage}_{phase}"
            if var not in dataset:
                F.failed_panel(ax, rax, f"{label} {title}", f"no {label} thermometer", "time since step (s)", "T (mK)")
                continue
            t = dataset[f"t_{phase}"].values.astype(float)
            t = t - t[0]
            temps = dataset[var].values.astype(float)
            ax.plot(t, temps * 1e3, ".", ms=2, label="thermometer")
            ax.set_ylabel("T (mK)")
            fit = mc_fit if stage == "mc" else chip_fit
            if fit is None or not fit.success:
                ax.set_title(f"{label} {title}: fit failed", fontsize=8, color="#b00")
                rax.set_visible(False)
                ax.set_xlabel("time since step (s)")
                ax.tick_params(labelbottom=True)
                continue
            model = _stage_model(t, stage, mc_fit, fit)
            ax.plot(t, model * 1e3, color="C1", lw=1, label="fit")
            r = np.log(temps) - np.log(model)
            rms = float(np.sqrt(np.mean(r**2))) or 1.0
            F.residuals(rax, t, r / rms, "time since step (s)")
            rax.set_ylabel("pull (rms)")
            if stage == "mc":
                text = f"{F.value_text('T∞', fit['T_inf'], fit.error('T_inf'), 'K')}, {F.value_text('τ', fit['tau'], fit.error('tau'), 's')}"
            else:
                text = F.value_text("τ_chip", fit["tau"], fit.error("tau"), "s")
            ax.set_title(f"{label} {title}: {text}", fontsize=7)
        out.append(fig)
    return out


def _stage_model(t: np.ndarray, stage: str, mc: FitResult, fit: FitResult) -> np.ndarray:
    """The fitted curve at times ``t`` (from the step): the MC's settling, or the chip's lag of it."""
    if stage == "mc":
        return dilution_settling(t, fit["T_inf"], fit["T0"], fit["tau"])
    tau = fit["tau"]
    step = min(tau / 10, 1.0)
    grid = np.arange(0.0, t.max() + 2 * step, step)
    drive = dilution_settling(grid, mc["T_inf"], mc["T0"], mc["tau"])
    return np.interp(t, grid, _lag_exact(drive, step, tau, fit["T_start"]))
