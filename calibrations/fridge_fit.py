"""Fits of a fridge's thermometer traces: the cryostat node's model, shared with the ladder.

Not a node: the cryostat node fits its own heater step with these, and the
effective-temperature node fits the shared ladder's warm-up and cool-down (which is
the cryostat's heater step, taken once for every node that needs temperatures) with
the same functions, so the two give the same ``cryostat.*`` values. The model and its
errors are described in :mod:`labstack.calibrations.cryostat`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import xarray as xr

from labstack.calibrate import StateChange
from labstack.calibrations.fridge import CALIBRATION_REL_10MK, calibration_rel
from labstack.fit import FitResult, fit_curve


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
    """Lag of a piecewise-linear drive sampled every ``step``: exact recursion."""
    a = math.exp(-step / tau)
    c = tau / step * (1 - a)  # weight of the slope term
    out = np.empty_like(grid_drive)
    out[0] = start
    for k in range(1, grid_drive.size):
        d0, d1 = grid_drive[k - 1], grid_drive[k]
        out[k] = a * out[k - 1] + (1 - a) * d0 + (d1 - d0) * (1 - c)
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
        step = min(tau / 10, 1.0)
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


def fit_traces(dataset: xr.Dataset, rel: float = CALIBRATION_REL_10MK, timing: float = 0.5) -> CryostatResult:
    """Fit thermometer traces in the cryostat node's format (pure): ``rel`` the sensors'
    calibration-curve error at 10 mK, ``timing`` how well a reading's time stamp is known (s)."""
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


UNITS = {"mc_base_K": "K", "mc_tau_base_s": "s", "heating_K2_per_A2": "K^2/A^2", "mc_hot_K": "K", "mc_tau_hot_s": "s", "chip_tau_s": "s"}


def update(result: CryostatResult) -> StateChange:
    """State entries ``cryostat.*`` from a fit of the traces."""
    change = StateChange()
    d = result.derived
    if not d.success:
        return change.fail(d.message)
    for name, value in d.values.items():
        change.set(f"cryostat.{name}", value, d.error(name), UNITS[name], note="dilution_settling")
    if "chip_tau_s" not in d.values and "mc_tau_base_s" in d.values:
        change.fail("no chip thermalization time: no chip thermometer or its fit failed")
    return change
