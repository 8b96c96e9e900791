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
``tau_chip`` (plus its starting temperature). Thermometer errors are relative (a resistance
bridge's), so every fit is made on ``ln T``, where they are uniform, and the
standard errors are scaled by the residuals.
"""

from __future__ import annotations

import math
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
from labstack.calibrations._common import run
from labstack.calibrations.fridge import HEATER_RANGES_A, heater, output_index, set_heater_current
from labstack.fit import FitResult, fit_curve
from labstack.measure import Read, Sequence, Set, Trace

NAME = "cryostat"
DEPENDS_ON: tuple[str, ...] = ()
TIMEOUT_S = 24 * 3600.0

@dataclass
class Parameters:
    heater_range: str = "1mA"
    heater_percent: float = 35.0  # 0.35 mA: warms a 10 mK fridge to ~40 mK
    baseline_s: float = 50.0
    heat_s: float = 1500.0
    cool_s: float = 3000.0  # three time constants at base: enough to fix T_inf and tau
    interval_s: float = 5.0
    cool_interval_s: float = 20.0
    #: cheap check: a baseline only (base temperature still where it was?)
    check_points: int = 20
    tolerance_K: float = 1e-3
    #: how well a reading's time stamp matches the temperature it reports (bridge filter,
    #: integration step); added in quadrature to the time constants' statistical errors
    timing_uncertainty_s: float = 0.5


# ------------------------------------------------------------------- acquire
def acquire(ctx: Context, params: Parameters, mode: Mode = Mode.CALIBRATE) -> xr.Dataset:
    """Baseline, heater step on, heater step off; both thermometers traced throughout."""
    layout = ctx.station.layout
    if layout.thermometer_mc is None or layout.heater is None:
        raise RuntimeError("the cryostat routine needs a mixing-chamber thermometer and a heater")
    thermometers = {"T_mc": layout.thermometer_mc}
    if layout.thermometer_chip:
        thermometers["T_chip"] = layout.thermometer_chip

    def reads(phase: str) -> list[Read]:
        return [Read(p, name=f"{name}_{phase}") for name, p in thermometers.items()]

    channel = heater(ctx)
    set_heater_current(ctx, 0.0)
    if mode is Mode.CHECK:
        seq = Sequence((Trace("t_base", params.check_points, params.interval_s, reads("base")),))
        return run(ctx, NAME, seq, {"mode": str(mode), "parameters": asdict(params)})
    current = HEATER_RANGES_A[params.heater_range] * params.heater_percent / 100
    channel.output_range(params.heater_range)
    channel.write(f"MOUT {output_index(channel)},{params.heater_percent:.4f}")
    mode_param = f"{layout.heater}.mode"
    seq = Sequence(
        (
            Trace("t_base", max(2, int(params.baseline_s / params.interval_s)), params.interval_s, reads("base")),
            Set(mode_param, "open_loop"),
            Trace("t_heat", int(params.heat_s / params.interval_s) + 1, params.interval_s, reads("heat")),
            Set(mode_param, "off"),
            Trace("t_cool", int(params.cool_s / params.cool_interval_s) + 1, params.cool_interval_s, reads("cool")),
        )
    )
    meta = {"mode": str(mode), "parameters": asdict(params), "heater_current_A": current}
    return run(ctx, NAME, seq, meta)


# ----------------------------------------------------------------------- fit
def dilution_settling(t: np.ndarray, T_inf: float, T0: float, tau: float) -> np.ndarray:
    """Exact MC temperature after a power step at t=0 for ``C dT/dt = P - a (T^2 - T_inf^2)``."""
    u = (T0 - T_inf) / (T0 + T_inf) * np.exp(-t / tau)
    return T_inf * (1 + u) / (1 - u)


def fit_dilution(t: np.ndarray, T: np.ndarray) -> FitResult:
    """Fit ``T_inf``, ``T0``, ``tau`` with relative thermometer errors (scaled by the residuals)."""
    t, T = np.asarray(t, float), np.asarray(T, float)
    tail = max(3, t.size // 10)
    T_inf0, T00 = float(np.mean(T[-tail:])), float(T[0])
    dist = np.abs(T - T_inf0)
    below = np.nonzero(dist <= dist[0] / np.e)[0]
    tau0 = float(t[below[0]] - t[0]) if below.size and below[0] > 0 else float(np.ptp(t)) / 3
    def log_model(tt: np.ndarray, T_inf: float, T0: float, tau: float) -> np.ndarray:
        return np.log(dilution_settling(tt, T_inf, T0, tau))

    return fit_curve(
        log_model, t - t[0], np.log(T), [T_inf0, T00, max(tau0, 1e-3)],
        sigma=None, names=("T_inf", "T0", "tau"),
        bounds=([1e-5, 1e-5, 1e-3], [10.0, 10.0, 1e6]), model_name="dilution_settling",
    ) if t.size > 3 else FitResult.failed("dilution_settling", "too few points")


def _lag_exact(grid_drive: np.ndarray, step: float, tau: float, start: float) -> np.ndarray:
    """Lag of a piecewise-linear drive sampled every ``step``: exact recursion."""
    a = math.exp(-step / tau)
    c = tau / step * (1 - a)  # weight of the slope term
    out = np.empty_like(grid_drive)
    out[0] = start
    for k in range(1, grid_drive.size):
        d0, d1 = grid_drive[k - 1], grid_drive[k]
        out[k] = a * out[k - 1] + (1 - a) * d0 + (d1 - d0) * (1 - c)
    return out


def fit_chip(t: np.ndarray, T_chip: np.ndarray, mc_model) -> FitResult:  # noqa: ANN001
    """Fit ``tau_chip`` and the chip's starting temperature against the fitted MC curve."""
    t = np.asarray(t, float)

    def model(tt: np.ndarray, tau: float, start: float) -> np.ndarray:
        step = min(tau / 10, 1.0)
        grid = np.arange(0.0, tt.max() + 2 * step, step)
        return np.log(np.interp(tt, grid, _lag_exact(mc_model(grid), step, tau, start)))

    t0 = t - t[0]
    return fit_curve(
        model, t0, np.log(np.asarray(T_chip, float)), [30.0, float(T_chip[0])], names=("tau", "T_start"),
        bounds=([1e-2, 1e-5], [1e5, 10.0]), model_name="chip_lag",
    )


@dataclass
class CryostatResult:
    heat: FitResult
    cool: FitResult
    chip_heat: FitResult | None
    chip_cool: FitResult | None
    current_A: float
    baseline_K: float
    baseline_err_K: float
    derived: FitResult

    @property
    def ok(self) -> bool:
        return self.derived.success


def fit(dataset: xr.Dataset, params: Parameters | None = None) -> CryostatResult:
    """Fit a stored cryostat run (pure)."""
    base = dataset["T_mc_base"].values.astype(float)
    baseline, baseline_err = float(base.mean()), float(base.std(ddof=1) / math.sqrt(base.size))
    if "t_heat" not in dataset.dims:  # a check run: baseline only
        empty = FitResult.failed("dilution_settling", "baseline only")
        derived = FitResult("cryostat", {"mc_base_K": baseline}, {"mc_base_K": baseline_err})
        return CryostatResult(empty, empty, None, None, 0.0, baseline, baseline_err, derived)
    current = float(dataset.attrs.get("heater_current_A", math.nan))
    t_heat, t_cool = dataset["t_heat"].values, dataset["t_cool"].values
    heat = fit_dilution(t_heat, dataset["T_mc_heat"].values)
    cool = fit_dilution(t_cool, dataset["T_mc_cool"].values)
    chip_heat = chip_cool = None
    if "T_chip_heat" in dataset and heat.success:
        chip_heat = fit_chip(t_heat, dataset["T_chip_heat"].values, lambda g: dilution_settling(g, heat["T_inf"], heat["T0"], heat["tau"]))
    if "T_chip_cool" in dataset and cool.success:
        chip_cool = fit_chip(t_cool, dataset["T_chip_cool"].values, lambda g: dilution_settling(g, cool["T_inf"], cool["T0"], cool["tau"]))
    if not (heat.success and cool.success):
        why = heat.message if not heat.success else cool.message
        derived = FitResult.failed("cryostat", f"settling fit failed: {why}")
        return CryostatResult(heat, cool, chip_heat, chip_cool, current, baseline, baseline_err, derived)
    tb, etb = cool["T_inf"], cool.error("T_inf")
    th, eth = heat["T_inf"], heat.error("T_inf")
    k = (th**2 - tb**2) / current**2
    ek = math.hypot(2 * th * eth, 2 * tb * etb) / current**2
    values = {"mc_base_K": tb, "mc_tau_base_s": cool["tau"], "heating_K2_per_A2": k, "mc_hot_K": th, "mc_tau_hot_s": heat["tau"]}
    errors = {"mc_base_K": etb, "mc_tau_base_s": cool.error("tau"), "heating_K2_per_A2": ek, "mc_hot_K": eth, "mc_tau_hot_s": heat.error("tau")}
    timing = (params or Parameters()).timing_uncertainty_s
    for name in ("mc_tau_base_s", "mc_tau_hot_s"):
        errors[name] = math.hypot(errors[name], timing)
    chips = [c for c in (chip_heat, chip_cool) if c is not None and c.success]
    if chips:  # inverse-variance mean of the two steps
        w = np.array([1 / c.error("tau") ** 2 for c in chips])
        values["chip_tau_s"] = float(np.sum(w * [c["tau"] for c in chips]) / w.sum())
        errors["chip_tau_s"] = math.hypot(float(1 / math.sqrt(w.sum())), timing)
    derived = FitResult("cryostat", values, errors, chi2_reduced=max(heat.chi2_reduced, cool.chi2_reduced))
    return CryostatResult(heat, cool, chip_heat, chip_cool, current, baseline, baseline_err, derived)


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


# -------------------------------------------------------------------- update
UNITS = {"mc_base_K": "K", "mc_tau_base_s": "s", "heating_K2_per_A2": "K^2/A^2", "mc_hot_K": "K", "mc_tau_hot_s": "s", "chip_tau_s": "s"}


def update(result: CryostatResult, params: Parameters | None = None) -> StateChange:
    change = StateChange()
    d = result.derived
    if not d.success:
        return change.fail(d.message)
    for name, value in d.values.items():
        change.set(f"cryostat.{name}", value, d.error(name), UNITS[name], note="dilution_settling")
    if "chip_tau_s" not in d.values:
        change.fail("no chip thermalization time: no chip thermometer or its fit failed")
    return change


def table(result: CryostatResult) -> str:
    d = result.derived
    if not d.success:
        return f"cryostat: FAILED ({d.message})"
    quality = FitQuality()
    lines = [f"{'quantity':<20} {'value':>24}"]
    for name, value in d.values.items():
        lines.append(f"{name:<20} {value:>12.5g} ± {d.error(name):<9.2g} {UNITS[name]}")
    for label, f in (("MC warm-up", result.heat), ("MC cool-down", result.cool), ("chip warm-up", result.chip_heat), ("chip cool-down", result.chip_cool)):
        if f is not None:
            lines.append(f"{label:<20} {quality.judge(label, f).spec.value} (chi2_red {f.chi2_reduced:.3g})")
    return "\n".join(lines)


def figures(result: CryostatResult, dataset: xr.Dataset | None = None) -> list[Any]:
    """Warm-up and cool-down of the mixing chamber and the chip with their fits and residuals.

    Fits are made on ln T with errors scaled by the residuals, so the residual panels
    show ``(ln T - model) / rms``: structure in them is a wrong model, not noise.
    """
    from labstack.calibrations import _figures as F

    if dataset is None or "t_heat" not in dataset.dims:
        return []
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
