"""Thermalization time: each cell's switching rates vs bias and temperature -> attempt rate and barrier.

A cell sampled every ``Delta`` is a two-state Markov chain with
``P(0->1) = a = p (1 - lambda)`` and ``P(1->0) = b = (1 - p)(1 - lambda)``,
``lambda = exp(-Delta / tau_c)`` (exact for the telegraph process at any
``Delta``). A perfect readout could count transitions; a real one misreads a sample
now and then, and each misreading counts as two switches, so ``tau_c`` and ``p``
come from the decay of the states' autocovariance at lags of three samples and more,
where misreadings do not reach (:func:`labstack.fit.telegraph.switching_rates`),
with jackknife errors. The Kramers rates are ``r_up = p / tau_c``,
``r_down = (1 - p) / tau_c``. Their geometric mean ``r0 = sqrt(r_up r_down) =
Gamma0 exp(-dU / T_eff)`` does not depend on the bias, so every bias point at a
temperature measures the same ``r0`` (a model check), and ``ln r0`` against
``1 / T_eff`` is an Arrhenius line: slope ``-dU``, intercept ``ln Gamma0``.
``T_eff`` comes from the chip thermometer and the calibrated ``T_x``; the
uncertainty of ``T_x`` is propagated by refitting with ``T_x +- sigma``.

Bounded tilt. The chips' total rate saturates at the attempt rate:
``1 / tau_c = k_b = k / (1 + k / Gamma0)`` with ``k = r0 / sqrt(p (1 - p))`` the
unbounded total (:mod:`labstack.sim.dynamics`), so the geometric mean measured at a
point, ``m = sqrt(p (1 - p)) / tau_c``, is ``r0 / (1 + k / Gamma0)`` with
``k / Gamma0 = exp(-dU / T_eff) / sqrt(p (1 - p))``: a little below ``r0``, the more
the warmer (about ``2 exp(-dU / T_eff)``, a few 1e-4 at base, a few 1e-3 on the warm
plateaus; it would tilt the Arrhenius line). The fit takes ``ln r0 = ln m +
ln(1 + exp(-dU / T_eff) / sqrt(p (1 - p)))`` with ``dU`` from the line itself,
refitted until it stops moving (``bounded_kramers``; the law, not its numbers, is what
the lab knows). The correction uses the point's ``p`` and the line's ``dU``, not its
measured ``tau_c``, whose noise it would amplify by ``1 / (1 - k_b / Gamma0)``.

Reported per cell: ``gamma0_Hz``, ``barrier_K``, the correlation time at base
and zero field ``tau_c_s = 1 / (2 r0) + 1 / Gamma0`` (``r0`` from the base points themselves)
and the effective samples per second there, ``1 / (2 tau_c)`` (the integrated
autocorrelation time of a telegraph signal is ``2 tau_c``).

Temperatures. The lever arm of the Arrhenius line is ``1 / T_eff``, not
``1 / T_chip``: with the excess noise floor, warming the chip a little may barely
move ``T_eff``, and warming it a lot makes the cells too fast to resolve. So the
plateaus are chosen in ``T_eff`` (``t_eff_steps`` times the base value) and turned
into chip temperatures with the calibrated ``T_x`` and exponent ``n``.

One heat-and-cool cycle for two nodes. Those plateaus lie below the effective-temperature
node's warm ones, and the acquisition at each lasts milliseconds: its own cycle (heat,
settle, a whole cool-down) cost the fridge half an hour. So the effective-temperature
node, which has ``T_x`` and ``n`` once its last plateau is measured, dives from there to
these plateaus (highest first, heater off for the model's cooling time:
:func:`labstack.calibrations.fridge.boost_plan`) and takes the warm points at ``V0``
before its cool-down (:func:`labstack.calibrations.effective_temperature.descend`). This
node then measures only its base points and uses those warm points, if they were taken
with the acquisition its parameters ask for (:mod:`.switching`) and within
``warm_points_max_age_s``; otherwise it heats the fridge itself, as before. On the
default chip (seed 3) the cold start fell from 2 h 12 min to 1 h 55 min of fridge time.

Sampling: as fast as the readout allows. The amplifier's low-pass (its time
constant ``tau_a`` from the readout node) leaves ``a = exp(-Delta / tau_a)`` of the
previous reading in each sample; a one-sample dwell crosses the threshold only if
``a < 1/2``, so ``Delta = tau_a ln(1 / max_memory)`` (``a = 0.25``: 4.5 MHz at a
1 MHz bandwidth), at most 10 MHz. A cell whose correlation time is within a couple of
samples of that memory is another matter: thresholding merges its short dwells, its
states' correlation time comes out long (x1.7 at one sample, and not monotonic below),
and a warm point read that way tilts the Arrhenius line to a barrier many sigma low. So
each point's correlation time is also taken from the voltages themselves, whose
autocovariance through the low-pass is exactly ``c1 lambda^k + c2 a^k``
(:func:`labstack.fit.telegraph.filtered_correlation_time`), and a point faster than
``min_tau_samples`` is dropped; so is one with too few switches or stays. A cell left
with fewer than two temperatures is reported as such (``too_few_points``), not fitted;
one with exactly two gets the line through them, its errors from theirs, untested.
A line whose barrier is not positive (the cell flipping faster when colder) is no
thermally activated cell's: one of its points was misread, and the cell is reported
``no_activation`` instead of with values. In the fresh family two cells of fam-904 came
out at -0.35 +- 0.08 K and -0.09 +- 0.12 K (true 0.18 and 0.34 K: pulls -7.0 and -3.5).

Uncertainty: besides the counting errors, ``T_eff`` carries those of ``T_x``, of the
exponent and of the chip thermometer's calibration curve; each is propagated by
refitting with it moved by one sigma, half the spread added in quadrature.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import xarray as xr

from labstack.calibrate import (
    CalibrationState,
    Context,
    Mode,
    StateChange,
    Tolerance,
    Uses,
    Verdict,
    combine,
    family_n_sigma,
)
from labstack.calibrations import switching
from labstack.calibrations._common import cell_values, idle_couplers
from labstack.calibrations.fridge import (
    CALIBRATION_REL_10MK,
    calibration_rel,
    chip_temperature,
    plateaus,
)
from labstack.data import load_run
from labstack.fit import FitResult, fit_linear
from labstack.fit.telegraph import switching_rates

NAME = "thermalization"
#: needs a sampler: it measures switching times from the autocorrelation of single shots (a lock-in gives time averages)
READOUT_KINDS = ("sampler",)
DEPENDS_ON: tuple[str, ...] = ("effective_temperature", "cryostat", "bias_scurve")
TIMEOUT_S = 24 * 3600.0
#: a per-cell S-curve recalibration within these leaves the rates as they were
#: (labstack.calibrate.consumes)
CONSUMES = {
    "bias_scurve": (
        Uses("cells.*.bias_offset_V", within=0.25, per="scurve_width_V",
             why="r0 = sqrt(r_up r_down) does not depend on the bias; the points sit near V0 "
                 "only for switching to be frequent, and a quarter width off costs 1.5 % of it"),
        Uses.unused("cells.*.scurve_width_V",
                    why="the bias points are spaced by T_eff / (2 alpha), from effective_temperature"),
    ),
}


#: the switching acquisition's defaults, shared with the effective-temperature node's way down
_SWITCHING = switching.Settings()


@dataclass
class Parameters:
    #: plateaus above base, as multiples of the base effective temperature
    t_eff_steps: tuple[float, ...] = _SWITCHING.t_eff_steps
    #: chip temperatures (K, 0 = base) instead of the T_eff steps, when given
    temperatures_K: tuple[float, ...] | None = None
    #: bias points in S-curve widths from V0, measured at base
    bias_widths: tuple[float, ...] = (-1.0, 0.0, 1.0)
    n_samples: int = _SWITCHING.n_samples
    #: sample rate when the readout's bandwidth is not calibrated
    sample_rate_Hz: float = _SWITCHING.sample_rate_Hz
    #: fraction of the previous reading the amplifier's low-pass may leave in a sample
    max_memory: float = _SWITCHING.max_memory
    max_rate_Hz: float = _SWITCHING.max_rate_Hz
    settle_s: float = _SWITCHING.settle_s
    #: a point needs this many transitions of each kind to count
    min_transitions: int = 20
    #: and a correlation time, as its voltages show it, of at least this many samples: faster,
    #: thresholding merges dwells shorter than the amplifier's memory and the states' rate
    #: comes out low (+2 % on tau_c at 2 samples, +8 % at 1.5, x1.7 at 1, and not monotonic
    #: below: labstack.fit.telegraph.filtered_correlation_time)
    min_tau_samples: float = 2.0
    check_samples: int = 8000
    tolerance_rel: float = 0.15
    limits_V: tuple[float, float] = _SWITCHING.limits_V
    #: time constants to wait at each temperature: an acquisition lasts milliseconds
    #: and the chip thermometer is read right before it, so steady beats exact
    settle_taus: float = _SWITCHING.settle_taus
    #: shaped heater steps up to each plateau (fridge.heat_to): the same plateaus in less fridge time
    boost_heater: bool = True
    #: warm points the effective-temperature node took on its way down are used up to this
    #: age (lab time, s); older, or taken otherwise than these parameters ask, the node heats itself
    warm_points_max_age_s: float = _SWITCHING.max_age_s
    #: 1-sigma calibration-curve error of the chip thermometer at 10 mK (its certificate)
    calibration_rel_10mK: float = CALIBRATION_REL_10MK
    #: the escape law: total rate saturating at the attempt rate (module docstring)
    bounded_kramers: bool = True
    #: refits of the bounded-law correction (on a real chip it moves dU by ~1e-3 the first time)
    bounded_refits: int = 6


def settings_of(params: Parameters) -> switching.Settings:
    """The switching acquisition ``params`` ask for."""
    return switching.Settings(
        t_eff_steps=tuple(params.t_eff_steps), n_samples=params.n_samples, sample_rate_Hz=params.sample_rate_Hz,
        max_memory=params.max_memory, max_rate_Hz=params.max_rate_Hz, settle_s=params.settle_s,
        settle_taus=params.settle_taus, limits_V=tuple(params.limits_V), max_age_s=params.warm_points_max_age_s,
    )


@dataclass
class Recorded:
    """Warm points the effective-temperature node took on its way down (its run, by id)."""

    points: list[switching.Point]
    run_ids: list[str]
    temperatures_K: list[float]


def recorded_warm_points(ctx: Context, settings: switching.Settings, period: float) -> Recorded | None:
    """The warm points in the effective-temperature run that ``noise.t_excess_K`` came from,
    if they were taken as ``settings`` ask, at this sample period, for every cell, and
    within ``settings.max_age_s`` of lab time; None otherwise (the node heats itself)."""
    key = "noise.t_excess_K"
    if key not in ctx.state or not ctx.state.get(key).run_id:
        return None
    try:
        ds = load_run(str(ctx.state.get(key).run_id), ctx.data_dir).dataset()
    except (OSError, LookupError, ValueError):
        return None
    attrs = ds.attrs
    recorded = attrs.get("switching_settings")
    if not recorded or not switching.matches(json.loads(recorded), settings):
        return None
    if not math.isclose(float(attrs.get("switching_sample_period_s", math.nan)), period, rel_tol=1e-9):
        return None
    taken = datetime.fromisoformat(str(attrs["switching_utc"]))
    if (ctx.clock.utcnow() - taken).total_seconds() > settings.max_age_s:
        return None
    points = switching.warm_points(ds)
    if not points or points[0].states.shape[0] != ctx.station.layout.n_cells:
        return None
    return Recorded(points, str(attrs["switching_run_ids"]).split("+"), _listed(attrs["switching_temperatures_K"]) or [])


# ------------------------------------------------------------------- acquire
def acquire(ctx: Context, params: Parameters, mode: Mode = Mode.CALIBRATE) -> xr.Dataset:
    """Switching points at base and on each plateau (module docstring).

    The warm plateaus' points are the effective-temperature node's when it took them on
    its way down (:func:`recorded_warm_points`): then only the base points are measured
    here, and the fridge is not heated again.
    """
    layout = ctx.station.layout
    n = layout.n_cells
    v0 = cell_values(ctx, n, "bias_offset_V")
    alpha = cell_values(ctx, n, "alpha_K_per_V")
    good = np.isfinite(v0) & np.isfinite(alpha)
    t_x = float(ctx.state.value("noise.t_excess_K"))
    n_exp = float(ctx.state.value("noise.t_eff_exponent"))
    settings = settings_of(params)
    read, period, memory = switching.prepare(
        ctx, settings, params.n_samples if mode is Mode.CALIBRATE else params.check_samples)
    idle_couplers(ctx, layout)
    t_base = float(ctx.state.value("cryostat.mc_base_K"))
    recorded = None
    if mode is not Mode.CALIBRATE:
        temps = [0.0]
    elif params.temperatures_K is not None:
        temps = [float(t) for t in params.temperatures_K]
    else:
        temps = switching.plateau_temperatures(t_base, t_x, n_exp, params.t_eff_steps)
        recorded = recorded_warm_points(ctx, settings, period)
    points: list[switching.Point] = []
    run_ids: list[str] = []
    for t_set in plateaus(ctx, [0.0] if recorded else temps, settle_taus=params.settle_taus,
                          boost=params.boost_heater):
        t_chip = chip_temperature(ctx)
        t_eff = (t_chip**n_exp + t_x**n_exp) ** (1 / n_exp)
        ks = tuple(params.bias_widths) if (t_set <= 0 and mode is Mode.CALIBRATE) else (0.0,)
        width = t_eff / (2 * np.where(good, alpha, 1.0))
        meta = {"mode": str(mode), "parameters": asdict(params), "t_set_K": t_set}
        taken, run_id = switching.measure(ctx, settings, read, memory, t_chip, ks, v0, width, good, NAME, meta)
        points += taken
        run_ids.append(run_id)
    if recorded is not None:
        points += sorted(recorded.points, key=lambda p: p.t_chip)
        run_ids += recorded.run_ids
        temps = recorded.temperatures_K
    return xr.Dataset(
        {
            "states": (("point", "cell", "sample"), np.stack([p.states for p in points]).astype(np.uint8)),
            "T_chip": (("point",), np.array([p.t_chip for p in points]), {"units": "K"}),
            "bias_widths": (("point",), np.array([p.bias_widths for p in points])),
            "measured": (("cell",), good),
            "voltage_tau_samples": (("point", "cell"), np.stack([p.voltage_tau_samples for p in points]),
                                    {"long_name": "correlation time from the voltages, in samples",
                                     "readout_memory": float("nan") if memory is None else memory}),
        },
        attrs={
            "run_id": "+".join(run_ids),
            "calibration": NAME,
            "sample_period_s": period,
            "temperatures_K": temps,
            "warm_points_from": "effective_temperature" if recorded is not None else NAME,
            "t_excess_K": t_x,
            "t_excess_err_K": float(ctx.state.get("noise.t_excess_K").stderr or 0.0),
            "t_eff_exponent": n_exp,
            "t_eff_exponent_err": float(ctx.state.get("noise.t_eff_exponent").stderr or 0.0),
            **{key: [float(x) for x in ctx.state.value(f"noise.{key}")]
               for key in ("t_eff_stat_covariance", "t_eff_thermometer_shift") if f"noise.{key}" in ctx.state},
        },
    )


# ----------------------------------------------------------------------- fit
def rate_estimate(states: np.ndarray, period: float, min_transitions: int = 20) -> tuple[float, float, float, float]:
    """(ln r0, its stderr, tau_c, p) from a 0/1 series sampled every ``period``; nan if unusable.

    Misreadings included: :func:`labstack.fit.telegraph.switching_rates`.
    """
    r = switching_rates(states, period, min_transitions)
    return r.ln_r0, r.ln_r0_err, r.tau_c_s, r.p_up


#: a cell whose Arrhenius line has no positive barrier: stated as a failed fit, not as values
NO_ACTIVATION = "no_activation"


@dataclass
class CellResult:
    cell: int
    fit: FitResult
    ln_r0: np.ndarray
    ln_r0_err: np.ndarray
    flag: str = ""
    #: ln r0 the thresholded states gave at points refused as faster than the readout (nan
    #: elsewhere): shown on the Arrhenius plot, not fitted
    refused: np.ndarray | None = None

    @property
    def ok(self) -> bool:
        return not self.flag and self.fit.success


@dataclass
class Result:
    cells: list[CellResult]
    t_eff: np.ndarray
    bias_widths: np.ndarray
    base_index: list[int] = field(default_factory=list)


def _two_point_line(x: np.ndarray, y: np.ndarray, err: np.ndarray) -> FitResult:
    """The line through two points, its errors propagated from theirs (nothing left to
    test it with: chi2 NaN, 0 degrees of freedom)."""
    dx = float(x[1] - x[0])
    if dx == 0:
        return FitResult.failed("linear", "two points at one temperature")
    slope = float(y[1] - y[0]) / dx
    intercept = float(y[0]) - slope * float(x[0])
    # d slope / d y = (-1, 1) / dx; d intercept / d y = (x1, -x0) / dx
    slope_err = math.hypot(err[0], err[1]) / abs(dx)
    intercept_err = math.hypot(x[1] * err[0], x[0] * err[1]) / abs(dx)
    return FitResult("linear", {"slope": slope, "intercept": intercept},
                     {"slope": slope_err, "intercept": intercept_err},
                     chi2_reduced=math.nan, dof=0, absolute_sigma=True)


def _arrhenius(inv_t: np.ndarray, ln_r0: np.ndarray, err: np.ndarray) -> FitResult:
    # two temperatures are enough for a barrier and a rate, with their errors; a third
    # would also test the line
    line = _two_point_line(inv_t, ln_r0, err) if inv_t.size == 2 else fit_linear(inv_t, ln_r0, err)
    if not line.success:
        return line
    return FitResult(
        "arrhenius_rate",
        {"barrier_K": -line["slope"], "ln_gamma0": line["intercept"], "gamma0_Hz": math.exp(line["intercept"])},
        {
            "barrier_K": line.error("slope"),
            "ln_gamma0": line.error("intercept"),
            "gamma0_Hz": math.exp(line["intercept"]) * line.error("intercept"),
        },
        chi2_reduced=line.chi2_reduced, dof=line.dof, absolute_sigma=True, checks=line.checks,
    )


def bounded_ln_r0(
    inv_t: np.ndarray, ln_m: np.ndarray, err: np.ndarray, p_up: np.ndarray, refits: int
) -> np.ndarray:
    """``ln r0`` per point under the bounded law: ``ln m + ln(1 + exp(-dU / T) / sqrt(p (1 - p)))``.

    ``dU`` comes from the Arrhenius line through the corrected points, found by
    fixed-point refits (on a real chip the correction moves it by ~1e-3 of itself, so
    they converge at once).
    """
    ln_r0 = ln_m.copy()
    use = np.isfinite(ln_m)
    spread = np.sqrt(np.clip(p_up * (1.0 - p_up), 1e-12, None))
    for _ in range(refits):
        line = _arrhenius(inv_t[use], ln_r0[use], err[use])
        if not line.success:
            break
        ln_r0 = ln_m + np.log1p(np.exp(-line["barrier_K"] * inv_t) / spread)
    return ln_r0


def t_eff_errors(
    line: FitResult, use: np.ndarray, ln_r0: np.ndarray, err: np.ndarray, teff: Any, attrs: Any
) -> dict[str, float]:
    """Error of barrier and ``ln Gamma0`` from what ``T_eff`` is uncertain by, by refitting.

    With the effective-temperature node's covariance of ``(T_x, n)`` and its move under
    the thermometer's calibration error (``noise.t_eff_stat_covariance``,
    ``noise.t_eff_thermometer_shift``): the statistical part through the Jacobian and the
    covariance (``T_x`` and ``n`` are strongly correlated: moved one at a time by their
    marginal errors they would change ``T_eff`` at the plateaus far more than the widths
    allow), and the thermometer once, moving these readings and ``(T_x, n)`` together as
    one error of the same sensor does. Without them (an older state): each of ``T_x``,
    ``n`` and the thermometer by +-1 sigma alone, half the spread in quadrature (an
    overstatement, since the thermometer is then counted in ``T_x`` and ``n`` too).
    """
    names = ("barrier_K", "ln_gamma0")
    t_x, n_exp = float(attrs["t_excess_K"]), float(attrs["t_eff_exponent"])

    def moved(te: np.ndarray) -> np.ndarray:
        refit = _arrhenius(1 / te[use], ln_r0[use], err[use])
        return np.array([refit[k] - line[k] for k in names])

    cov, shift = _listed(attrs.get("t_eff_stat_covariance")), _listed(attrs.get("t_eff_thermometer_shift"))
    if cov is not None and shift is not None:
        sigma = np.array([[cov[0], cov[1]], [cov[1], cov[2]]], dtype=float)
        steps = np.sqrt(np.clip(np.diag(sigma), 0.0, None))
        jac = np.zeros((len(names), 2))
        for j, h in enumerate(steps):
            if h > 0:
                d = np.array([h, 0.0]) if j == 0 else np.array([0.0, h])
                jac[:, j] = (moved(teff(t_x + d[0], n_exp + d[1])) - moved(teff(t_x - d[0], n_exp - d[1]))) / (2 * h)
        stat = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", jac, sigma, jac), 0.0, None))
        therm = [moved(teff(t_x + s * shift[0], n_exp + s * shift[1], s)) for s in (-1.0, 1.0)]
        sensor = 0.5 * (np.abs(therm[0]) + np.abs(therm[1]))
        return {k: float(math.hypot(stat[i], sensor[i])) for i, k in enumerate(names)}
    t_x_err = float(attrs["t_excess_err_K"])
    n_err = float(attrs.get("t_eff_exponent_err", 0.0))
    out = dict.fromkeys(names, 0.0)
    for pair in (
        [teff(t_x + s * t_x_err) for s in (-1, 1)],
        [teff(t_x, n_exp + s * n_err) for s in (-1, 1)],
        [teff(t_x, n_exp, s) for s in (-1, 1)],
    ):
        shifts = [moved(te) for te in pair]
        for i, k in enumerate(names):
            out[k] = math.hypot(out[k], 0.5 * (abs(shifts[0][i]) + abs(shifts[1][i])))
    return out


def too_fast_points(voltage_tau: np.ndarray, t_chip: np.ndarray, bias_widths: np.ndarray,
                    min_tau_samples: float) -> np.ndarray:
    """Which of one cell's points are too fast to read: its voltages' correlation time is
    under ``min_tau_samples``, or a colder point at a bias as near zero is.

    The second rule is physics the first cannot supply: an activated cell only gets
    faster when warmed, and where the correlation time is a sample or less the voltage
    estimate loses its footing (it is not monotonic there). fam-918 of the fresh family
    had a cell at 2.6 samples at base, 1.07 on the first warm plateau (dropped) and
    2.03 on the hotter one (kept, though its true time was ~0.9 samples): thresholding
    had merged that point's dwells, its rate came out 2.5x low, and the Arrhenius line
    gave a barrier of 0.03 +- 0.04 K for a true 0.22 (pull 4.4). A point off zero
    bias is faster than one at zero at the same temperature (``tau_c`` scales with
    ``sqrt(p (1 - p))``), so only points at least as near zero bias pass the verdict on.
    A NaN estimate (not measured) is never too fast by itself.
    """
    tau = np.asarray(voltage_tau, dtype=float)
    temps = np.asarray(t_chip, dtype=float)
    off = np.abs(np.asarray(bias_widths, dtype=float))
    fast = tau < min_tau_samples
    out = fast.copy()
    for j in range(len(tau)):
        colder = (temps < temps[j] * (1 - 1e-6)) & (off <= off[j]) & fast
        out[j] |= bool(colder.any())
    return out


def fit(dataset: xr.Dataset, params: Parameters | None = None) -> Result:
    """Rates per point and an Arrhenius line per cell (pure)."""
    params = params or Parameters()
    states = dataset["states"].values
    t_chip = dataset["T_chip"].values.astype(float)
    ks = dataset["bias_widths"].values.astype(float)
    measured = dataset["measured"].values.astype(bool)
    period = float(dataset.attrs["sample_period_s"])
    t_x = float(dataset.attrs["t_excess_K"])
    n_exp = float(dataset.attrs["t_eff_exponent"])
    cal = calibration_rel(t_chip, params.calibration_rel_10mK)
    voltage_tau = (dataset["voltage_tau_samples"].values.astype(float) if "voltage_tau_samples" in dataset
                   else np.full(states.shape[:2], np.nan))

    def teff(tx: float, n: float = n_exp, scale: float = 0.0) -> np.ndarray:
        tc = t_chip / (1 + scale * cal)
        return (tc**n + tx**n) ** (1 / n)

    t_eff = teff(t_x)
    base = [j for j in range(len(t_chip)) if t_chip[j] <= t_chip.min() * 1.05]
    cells = []
    for i in range(states.shape[1]):
        est = np.array([rate_estimate(states[j, i], period, params.min_transitions) for j in range(len(t_chip))])
        too_fast = too_fast_points(voltage_tau[:, i], t_chip, ks, params.min_tau_samples)
        refused = np.where(too_fast, est[:, 0], np.nan)
        est[too_fast] = np.nan
        ln_r0, err = est[:, 0], est[:, 1]
        use = np.isfinite(ln_r0)
        if params.bounded_kramers and measured[i] and len({round(t, 6) for t in t_chip[use]}) >= 2:
            ln_r0 = bounded_ln_r0(1 / t_eff, ln_r0, err, est[:, 3], params.bounded_refits)
        if not measured[i]:
            cells.append(CellResult(i, FitResult.failed("arrhenius_rate", "no calibrated bias"), ln_r0, err, "not_measured"))
            continue
        if len({round(t, 6) for t in t_chip[use]}) < 2:
            why = (f"rates measurable at {use.sum()} of {len(use)} points (too fast or too slow for the sample "
                   f"rate; {int(too_fast.sum())} faster than {params.min_tau_samples:g} samples through the amplifier)")
            cells.append(CellResult(i, FitResult.failed("arrhenius_rate", why), ln_r0, err, "too_few_points", refused))
            continue
        f = _arrhenius(1 / t_eff[use], ln_r0[use], err[use])
        if f.success and not f["barrier_K"] > 0:
            why = (f"barrier {f['barrier_K']:.3g} +- {f.error('barrier_K'):.2g} K: the line has the cell flip "
                   "faster when colder, which no thermally activated cell does; a point is misread")
            cells.append(CellResult(i, FitResult.failed("arrhenius_rate", why), ln_r0, err, NO_ACTIVATION, refused))
            continue
        if f.success:
            for name, extra in t_eff_errors(f, use, ln_r0, err, teff, dataset.attrs).items():
                f.stderr[name] = math.hypot(f.stderr[name], extra)
            f.stderr["gamma0_Hz"] = f["gamma0_Hz"] * f.stderr["ln_gamma0"]
        if f.success:
            # the rate at base as the base points measured it (their weighted mean): no model,
            # no T_eff; from the line only if no base point was measurable
            at_base = [j for j in base if use[j]]
            if at_base:
                w = 1 / err[at_base] ** 2
                ln_base = float(np.sum(w * ln_r0[at_base]) / w.sum())
                rel = float(1 / math.sqrt(w.sum()))
            else:
                x_base = 1 / float(t_eff[base[0]])
                ln_base = f["ln_gamma0"] - f["barrier_K"] * x_base
                rel = f.error("ln_gamma0")
            r0_base = math.exp(ln_base)
            saturation = 1 / f["gamma0_Hz"] if params.bounded_kramers else 0.0
            f.values["tau_c_s"] = 1 / (2 * r0_base) + saturation
            f.values["ess_per_s"] = 1 / (2 * f.values["tau_c_s"])
            f.stderr["tau_c_s"] = f.values["tau_c_s"] * rel
            f.stderr["ess_per_s"] = f.values["ess_per_s"] * rel
        cells.append(CellResult(i, f, ln_r0, err, "" if f.success else "fit_failed", refused))
    return Result(cells, t_eff, ks, base)


# --------------------------------------------------------------------- check
def check(result: Result, params: Parameters, state: CalibrationState) -> Verdict:
    """Base-temperature rate r0 against ``Gamma0 exp(-dU / T_eff)`` from the state.

    The prediction carries the state's uncertainty (``ln Gamma0`` and ``dU / T_eff``
    added in quadrature, conservative since the two are correlated), and the sigma
    threshold is family-wise over the cells checked, so a chip that did not change
    passes with probability 99 % however many cells it has.
    """
    rows = []
    for r in result.cells:
        key = f"cells.{r.cell}.gamma0_Hz"
        if key not in state or not state.get(key).valid or not np.isfinite(r.ln_r0[0]):
            continue
        gamma0, barrier = state.get(key), state.get(f"cells.{r.cell}.barrier_K")
        t_eff = float(result.t_eff[0])
        predicted = math.log(float(gamma0.value)) - float(barrier.value) / t_eff
        rel_gamma = float(gamma0.stderr or 0.0) / float(gamma0.value)
        predicted_err = math.hypot(rel_gamma, float(barrier.stderr or 0.0) / t_eff)
        rows.append((r.cell, float(r.ln_r0[0]), float(r.ln_r0_err[0]), predicted, predicted_err))
    tolerance = Tolerance(params.tolerance_rel, n_sigma=family_n_sigma(len(rows)))
    return combine(
        tolerance.judge(f"cell {cell} ln r0", value, err, predicted, predicted_err)
        for cell, value, err, predicted, predicted_err in rows
    )


# -------------------------------------------------------------------- update
KEYS = {
    "gamma0_Hz": ("gamma0_Hz", "Hz"),
    "barrier_K": ("barrier_K", "K"),
    "tau_c_s": ("tau_c_s", "s"),
    "ess_per_s": ("ess_per_s", "1/s"),
}


def update(result: Result, params: Parameters | None = None) -> StateChange:
    change = StateChange()
    ess = []
    for r in result.cells:
        if r.flag == "not_measured":
            continue
        change.add_fit(f"cells.{r.cell}", r.fit, KEYS)
        if r.ok:
            ess.append(r.fit["ess_per_s"])
    if not ess:
        return change.fail("no cell gave an Arrhenius fit")
    change.set("thermalization.ess_per_s_min", float(min(ess)), None, "1/s")
    return change


def table(result: Result) -> str:
    temps = "  ".join(f"{t * 1e3:.1f}" for t in result.t_eff)
    lines = [f"T_eff per point (mK): {temps}", f"{'cell':>4}  {'Gamma0 (GHz)':>16}  {'barrier (K)':>17}  {'tau_c base (us)':>15}  chi2_red"]
    for r in result.cells:
        if r.ok:
            f = r.fit
            lines.append(
                f"{r.cell:>4}  {f['gamma0_Hz'] / 1e9:>7.3f} ± {f.error('gamma0_Hz') / 1e9:<6.3f}"
                f"  {f['barrier_K']:>7.4f} ± {f.error('barrier_K'):<7.4f}  {f['tau_c_s'] * 1e6:>15.3f}  {f.chi2_reduced:.2f}"
            )
        else:
            lines.append(f"{r.cell:>4}  {r.flag}: {r.fit.message}")
    return "\n".join(lines)


def figures(result: Result, dataset: xr.Dataset | None = None) -> list[Any]:
    """Arrhenius plot per cell: ln r0 against 1 / T_eff with the fitted line and residuals;
    then the correlation time at base per cell."""
    from matplotlib.figure import Figure

    from labstack.calibrations import _figures as F

    inv_t = 1.0 / np.asarray(result.t_eff, float)
    shown = [r for r in result.cells if r.flag != "not_measured"][: F.MAX_PANELS]
    if not shown:
        return []
    fig, axes, resid = F.panels_with_residuals(len(shown), f"{NAME}: Arrhenius plot, ln r0 = ln Γ0 − ΔU / T_eff")
    xlabel = "1 / T_eff (1/K)"
    for ax, rax, r in zip(axes, resid, shown, strict=False):
        use = np.isfinite(r.ln_r0)
        refused = np.isfinite(r.refused) if r.refused is not None else np.zeros_like(use)
        if refused.any():  # where the states would have put them: the bias the cut avoids
            ax.plot(inv_t[refused], r.refused[refused], "o", mfc="none", mec="#b00", ms=4,
                    label="too fast for the readout (not fitted)")
            ax.legend(fontsize=6, loc="best")
        if not use.any():
            F.failed_panel(ax, rax, f"cell {r.cell}: {r.flag}", r.fit.message, xlabel, "ln(r0 / Hz)")
            continue
        ax.errorbar(inv_t[use], r.ln_r0[use], r.ln_r0_err[use], fmt="o", ms=3)
        ax.set_ylabel("ln(r0 / Hz)")
        if r.ok:
            f = r.fit
            line = f["ln_gamma0"] - f["barrier_K"] * inv_t
            xs = np.linspace(inv_t[use].min(), inv_t[use].max(), 50)
            ax.plot(xs, f["ln_gamma0"] - f["barrier_K"] * xs, color="C1", lw=1)
            F.residuals(rax, inv_t[use], (r.ln_r0[use] - line[use]) / r.ln_r0_err[use], xlabel)
            ax.set_title(f"cell {r.cell}: {F.value_text('ΔU', f['barrier_K'], f.error('barrier_K'), 'K')}\n"
                         f"{F.value_text('Γ0', f['gamma0_Hz'], f.error('gamma0_Hz'), 'Hz')}", fontsize=7)
        else:
            ax.set_title(f"cell {r.cell}: {r.flag}", fontsize=7, color="#b00")
            ax.set_xlabel(xlabel)
            ax.tick_params(labelbottom=True)
            rax.set_visible(False)
    out = [fig]
    good = [r for r in result.cells if r.ok]
    if good:
        tau = Figure(figsize=(6, 3), layout="constrained")
        ax = tau.add_subplot()
        ax.errorbar([r.cell for r in good], [r.fit["tau_c_s"] * 1e6 for r in good],
                    [r.fit.error("tau_c_s") * 1e6 for r in good], fmt="o", ms=4)
        ax.set_yscale("log")
        ax.set_xlabel("cell")
        ax.set_ylabel("τ_c at base, zero field (µs)")
        F.integer_ticks(ax)
        ax.set_title(f"{NAME}: correlation time per cell (T_eff {F.format_value(result.t_eff[result.base_index[0]] if result.base_index else result.t_eff[0], None, 'K')})")
        out.append(tau)
    return out


def _listed(value: Any) -> list[float] | None:
    """A list attribute as stored (a run reopened from disk may hold it as JSON text)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = json.loads(value)
    return [float(x) for x in value]
