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

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import xarray as xr
from scipy.signal import lfilter

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
from labstack.calibrations.fridge import (
    CALIBRATION_REL_10MK,
    HEATER_RANGES_A,
    LOOP_RANGE_MA,
    calibration_rel,
    closed_loop,
    fresh_read_steps,
    heater,
    output_index,
    scan_all,
    set_heater_current,
)
from labstack.fit import FitResult, fit_curve
from labstack.measure import Sequence, Set, Step, Trace

NAME = "cryostat"
DEPENDS_ON: tuple[str, ...] = ()
TIMEOUT_S = 24 * 3600.0

@dataclass
class Parameters:
    heater_range: str = "1mA"
    heater_percent: float = 35.0  # 0.35 mA: warms a 10 mK fridge to ~40 mK
    baseline_s: float = 50.0
    #: the warm-up's length: the mixing chamber's time constant at the hot end (tau at base
    #: 200-1500 s, shortening as 1 / T to a 30-55 mK plateau) is 25-700 s over the fridges
    #: of the realistic range, so 600 s is one of them on the slowest and twenty on the
    #: fastest; the fit's values came out as good as after 1500 s (seeds 1-30: same pulls
    #: and errors) for 15 min less fridge time
    heat_s: float = 600.0
    #: the cool-down lasts ``cool_taus`` time constants at base as the warm-up predicts them
    #: (a fridge's heat capacity and cooling power vary), at least ``cool_min_s``;
    #: ``cool_s`` when the warm-up predicts none, and first of all under a closed loop
    #: (a Triton's set-point warm-up predicts nothing: its cool-down is traced on after it)
    cool_taus: float = 3.5
    cool_min_s: float = 600.0
    cool_s: float = 3000.0
    interval_s: float = 5.0
    cool_interval_s: float = 20.0
    #: cheap check: a baseline only (base temperature still where it was?). Three readings
    #: of the mixing chamber, a scanner pause apart: their mean is good to ~10 uK against a
    #: 1 mK tolerance (a bridge reads to 0.05-0.2 %), three the fewest whose scatter gives
    #: an error; each costs the fridge the scanner's pause (five readings of both
    #: thermometers were 35 s of every maintain pass, three of both 21 s, now 10.5 s)
    check_points: int = 3
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
    if layout.thermometer_chip and mode is not Mode.CHECK:
        # a check judges the mixing chamber's base alone: the chip's scanner pause is not paid
        thermometers["T_chip"] = layout.thermometer_chip
    offsets: dict[str, float] = {}  # when, after its repetition starts, each reading is taken

    def reads(phase: str) -> list[Step]:
        steps: list[Step] = []
        elapsed = 0.0
        for name, p in thermometers.items():
            more, wait = fresh_read_steps(ctx, p, f"{name}_{phase}")
            steps += more
            elapsed += wait
            offsets[name] = elapsed
        return steps

    channel = heater(ctx)
    set_heater_current(ctx, 0.0)
    base_steps = reads("base")
    # a check's one thermometer is never switched away from: each reading waits its scanner
    # pause (a fresh reading) and nothing else (10.5 s a check instead of 13.5)
    pause = offsets[list(thermometers)[-1]]
    interval = pause if mode is Mode.CHECK else max(params.interval_s, pause)
    cool_interval = max(params.cool_interval_s, interval)
    if mode is Mode.CHECK:
        seq = Sequence((Trace("t_base", params.check_points, interval, base_steps),))
        try:
            return run(ctx, NAME, seq, {"mode": str(mode), "parameters": asdict(params), "read_offset_s": offsets})
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
        tau = predicted_tau_base(first)
        cool_s = max(params.cool_min_s, params.cool_taus * tau) if tau > 0 else params.cool_s
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


def _phase(dataset: xr.Dataset, phase: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(reading times, readings) of ``name`` in a trace ``phase``, its continuation
    (``cool2``, a closed-loop cool-down traced on) appended."""
    times, values = [], []
    for part in (phase, f"{phase}2"):
        if f"{name}_{part}" in dataset:
            times.append(_reading_times(dataset, part, name))
            values.append(dataset[f"{name}_{part}"].values.astype(float))
    if not times:
        return np.array([]), np.array([])
    return np.concatenate(times), np.concatenate(values)


def predicted_tau_base(warm: xr.Dataset) -> float:
    """The mixing chamber's time constant at base, from the warm-up alone: ``tau`` scales as
    ``1 / T`` (:meth:`C / (2 a T)`), so ``tau_base = tau_hot T_hot / T_base``."""
    t = _reading_times(warm, "heat", "T_mc")
    hot = fit_dilution(t, warm["T_mc_heat"].values.astype(float))
    base = float(warm["T_mc_base"].values.astype(float).mean())
    if not hot.success or base <= 0:
        return 0.0
    return float(hot["tau"] * hot["T_inf"] / base)


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
    """Lag of a piecewise-linear drive sampled every ``step``: exact recursion.

    ``out[k] = a out[k-1] + (1 - a) d[k-1] + (d[k] - d[k-1]) (1 - c)``, run as a
    first-order IIR filter (scipy's ``lfilter``): the same numbers as the loop, in C.
    The loop in Python cost a second per model evaluation once a fit tried a lag
    of 10 ms (a 10^6-point grid): a served chip's cryostat fit ran for minutes.
    """
    a = math.exp(-step / tau)
    c = tau / step * (1 - a)  # weight of the slope term
    d = np.asarray(grid_drive, float)
    out = np.empty_like(d)
    out[0] = start
    if d.size > 1:
        drive = (1 - a) * d[:-1] + (d[1:] - d[:-1]) * (1 - c)
        out[1:] = lfilter([1.0], [1.0, -a], drive, zi=[a * start])[0]
    return out


def lag_guess(t: np.ndarray, T_chip: np.ndarray, mc_model) -> float:  # noqa: ANN001
    """A starting chip lag from the data: the delay at which the chip reaches the MC curve's
    halfway point after it (the delay of a first-order lag is its time constant)."""
    grid = np.linspace(0.0, float(t.max()), 2000)
    mc = mc_model(grid)
    half = 0.5 * (mc[0] + mc[-1])
    rising = mc[-1] > mc[0]
    t_mc = grid[int(np.argmax(mc >= half if rising else mc <= half))]
    crossed = (T_chip >= half) if rising else (T_chip <= half)
    if not crossed.any():
        return float(np.ptp(t)) / 10
    return float(max(t[int(np.argmax(crossed))] - t_mc, 1.0))


def fit_chip(t: np.ndarray, T_chip: np.ndarray, mc_model) -> FitResult:  # noqa: ANN001
    """Fit ``tau_chip``, the chip's temperature at the MC curve's origin and the two sensors'
    calibration difference ``d`` against the fitted MC curve (``t`` from that origin)."""
    t = np.asarray(t, float)

    def model(tt: np.ndarray, tau: float, start: float, d: float) -> np.ndarray:
        # the recursion is exact for any step; the grid only has to follow the MC curve
        # (minutes), so it never needs more than ~20 000 points however short the lag
        step = max(min(tau / 10, 1.0), float(tt.max()) / 20000)
        grid = np.arange(0.0, tt.max() + 2 * step, step)
        lagged = np.interp(tt, grid, _lag_exact(mc_model(grid), step, tau, start))
        return np.log(lagged) + np.log1p(d * np.sqrt(0.010 / lagged))

    guess = lag_guess(t, np.asarray(T_chip, float), mc_model)
    return fit_curve(
        model, t, np.log(np.asarray(T_chip, float)), [guess, float(T_chip[0]), 0.0], names=("tau", "T_start", "d"),
        bounds=([1e-2, 1e-5, -0.5], [1e5, 10.0, 0.5]), model_name="chip_lag",
    )


def _shifted(T: np.ndarray, rel_10mK: float, sign: float) -> np.ndarray:
    """Readings moved by ``sign`` sigma of the calibration curve's error model."""
    return np.asarray(T, float) / (1 + sign * calibration_rel(T, rel_10mK))


def calibration_spread(fit_one, T: np.ndarray, names: tuple[str, ...], rel_10mK: float) -> dict[str, float]:  # noqa: ANN001
    """Half the spread of each fitted value when the readings move by +-1 sigma of the curve's error."""
    out = {name: 0.0 for name in names}
    fits = [fit_one(_shifted(T, rel_10mK, s)) for s in (-1.0, 1.0)]
    if all(f.success for f in fits):
        for name in names:
            out[name] = 0.5 * abs(fits[1][name] - fits[0][name])
    return out


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


def _reading_times(dataset: xr.Dataset, phase: str, name: str) -> np.ndarray:
    """Lab time (s since the run began) of each reading of ``name`` in a trace ``phase``."""
    offsets = dataset.attrs.get("read_offset_s", "{}")
    offsets = json.loads(offsets) if isinstance(offsets, str) else dict(offsets)
    clock = f"t_{phase}_clock"
    start = dataset[clock].values if clock in dataset else dataset[f"t_{phase}"].values
    return np.asarray(start, float) + float(offsets.get(name, 0.0))


def fit(dataset: xr.Dataset, params: Parameters | None = None) -> CryostatResult:
    """Fit a stored cryostat run (pure)."""
    params = params or Parameters()
    rel = params.calibration_rel_10mK
    base = dataset["T_mc_base"].values.astype(float)
    baseline = float(base.mean())
    baseline_err = math.hypot(float(base.std(ddof=1) / math.sqrt(base.size)), float(calibration_rel(baseline, rel)) * baseline)
    if "t_heat" not in dataset.dims:  # a check run: baseline only
        empty = FitResult.failed("dilution_settling", "baseline only")
        derived = FitResult("cryostat", {"mc_base_K": baseline}, {"mc_base_K": baseline_err})
        return CryostatResult(empty, empty, None, None, 0.0, baseline, baseline_err, derived)
    current = float(dataset.attrs.get("heater_current_A", math.nan))
    closed = dataset.attrs.get("control") == "closed_loop"
    t_heat, T_heat = _phase(dataset, "heat", "T_mc")
    t_cool, T_cool = _phase(dataset, "cool", "T_mc")
    heat = (
        FitResult.failed("dilution_settling", "closed loop: the controller held the set-point (no free warm-up)")
        if closed else fit_dilution(t_heat, T_heat)
    )
    cool = fit_dilution(t_cool, T_cool)
    chip_heat = chip_cool = None
    sys_err: dict[str, float] = {}
    if heat.success:
        sys_err["mc_tau_hot_s"] = calibration_spread(lambda T: fit_dilution(t_heat, T), T_heat, ("tau",), rel)["tau"]
    if cool.success:  # the calibration curve's error, through the time constants
        sys_err["mc_tau_base_s"] = calibration_spread(lambda T: fit_dilution(t_cool, T), T_cool, ("tau",), rel)["tau"]
    for phase, mc_fit, t_mc in (("heat", heat, t_heat), ("cool", cool, t_cool)):
        if f"T_chip_{phase}" not in dataset or not mc_fit.success:
            continue
        t_chip, T_chip = _phase(dataset, phase, "T_chip")
        t_chip = t_chip - t_mc[0]

        def mc_model(g: np.ndarray, f: FitResult = mc_fit) -> np.ndarray:
            return dilution_settling(g, f["T_inf"], f["T0"], f["tau"])

        chip = fit_chip(t_chip, T_chip, mc_model)
        if chip.success:
            spread = calibration_spread(lambda T, tc=t_chip, m=mc_model: fit_chip(tc, T, m), T_chip, ("tau",), rel)
            chip.stderr["tau"] = math.hypot(chip.error("tau"), spread["tau"])
        if phase == "heat":
            chip_heat = chip
        else:
            chip_cool = chip
    if not ((heat.success or closed) and cool.success):
        why = heat.message if not heat.success else cool.message
        derived = FitResult.failed("cryostat", f"settling fit failed: {why}")
        return CryostatResult(heat, cool, chip_heat, chip_cool, current, baseline, baseline_err, derived)
    if closed:
        values, errors = _closed_loop_values(cool, T_heat, rel, sys_err)
    else:
        values, errors = _open_loop_values(heat, cool, current, rel, sys_err)
    timing = params.timing_uncertainty_s
    for name in ("mc_tau_base_s", "mc_tau_hot_s"):
        if name in errors:
            errors[name] = math.hypot(errors[name], timing)
    chips = [c for c in (chip_heat, chip_cool) if c is not None and c.success]
    if chips:  # inverse-variance mean of the two steps
        w = np.array([1 / c.error("tau") ** 2 for c in chips])
        values["chip_tau_s"] = float(np.sum(w * [c["tau"] for c in chips]) / w.sum())
        errors["chip_tau_s"] = math.hypot(float(1 / math.sqrt(w.sum())), timing)
    chi2 = cool.chi2_reduced if closed else max(heat.chi2_reduced, cool.chi2_reduced)
    derived = FitResult("cryostat", values, errors, chi2_reduced=chi2)
    return CryostatResult(heat, cool, chip_heat, chip_cool, current, baseline, baseline_err, derived)


def _closed_loop_values(
    cool: FitResult, T_heat: np.ndarray, rel: float, sys_err: dict[str, float]
) -> tuple[dict[str, float], dict[str, float]]:
    """Base and its time constant from the free cool-down; the held temperature from the
    last third of the hold (the loop has settled by then)."""
    tb, etb = cool["T_inf"], cool.error("T_inf")
    hold = T_heat[-max(3, T_heat.size // 3):]
    th = float(hold.mean())
    eth = float(hold.std(ddof=1) / math.sqrt(hold.size))
    values = {"mc_base_K": tb, "mc_tau_base_s": cool["tau"], "mc_hot_K": th}
    errors = {
        "mc_base_K": math.hypot(etb, float(calibration_rel(tb, rel)) * tb),
        "mc_tau_base_s": math.hypot(cool.error("tau"), sys_err.get("mc_tau_base_s", 0.0)),
        "mc_hot_K": math.hypot(eth, float(calibration_rel(th, rel)) * th),
    }
    return values, errors


def _open_loop_values(
    heat: FitResult, cool: FitResult, current: float, rel: float, sys_err: dict[str, float]
) -> tuple[dict[str, float], dict[str, float]]:
    """Base, hot temperature, both time constants and the heating coefficient of an open-loop step."""
    tb, etb = cool["T_inf"], cool.error("T_inf")
    th, eth = heat["T_inf"], heat.error("T_inf")
    k = (th**2 - tb**2) / current**2
    ek = math.hypot(2 * th * eth, 2 * tb * etb) / current**2
    # one sensor's curve error e moves both temperatures by e sqrt(10 mK / T): the same e
    s_b, s_h = float(calibration_rel(tb, rel)), float(calibration_rel(th, rel))
    ek_cal = 2 * abs(th**2 * s_h - tb**2 * s_b) / current**2
    values = {"mc_base_K": tb, "mc_tau_base_s": cool["tau"], "heating_K2_per_A2": k, "mc_hot_K": th, "mc_tau_hot_s": heat["tau"]}
    errors = {
        "mc_base_K": math.hypot(etb, s_b * tb),
        "mc_tau_base_s": math.hypot(cool.error("tau"), sys_err.get("mc_tau_base_s", 0.0)),
        "heating_K2_per_A2": math.hypot(ek, ek_cal),
        "mc_hot_K": math.hypot(eth, s_h * th),
        "mc_tau_hot_s": math.hypot(heat.error("tau"), sys_err.get("mc_tau_hot_s", 0.0)),
    }
    return values, errors


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
