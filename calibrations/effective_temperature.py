"""Effective temperature: S-curve widths vs chip temperature -> gains alpha_i, noise floor T_x, exponent n.

An isolated cell's S-curve has logistic width ``w = T_eff / (2 alpha)`` with
``T_eff = (T_chip^n + T_x^n)^(1/n)``. How the excess noise combines with the
chip's temperature (``n``: 2 for noises that add in quadrature, 5 for electrons
heated against phonons) is a property of the chip, measured here, not assumed.
Widths measured at a few chip temperatures (the cryostat node's calibrated
heater holds each one) fix every cell's gain ``alpha_i``, the excess-noise floor
``T_x`` and ``n``, all cells sharing the last two, in one joint weighted fit. ``n``
shows only where ``T_chip`` is near ``T_x``, so the default temperatures put two
plateaus in 25-35 mK; the fit starts ``n`` from the best of a grid, not from a
value assumed. The chip thermometer's calibration-curve error (its certificate's,
:data:`~labstack.calibrations.fridge.CALIBRATION_REL_10MK`) scales every
temperature the fit sees, and no width can tell it from the gains: the fit is
repeated with the readings moved by one sigma of it, and half the spread is added
to each error.

Each temperature's S-curves are measured on per-cell grids centred on the
calibrated ``V0_i`` and scaled by the width expected there. The expected width
comes from the previous temperature: ``T_eff`` grows by a factor between 1
(``T_x`` dominates) and ``T / T_prev`` (``T_x`` negligible), and the grid uses the
geometric mean, so it is never more than ``sqrt(T / T_prev)`` off.

Couplers idle at their zero-coupling voltage, but before the coupler node has
found it a small residual coupling would make neighbours that cross their
switching points together sharpen (or blunt) each other's curves by ``~J / T_eff``
(a few per cent). So the chip is measured colour class by colour class: while one
class is swept, its neighbours are parked ``park_widths`` widths below their
offsets, frozen, and shift the measured cells' offsets only.

A DAC neighbour swept in the same class changes the step a cell's field sees, so each
S-curve is fitted against the effective bias, its line plus ``C_ij`` of the lines that
moved with it (the crosstalk node's matrix). Only entries several standard errors from
zero are applied, each with its error carried into the gain's: an entry consistent with
zero is zero on a sparse board, and applying its noise biased every gain by about its
own error, unstated (:data:`SIGNIFICANT_CROSSTALK`).

On the way down from the last plateau the node takes the thermalization node's warm
switching points (:func:`descend`; that node's docstring says why), so the fridge warms
and cools once for both.

Samples are taken 2 ms apart (``sample_rate_Hz`` = 500 Hz), longer than the slowest
cell's correlation time at base (a millisecond at most on a chip of the realistic range,
shorter on every warmer plateau), so each is a near-independent draw; the binomial
errors still use the lag-1 autocorrelation (:func:`labstack.fit.two_level.effective_count`).
At 50 Hz the sampling alone took 12 of the node's 77 min of fridge time on the default
chip, for the same number of independent samples.
Each S-curve is fitted exactly as the bias S-curve node fits its own
(:func:`labstack.fit.scurve.fit_scurve`), so the widths mean the same thing. With
lock-in readout each point is the cell's time-averaged level (:mod:`._lockin`),
fitted by :func:`labstack.fit.fit_mean_scurve`, as the bias S-curve node does then.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import xarray as xr
from scipy import optimize

from labstack.calibrate import (
    RELATIVE,
    CalibrationState,
    Context,
    Mode,
    Spec,
    StateChange,
    Tolerance,
    Uses,
    Verdict,
    combine,
    family_n_sigma,
)
from labstack.calibrations import _lockin, switching
from labstack.calibrations._common import (
    cell_values,
    idle_couplers,
    line_limits,
    run,
    sample_cells,
    settle_time,
    two_colouring,
)
from labstack.calibrations.fridge import (
    CALIBRATION_REL_10MK,
    calibration_rel,
    chip_temperature,
    cool_down,
    heat_to,
    heater_is_off,
    plateaus,
)
from labstack.data import values_in
from labstack.fit import FitResult, fit_mean_scurve, fit_scurve
from labstack.measure import Sweep

NAME = "effective_temperature"
READOUT_KINDS = ("sampler", "lockin")
# crosstalk: a DAC neighbour that moves with a cell changes the step its field sees
DEPENDS_ON: tuple[str, ...] = ("bias_scurve", "cryostat", "bias_settling", "crosstalk")
#: with lock-in readout every point waits a whole filter window (:mod:`._lockin`, seconds),
#: far beyond any line's settling, and bias_settling and crosstalk (single shots) cannot
#: run: no need of them
DEPENDS_ON_BY_READOUT: dict[str, tuple[str, ...]] = {"lockin": ("bias_scurve", "cryostat")}
TIMEOUT_S = 24 * 3600.0
FIXED_POINT = "bias_loop"
CARRIED = True
#: a per-cell S-curve recalibration within these leaves the widths this node measures as they
#: were (labstack.calibrate.consumes): it fits each cell's width from its own sweeps, and
#: reads the S-curve only to place them
CONSUMES = {
    "bias_scurve": (
        Uses("cells.*.bias_offset_V", within=0.25, per="scurve_width_V",
             why="each grid is centred on V0 and spans +-3.5 widths: a quarter width off, the "
                 "curve's informative +-2.5 widths still lie inside it"),
        Uses("cells.*.scurve_width_V", within=0.25, per=RELATIVE,
             why="the width only scales the grid: 25 % more or less spans +-2.8 to +-4.4 true "
                 "widths, still around the whole curve"),
    ),
}




@dataclass
class Parameters:
    #: chip temperatures (K); 0 means base (heater off)
    temperatures_K: tuple[float, ...] = (0.0, 0.025, 0.035, 0.05, 0.08)
    n_points: int = 9
    span_widths: float = 3.5
    n_samples: int = 400
    #: independent draws at 2 ms (module docstring): repeated recalibrations of a family
    #: chain gave alpha pulls of rms 0.86 at 500 Hz and 1.20 at 50 Hz (4 runs each)
    sample_rate_Hz: float = 500.0
    #: shaped heater steps up to each plateau (fridge.heat_to): the same plateaus in less fridge time
    boost_heater: bool = True
    #: the chip's time constants waited at each plateau, after the mixing chamber's: 3 leave
    #: it a few tenths of a per cent of the step off (less than the thermometer's own
    #: calibration error), and the chip thermometer is read right before each acquisition.
    #: 5 had been kept while the noise floor's pulls over the 20-chip family came out small
    #: (rms 0.68 with 3); with 5 they came out 0.59 and 0.60 (19 chips), so the wait was not
    #: the cause. Their parts, measured against the truth: the thermometer's share moves T_x
    #: exactly as the refit spread says; the statistical share, fitted at the true
    #: temperatures, has pulls rms 0.77 (mean -0.35) on 19 chips. With 3, on the fresh
    #: family (seeds 901-919, chips never tuned for) the pulls came out rms 0.89 and every
    #: other criterion held
    chip_settle_taus: float = 3.0
    #: the mixing chamber's time constants a plateau is held for (fridge.heat_to): after a
    #: shaped step, 3 leave none beyond the chip's settling, as the thermalization node's
    #: plateaus (switching.Settings.settle_taus). What the shaped step leaves (the model's
    #: error, a few per cent of the step) decays with the time constant at the plateau,
    #: 75-700 s, while a plateau's S-curves take ~20 s between two readings of the chip
    #: thermometer whose mean is the temperature fitted: the drift within them is a few
    #: tenths of a per cent of the step, linear, and that mean follows it. 5 (two time
    #: constants at each plateau) cost a 16-cell chain 20 of the node's 82 min of fridge time
    mc_settle_taus: float = 3.0
    settle_s: float = 0.05
    park_widths: float = 10.0
    #: on the way down from the last plateau, stop at the thermalization node's warm
    #: plateaus and take its switching points there (:func:`descend`): the fridge then
    #: warms and cools once for both nodes instead of twice
    switching_points: bool = True
    #: 1-sigma calibration-curve error of the chip thermometer at 10 mK (its certificate)
    calibration_rel_10mK: float = CALIBRATION_REL_10MK
    #: cheap check: base temperature only, fewer samples
    check_samples: int = 200
    #: a check samples faster: only at base, against values this node measured, and the
    #: per-point shares of the S-curve fits (labstack.fit.fit_scurve) follow the readout's
    #: offset wander over the shorter points; the maintenance pass costs the fridge less.
    #: Not raised to the correlation times' rate as the S-curve check's is: on a 64-cell
    #: chip (seed 7) after a week, a check at 10 kHz read one cell's width 17 % (4 sigma)
    #: below its prediction and the node recalibrated (48 min of fridge time); at 1 kHz it
    #: passed, as did 24 checks at either rate straight after calibration. 1.6 s a pass
    #: is not worth that risk until the cause is known
    check_rate_Hz: float = 1000.0
    #: a cell is out of spec when its base width moved by more than this fraction
    tolerance_rel: float = 0.05
    limits_V: tuple[float, float] = (-1.5, 1.5)
    #: how a lock-in readout is driven (used only when the readout role is lock-ins)
    lockin: _lockin.LockinSettings = field(default_factory=_lockin.LockinSettings)


# ------------------------------------------------------------------- acquire
def acquire(ctx: Context, params: Parameters, mode: Mode = Mode.CALIBRATE) -> xr.Dataset:
    """S-curves of every healthy cell at each temperature, colour class by colour class."""
    layout = ctx.station.layout
    n = layout.n_cells
    v0 = cell_values(ctx, n, "bias_offset_V")
    width = cell_values(ctx, n, "scurve_width_V")
    good = np.isfinite(v0) & np.isfinite(width)
    if not good.any():
        raise RuntimeError("no cell has a calibrated S-curve to centre on")
    thresholds = cell_values(ctx, n, "readout_threshold_V", 0.0)
    colour = two_colouring(n, layout.coupler_pairs)
    lockin = _lockin.is_lockin(layout)
    line_low, line_high = line_limits(ctx, layout.bias, params.limits_V)
    settings = _lockin.as_settings(params.lockin)
    if lockin:
        n_reads = settings.reads
        idle_couplers(ctx, layout)
        high = {b: top * 0.6 for b, top in zip(layout.bias, line_high, strict=True)}
        chain = _lockin.prepare(ctx, settings, high, {b: -v for b, v in high.items()})
    else:
        read = (sample_cells(ctx.station, layout, params.sample_rate_Hz, params.n_samples) if mode is Mode.CALIBRATE
                else sample_cells(ctx.station, layout, params.check_rate_Hz, params.check_samples))
        n_reads = int(ctx.station.components[layout.readout].n_samples())
        idle_couplers(ctx, layout)
    temps = params.temperatures_K if mode is Mode.CALIBRATE else (0.0,)
    k = np.linspace(-params.span_widths, params.span_widths, params.n_points)
    # cells without an S-curve (flagged) are parked and gridded at the chip's median width:
    # a number from this chip's data, not a design value
    w_pred = np.where(good, width, float(np.median(width[good])))
    t_prev: float | None = None
    blocks, run_ids = [], []
    down = params.switching_points and mode is Mode.CALIBRATE and not lockin and len(temps) > 1
    for t_set in plateaus(ctx, temps, settle_taus=params.mc_settle_taus, boost=params.boost_heater,
                         chip_taus=params.chip_settle_taus, cool=not down):
        t_chip = chip_temperature(ctx)
        if t_prev is not None:
            w_pred = w_pred * math.sqrt(max(t_chip / t_prev, 1.0))
        grids = np.clip(v0[:, None] + w_pred[:, None] * k[None, :], line_low[:, None], line_high[:, None])
        samples = np.zeros((n, params.n_points, n_reads), dtype=np.float64 if lockin else np.float32)
        for c in np.unique(colour):
            active = good & (colour == c)
            if not active.any():
                continue
            parked = np.clip(v0 - params.park_widths * w_pred, line_low, line_high)
            setpoints = {}
            for i, name in enumerate(layout.bias):
                if active[i]:
                    setpoints[name] = grids[i]
                else:
                    setpoints[name] = np.full(params.n_points, parked[i] if good[i] else 0.0)
            meta = {"mode": str(mode), "parameters": asdict(params), "t_set_K": t_set, "colour": int(c)}
            if lockin:
                ds = _lockin.sweep(ctx, settings, setpoints, np.arange(params.n_points), "point", run, NAME, meta, chain)
                run_ids.append(ds.attrs["run_id"])
                samples[active] = values_in(ds["level"], "cell", "point", "read")[active]
                continue
            seq = Sweep(
                "point",
                setpoints,
                body=[read],
                settle=settle_time(ctx, params.settle_s),
                coord=np.arange(params.n_points),
            )
            ds = run(ctx, NAME, seq, meta)
            run_ids.append(ds.attrs["run_id"])
            data = values_in(ds["samples"], "cell", "point", "sample")
            samples[active] = data[active]
        # a check is a few seconds at base: its one reading stands for the whole of it
        t_after = chip_temperature(ctx) if mode is Mode.CALIBRATE else t_chip
        blocks.append((0.5 * (t_chip + t_after), grids, samples))
        # widths at this temperature predict the next grid
        for i in np.flatnonzero(good):
            r = _fit_cell(grids[i], samples[i], i, lockin)
            if r.ok:
                w_pred[i] = r.fit["width_V"]
        t_prev = t_chip
    crosstalk, crosstalk_err = _crosstalk(ctx, n)
    dataset = xr.Dataset(
        {
            ("level" if lockin else "samples"): (
                ("temperature", "cell", "point", "read" if lockin else "sample"),
                np.stack([b[2] for b in blocks]),
            ),
            "bias": (("temperature", "cell", "point"), np.stack([b[1] for b in blocks]), {"units": "V"}),
            "T_chip": (("temperature",), np.array([b[0] for b in blocks]), {"units": "K"}),
            "threshold": (("cell",), thresholds, {"units": "V"}),
            "measured": (("cell",), good),
            "colour": (("cell",), colour),
            "crosstalk": (("cell", "line"), crosstalk, {"units": "V/V"}),
            "crosstalk_err": (("cell", "line"), crosstalk_err, {"units": "V/V"}),
        },
        attrs={"run_id": "+".join(run_ids), "calibration": NAME},
    )
    if not down:
        return dataset
    if not heater_is_off(ctx):
        dataset = descend(ctx, params, dataset)
        cool_down(ctx)
    return dataset


def descend(ctx: Context, params: Parameters, dataset: xr.Dataset) -> xr.Dataset:
    """From the last plateau, dive to each of the thermalization node's warm plateaus (highest
    first) and take its switching points there; ``dataset`` with them added.

    The plateaus are the chip temperatures whose ``T_eff`` is the thermalization node's
    steps times the base value, from this very acquisition's fit (which the engine repeats
    on the stored run). Points are at each cell's ``V0`` (:mod:`.switching`, with its
    default :class:`~labstack.calibrations.switching.Settings`, which the thermalization
    node checks against its own parameters before using them). Each dive costs a fraction
    of a cool-down and the chip's settling, where a separate heat-and-cool cycle cost a
    whole cool-down more. Nothing is added when the fit fails.
    """
    result = fit(dataset, params)
    if not result.ok:
        return dataset
    layout = ctx.station.layout
    settings = switching.Settings()
    base = float(ctx.state.value("cryostat.mc_base_K"))
    steps = switching.plateau_temperatures(
        base, float(result.alpha["t_excess_K"]), float(result.alpha["t_eff_exponent"]), settings.t_eff_steps)
    temps = sorted((t for t in steps[1:] if np.isfinite(t) and t > base), reverse=True)
    if not temps:
        return dataset
    read, period, memory = switching.prepare(ctx, settings, settings.n_samples)
    v0 = cell_values(ctx, layout.n_cells, "bias_offset_V")
    good = np.isfinite(v0)
    idle_couplers(ctx, layout)
    points, run_ids = [], []
    for t_set in temps:
        heat_to(ctx, t_set, settle_taus=settings.settle_taus, boost=params.boost_heater)
        meta = {"mode": str(Mode.CALIBRATE), "t_set_K": t_set, "part": "switching points for thermalization"}
        taken, run_id = switching.measure(ctx, settings, read, memory, chip_temperature(ctx), (0.0,), v0,
                                          np.zeros(layout.n_cells), good, NAME, meta)
        points += taken
        run_ids.append(run_id)
    return dataset.assign(switching.warm_variables(points)).assign_attrs(
        switching_settings=json.dumps(settings.comparable()),
        switching_sample_period_s=period,
        switching_temperatures_K=[0.0, *sorted(temps)],
        switching_run_ids="+".join(run_ids),
        switching_utc=ctx.clock.utcnow().isoformat(),
    )


def _fit_cell(volts: np.ndarray, data: np.ndarray, cell: int, lockin: bool) -> Any:
    """One S-curve: single shots (sampler) or time-averaged levels (lock-in)."""
    return fit_mean_scurve(volts, data, cell=cell, baseline=False) if lockin else fit_scurve(volts, data, cell=cell)


# ----------------------------------------------------------------------- fit
@dataclass
class Result:
    widths: np.ndarray  # (temperature, cell) V, nan where the S-curve fit failed
    width_err: np.ndarray
    t_chip: np.ndarray
    alpha: FitResult  # values/stderr "alpha_<i>" and "t_excess_K"
    cells: list[int] = field(default_factory=list)
    flags: dict[int, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.alpha.success


def t_eff(t_chip: np.ndarray, t_x: float, n: float) -> np.ndarray:
    return (np.asarray(t_chip) ** n + t_x**n) ** (1 / n)


#: exponents and excess temperatures (relative to a first guess) the fit's start is
#: chosen among: a grid, not an assumption
EXPONENT_GRID = np.linspace(1.0, 8.0, 29)
T_X_GRID = np.geomspace(0.5, 2.0, 41)


def profile_start(
    t_chip: np.ndarray, w: np.ndarray, e: np.ndarray, m: np.ndarray, tx0: float
) -> tuple[float, float]:
    """(T_x, n) minimising chi2 over a grid, each cell's ``1 / (2 alpha)`` solved exactly.

    The width is linear in ``u_i = 1 / (2 alpha_i)``, ``w_ki = T_eff(T_k) u_i``, so at
    fixed ``(T_x, n)`` every ``u_i`` is a weighted mean and the chi2 is exact.
    """
    wt = np.where(m, 1.0 / np.where(m, e, 1.0) ** 2, 0.0)
    best = (np.inf, tx0, 2.0)
    for n in EXPONENT_GRID:
        for tx in tx0 * T_X_GRID:
            c = t_eff(t_chip, tx, n)[:, None]
            u = np.sum(wt * c * np.where(m, w, 0.0), axis=0) / np.sum(wt * c * c, axis=0)
            chi2 = float(np.sum(wt * (np.where(m, w, 0.0) - c * u) ** 2))
            if chi2 < best[0]:
                best = (chi2, float(tx), float(n))
    return best[1], best[2]


def fit_widths(
    t_chip: np.ndarray,
    widths: np.ndarray,
    errors: np.ndarray,
    n: float | None = None,
    start: FitResult | None = None,
) -> FitResult:
    """Joint weighted fit of ``w_ki = T_eff(T_k) / (2 alpha_i)`` over cells and temperatures.

    Parameters ``alpha_<i>`` per cell (columns of ``widths``), ``t_excess_K`` and, unless
    ``n`` is given, ``t_eff_exponent``; covariance from the Jacobian with the widths' own
    errors (absolute sigma). ``start``: a fit of the same data to start from (else a grid).
    """
    ok = np.isfinite(widths) & np.isfinite(errors) & (errors > 0)
    cols = np.flatnonzero(ok.sum(axis=0) >= 2)
    if cols.size == 0:
        return FitResult.failed("t_eff", "no cell has widths at two temperatures")
    w, e, m = widths[:, cols], errors[:, cols], ok[:, cols]
    free_n = n is None
    if free_n and len(np.unique(np.round(t_chip, 5))) < 3:
        return FitResult.failed("t_eff", "the exponent needs widths at three temperatures or more")
    hottest = int(np.argmax(t_chip))
    # start: alpha from the hottest point as if T_x = 0, T_x from the coldest
    a0 = np.where(m[hottest], t_chip[hottest] / (2 * np.where(m[hottest], w[hottest], 1.0)), 0.3)
    coldest = int(np.argmin(t_chip))
    tx0 = float(np.nanmedian(np.where(m[coldest], 2 * a0 * w[coldest], np.nan)))
    tx0 = max(tx0**2 - t_chip[coldest] ** 2, 1e-8) ** 0.5

    def resid_at(p: np.ndarray, exponent: float) -> np.ndarray:
        model = t_eff(t_chip, p[cols.size], exponent)[:, None] / (2 * p[None, : cols.size])
        return ((model - w) / e)[m]

    def resid(p: np.ndarray) -> np.ndarray:
        return resid_at(p, p[-1] if free_n else float(n))

    p0 = np.append(a0, tx0)
    if free_n and start is not None and start.success:
        p0 = np.array([start[f"alpha_{c}"] for c in cols] + [start["t_excess_K"], start["t_eff_exponent"]])
    elif free_n:  # the exponent's start: the best of a grid, alpha solved exactly at each point
        tx_start, n_start = profile_start(t_chip, w, e, m, tx0)
        c = t_eff(t_chip, tx_start, n_start)[:, None]
        wt = np.where(m, 1.0 / np.where(m, e, 1.0) ** 2, 0.0)
        u = np.sum(wt * c * np.where(m, w, 0.0), axis=0) / np.sum(wt * c * c, axis=0)
        p0 = np.concatenate([1.0 / (2 * u), [tx_start, n_start]])
    n_par = cols.size + 1 + free_n
    method = "lm" if m.sum() > n_par else "trf"
    sol = optimize.least_squares(resid, p0, x_scale="jac", method=method)
    if not sol.success and sol.status <= 0:
        return FitResult.failed("t_eff", f"no convergence: {sol.message}")
    dof = int(m.sum()) - n_par
    try:
        cov = np.linalg.inv(sol.jac.T @ sol.jac)
    except np.linalg.LinAlgError:
        return FitResult.failed("t_eff", "singular fit: temperatures too close together")
    err = np.sqrt(np.diag(cov))
    names = tuple(f"alpha_{c}" for c in cols) + ("t_excess_K",) + (("t_eff_exponent",) if free_n else ())
    chi2 = float(np.sum(sol.fun**2) / dof) if dof > 0 else math.nan
    values = {k: float(v) for k, v in zip(names, sol.x, strict=True)}
    values["t_excess_K"] = abs(values["t_excess_K"])
    stderr = {k: float(v) for k, v in zip(names, err, strict=True)}
    if not free_n:
        values["t_eff_exponent"], stderr["t_eff_exponent"] = float(n), 0.0
    return FitResult(
        "t_eff", values, stderr,
        chi2_reduced=chi2, dof=dof, absolute_sigma=True, covariance=cov, names=names,
    )


def with_calibration_error(
    t_chip: np.ndarray, widths: np.ndarray, errors: np.ndarray, fitted: FitResult, rel_10mK: float
) -> FitResult:
    """``fitted`` with the thermometer's calibration-curve error added to every parameter:
    refit with the readings moved by +-1 sigma of its model, half the spread in quadrature."""
    if not fitted.success or rel_10mK <= 0:
        return fitted
    shifted = []
    for sign in (-1.0, 1.0):
        f = fit_widths(t_chip / (1 + sign * calibration_rel(t_chip, rel_10mK)), widths, errors, start=fitted)
        if not f.success:
            return fitted
        shifted.append(f)
    # what a consumer of T_x and n needs to propagate them honestly: their statistical
    # covariance (strongly correlated: T_eff at the measured temperatures is known far
    # better than either) and the signed move of both under one sigma of the thermometer
    # (readings / (1 + calibration_rel)), which a consumer reading the same thermometer
    # must apply together with its own readings' move, not as a third independent term
    if fitted.covariance is not None and "t_eff_exponent" in fitted.names:
        i, j = fitted.names.index("t_excess_K"), fitted.names.index("t_eff_exponent")
        c = fitted.covariance
        fitted.extra["t_eff_stat_covariance"] = [float(c[i, i]), float(c[i, j]), float(c[j, j])]
        fitted.extra["t_eff_thermometer_shift"] = [
            0.5 * float(shifted[1][k] - shifted[0][k]) for k in ("t_excess_K", "t_eff_exponent")
        ]
    for name in fitted.names:
        spread = 0.5 * abs(shifted[1][name] - shifted[0][name])
        fitted.stderr[name] = math.hypot(fitted.stderr[name], spread)
    return fitted


def _crosstalk(ctx: Context, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The crosstalk node's matrix ``C`` (V/V) and its standard errors, zeros where it has none."""
    zeros = np.zeros((n, n))
    key = "crosstalk.matrix_V_per_V"
    if key not in ctx.state or not ctx.state.get(key).valid or ctx.state.value(key) is None:
        return zeros, zeros
    entry = ctx.state.get(key)
    c = np.asarray(entry.value, dtype=float)
    if c.shape != (n, n):
        return zeros, zeros
    err = np.asarray(entry.stderr, dtype=float) if entry.stderr is not None else zeros
    return np.nan_to_num(c), (np.nan_to_num(err) if err.shape == (n, n) else zeros)


#: a crosstalk entry counts when it is this many standard errors from zero. DAC crosstalk
#: is sparse (a line couples into its neighbours on the board, not into every line), and an
#: entry consistent with zero is, almost always, zero: correcting by it adds its noise to
#: the step. Measured: with every co-moving entry applied (each ~0.004 V/V of noise, about
#: eight per cell), each gain carried 1-1.5 % of error its stderr did not state (pulls rms
#: 1.33 on nineteen chips never tuned for); with the gate and the kept entries' errors
#: propagated, 1.08, and 0.99 on the tuned family
SIGNIFICANT_CROSSTALK = 3.0


def applied_crosstalk(dataset: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """``(C, sigma)`` as the fit applies them: entries beyond :data:`SIGNIFICANT_CROSSTALK`
    standard errors, zero elsewhere (a dataset without errors: every entry, sigma 0)."""
    c = dataset["crosstalk"].values
    if "crosstalk_err" not in dataset:
        return c, np.zeros_like(c)
    err = dataset["crosstalk_err"].values
    keep = (err > 0) & (np.abs(c) > SIGNIFICANT_CROSSTALK * err)
    return np.where(keep, c, 0.0), np.where(keep, err, 0.0)


def _co_moving(dataset: xr.Dataset, i: int) -> np.ndarray:
    """Lines swept together with cell ``i``'s (its colour class), itself excluded."""
    colour = dataset["colour"].values
    same = (colour == colour[i]) & dataset["measured"].values.astype(bool)
    same[i] = False
    return same


def effective_bias(dataset: xr.Dataset) -> np.ndarray:
    """Each cell's bias as its field sees it: its own line plus ``C_ij`` of every line that
    moved with it (its colour class; the parked lines only add a constant, which each
    S-curve's centre absorbs). Without it, a DAC neighbour swept alongside scales the
    grid's step by ``1 + C_ij w_j / w_i``: at 8 % crosstalk, gains off by several sigma.
    Only significant entries are applied (:func:`applied_crosstalk`)."""
    bias = dataset["bias"].values
    if "crosstalk" not in dataset:
        return bias
    c, _ = applied_crosstalk(dataset)
    out = bias.copy()
    for i in range(bias.shape[1]):
        same = _co_moving(dataset, i)
        if same.any():
            out[:, i, :] += np.einsum("j,tjp->tp", c[i, same], bias[:, same, :])
    return out


def crosstalk_rel_errors(dataset: xr.Dataset) -> np.ndarray:
    """Relative error of each cell's gain from the applied crosstalk entries' errors.

    The effective step is the cell's own times ``1 + sum_j C_ij r_j`` (``r_j``: line j's
    grid step over the cell's), so an error ``s_ij`` of each applied entry moves the
    width, at every temperature alike, and the gain with it, by ``s_ij r_j``."""
    n = dataset["bias"].shape[1]
    out = np.zeros(n)
    if "crosstalk" not in dataset:
        return out
    _, err = applied_crosstalk(dataset)
    bias = dataset["bias"].values
    step = bias[:, :, -1] - bias[:, :, 0]  # (temperature, line): each grid's span
    for i in range(n):
        same = _co_moving(dataset, i) & (err[i] > 0)
        if not same.any():
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.nanmean(step[:, same] / step[:, [i]], axis=0)
        out[i] = float(np.sqrt(np.sum((err[i, same] * np.nan_to_num(ratio)) ** 2)))
    return out


def fit(dataset: xr.Dataset, params: Parameters | None = None) -> Result:
    """Fit a merged effective-temperature dataset (pure)."""
    lockin = "level" in dataset
    samples = dataset["level" if lockin else "samples"].values
    bias = effective_bias(dataset)  # the lock-in sweep records no crosstalk: its own lines
    t_chip = dataset["T_chip"].values.astype(float)
    measured = dataset["measured"].values.astype(bool)
    n_t, n_cells = samples.shape[:2]
    widths = np.full((n_t, n_cells), np.nan)
    errors = np.full((n_t, n_cells), np.nan)
    flags: dict[int, str] = {}
    for k in range(n_t):
        for i in np.flatnonzero(measured):
            r = _fit_cell(bias[k, i], samples[k, i], int(i), lockin)
            if r.ok:
                widths[k, i], errors[k, i] = r.fit["width_V"], r.fit.error("width_V")
            else:
                flags[int(i)] = f"S-curve at {t_chip[k] * 1e3:.1f} mK: {r.fit.message}"
    if n_t < 2:  # a check run: widths only
        return Result(widths, errors, t_chip, FitResult.failed("t_eff", "one temperature: widths only"), [], flags)
    rel = (params or Parameters()).calibration_rel_10mK
    joint = with_calibration_error(t_chip, widths, errors, fit_widths(t_chip, widths, errors), rel)
    cells = [int(name.split("_")[1]) for name in joint.names if name.startswith("alpha_")] if joint.success else []
    rel = crosstalk_rel_errors(dataset)  # the crosstalk entries applied carry their own errors
    for i in cells:
        name = f"alpha_{i}"
        joint.stderr[name] = math.hypot(joint.stderr[name], abs(joint[name]) * rel[i])
    for i in np.flatnonzero(measured):
        if int(i) not in cells:
            flags.setdefault(int(i), "widths at fewer than two temperatures")
    return Result(widths, errors, t_chip, joint, cells, flags)


# --------------------------------------------------------------------- check
def check(result: Result, params: Parameters, state: CalibrationState) -> Verdict:
    """Base-temperature widths against ``T_eff(T_chip) / (2 alpha)`` from the state.

    The prediction carries the state's own uncertainty (alpha's and T_x's), and the
    significance threshold is family-wise over the cells checked, so a chip that did
    not change passes 99 % of the time however many cells it has.
    """
    if "noise.t_excess_K" not in state:
        return Verdict(Spec.BAD_DATA, "no calibrated T_x")
    t_x_entry = state.get("noise.t_excess_K")
    t_x = float(t_x_entry.value)
    n = float(state.value("noise.t_eff_exponent"))
    t_now = float(t_eff(result.t_chip[0], t_x, n))
    # d T_eff / d T_x = (T_x / T_eff)^(n - 1); the exponent's error by a finite difference
    n_err = float(state.get("noise.t_eff_exponent").stderr or 0.0)
    from_n = 0.5 * abs(float(t_eff(result.t_chip[0], t_x, n + n_err)) - float(t_eff(result.t_chip[0], t_x, n - n_err)))
    t_now_err = math.hypot((t_x / t_now) ** (n - 1) * float(t_x_entry.stderr or 0.0), from_n)
    rows = []
    for i in range(result.widths.shape[1]):
        key = f"cells.{i}.alpha_K_per_V"
        if key not in state or not state.get(key).valid or not np.isfinite(result.widths[0, i]):
            continue
        alpha = state.get(key)
        predicted = t_now / (2 * float(alpha.value))
        rel_err = math.hypot(float(alpha.stderr or 0.0) / float(alpha.value), t_now_err / t_now)
        rows.append((i, result.widths[0, i], result.width_err[0, i], predicted, predicted * rel_err))
    n_sigma = family_n_sigma(len(rows))
    return combine(
        Tolerance(params.tolerance_rel * predicted, n_sigma).judge(
            f"cell {i} width", width, err, predicted, predicted_err
        )
        for i, width, err, predicted, predicted_err in rows
    )


# -------------------------------------------------------------------- update
def update(result: Result, params: Parameters | None = None) -> StateChange:
    params = params or Parameters()
    change = StateChange()
    if not result.ok:
        return change.fail(result.alpha.message)
    f = result.alpha
    change.set("noise.t_excess_K", f["t_excess_K"], f.error("t_excess_K"), "K", note="t_eff")
    change.set("noise.t_eff_exponent", f["t_eff_exponent"], f.error("t_eff_exponent"), "", note="t_eff")
    if "t_eff_stat_covariance" in f.extra:
        change.set("noise.t_eff_stat_covariance", f.extra["t_eff_stat_covariance"], None, "",
                   note="var T_x (K^2), cov (K), var n: the fit's, thermometer excluded")
        change.set("noise.t_eff_thermometer_shift", f.extra["t_eff_thermometer_shift"], None, "",
                   note="T_x (K), n moved by one sigma of the chip thermometer's calibration (readings / (1 + rel))")
    for i in result.cells:
        change.set(f"cells.{i}.alpha_K_per_V", f[f"alpha_{i}"], f.error(f"alpha_{i}"), "K/V", note="t_eff")
    for i, why in result.flags.items():
        if i not in result.cells:
            change.flag(f"cells.{i}.alpha_K_per_V", why, "K/V")
    return change


def table(result: Result) -> str:
    f = result.alpha
    temps = "  ".join(f"{t * 1e3:6.1f} mK" for t in result.t_chip)
    lines = [f"chip temperatures: {temps}"]
    if f.success:
        lines.append(
            f"T_x = {f['t_excess_K'] * 1e3:.2f} ± {f.error('t_excess_K') * 1e3:.2f} mK, "
            f"n = {f['t_eff_exponent']:.2f} ± {f.error('t_eff_exponent'):.2f}, "
            f"chi2_red {f.chi2_reduced:.2f} ({f.dof} dof)"
        )
        lines.append(f"{'cell':>4}  {'alpha (K/V)':>18}  widths (mV)")
        for i in result.cells:
            ws = "  ".join(f"{w * 1e3:6.2f}" for w in result.widths[:, i])
            lines.append(f"{i:>4}  {f[f'alpha_{i}']:>8.4f} ± {f.error(f'alpha_{i}'):<7.4f}  {ws}")
    else:
        lines.append(f"FAILED: {f.message}")
    for i, why in sorted(result.flags.items()):
        lines.append(f"{i:>4}  flagged: {why}")
    return "\n".join(lines)


def figures(result: Result, dataset: xr.Dataset | None = None) -> list[Any]:
    """T_eff of every cell against the chip temperature with the fitted law and the T_x floor.

    Each point is ``T_eff = 2 α_i w`` from one S-curve width (its error from the
    width's); the line is ``(T^n + T_x^n)^(1/n)``; the residual panel shows the
    widths' pulls against the joint fit. Then the gains α per cell.
    """
    from matplotlib.figure import Figure

    from labstack.calibrations import _figures as F

    f = result.alpha
    t_chip = np.asarray(result.t_chip, float)
    if not f.success:
        measured = np.isfinite(result.widths)
        if not measured.any():
            return []
        fig = Figure(figsize=(6, 3.2), layout="constrained")
        ax = fig.add_subplot()
        for k, t in enumerate(t_chip):
            cells = np.flatnonzero(measured[k])
            ax.errorbar(cells, result.widths[k, cells] * 1e3, result.width_err[k, cells] * 1e3, fmt="o", ms=4,
                        label=f"T_chip {F.format_value(t, None, 'K')}")
        ax.set_xlabel("cell")
        ax.set_ylabel("S-curve width (mV)")
        F.integer_ticks(ax)
        ax.legend(fontsize=7)
        ax.set_title(f"{NAME}: widths only ({f.message})")
        return [fig]
    n = 2.0 if dataset is None else float(dataset.attrs.get("t_eff_exponent", 2.0))
    t_x = f["t_excess_K"]
    fig, (ax,), (rax,) = F.panels_with_residuals(1, f"{NAME}: T_eff vs chip temperature, "
                                                 f"{F.value_text('T_x', t_x, f.error('t_excess_K'), 'K')}",
                                                 cols=1, size=(6.5, 3.6))
    grid = np.linspace(0, t_chip.max() * 1.1, 200)
    for k, i in enumerate(result.cells):
        alpha = f[f"alpha_{i}"]
        ok = np.isfinite(result.widths[:, i])
        colour = f"C{k % 10}"
        ax.errorbar(t_chip[ok] * 1e3, 2 * alpha * result.widths[ok, i] * 1e3, 2 * alpha * result.width_err[ok, i] * 1e3,
                    fmt="o", ms=4, color=colour, label=f"cell {i}" if k < 8 else None)
        model_w = t_eff(t_chip[ok], t_x, n) / (2 * alpha)
        rax.plot(t_chip[ok] * 1e3, (result.widths[ok, i] - model_w) / result.width_err[ok, i], "o", ms=3, color=colour)
    ax.plot(grid * 1e3, t_eff(grid, t_x, n) * 1e3, color="k", lw=1, label="(T^n + T_x^n)^(1/n)")
    ax.axhline(t_x * 1e3, color="0.4", ls="--", lw=0.8, label="T_x floor")
    ax.plot(grid * 1e3, grid * 1e3, color="0.6", ls=":", lw=0.8, label="T_eff = T_chip")
    ax.set_ylabel("T_eff = 2 α w (mK)")
    ax.legend(fontsize=6, ncol=2)
    ax.set_title(f"χ²ᵣ {f.chi2_reduced:.2f} ({f.dof} dof)", fontsize=8)
    rax.axhspan(-1, 1, color="0.9", zorder=0)
    rax.axhline(0, color="0.4", lw=0.6)
    rax.set_xlabel("chip temperature T_chip (mK)")
    rax.set_ylabel("width pull (σ)")
    rax.set_title("residuals", fontsize=7, loc="right", pad=1)
    out = [fig]
    gains = Figure(figsize=(6, 3), layout="constrained")
    gx = gains.add_subplot()
    gx.errorbar(result.cells, [f[f"alpha_{i}"] for i in result.cells], [f.error(f"alpha_{i}") for i in result.cells], fmt="o", ms=4)
    gx.set_xlabel("cell")
    gx.set_ylabel("gain α (K/V)")
    F.integer_ticks(gx)
    flagged = sorted(result.flags)
    gx.set_title(f"{NAME}: bias gain per cell" + (f"; flagged {flagged}" if flagged else ""))
    out.append(gains)
    return out
