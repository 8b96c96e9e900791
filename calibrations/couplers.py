"""Couplings: pair statistics vs coupler voltage -> slope kappa / T_eff and zero Vc0 per coupler.

For two cells with fields ``theta_a, theta_b`` and coupling ``beta = J / T_eff``,
``P(s_a, s_b) ∝ exp(theta_a s_a + theta_b s_b + beta s_a s_b)``, so the log odds ratio
of their joint table,

    beta = 1/4 log( P(++) P(--) / (P(+-) P(-+)) ),

is the coupling alone, whatever the fields. That makes the measurement robust to
the residual field errors of the bias calibration: cells are parked at zero
detuning through the virtual biases (crosstalk compensated) only so that all
four outcomes are well populated. With ``J = kappa (Vc - Vc0)``, ``beta`` is linear
in the coupler voltage; a weighted straight-line fit gives the slope
``kappa / T_eff`` (1/V) and the zero-coupling voltage ``Vc0``.

Couplers are swept a matching at a time (a greedy edge colouring: two for a chain,
four for a grid), so no cell is touched by two active couplers; the idle ones sit
at the current zero-coupling estimate. The readout's misassignment (from each
cell's own two-level fit) is undone on the 2x2 table before the log odds ratio:
ignoring it would pull ``beta`` toward zero by ~(1 - 2e)^2.

``kappa`` in K/V needs ``T_eff``: when the state has the excess-noise floor
``noise.t_excess_K`` (effective-temperature node) the chip thermometer is read and
``T_eff = (T_chip^n + T_x^n)^(1/n)`` (n = 2, design knowledge) converts the slope;
otherwise only ``kappa_over_teff_per_V`` is stored.

Writes ``couplers.<k>.zero_coupling_V``, ``couplers.<k>.kappa_over_teff_per_V`` and
(when ``T_eff`` is known) ``couplers.<k>.kappa_K_per_V``.
"""

from __future__ import annotations

import json
import math
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
from labstack.calibrations._common import run, sample_cells, set_lines, settle_time
from labstack.calibrations.cell_states import digitize_cells
from labstack.calibrations.virtual_bias import BiasModel, coupler_zeros
from labstack.data import values_in
from labstack.fit import FitResult
from labstack.measure import Sweep

NAME = "couplers"
#: needs a sampler: it measures spin-spin correlations, which need simultaneous single shots of neighbours (a lock-in gives time averages)
READOUT_KINDS = ("sampler",)
DEPENDS_ON: tuple[str, ...] = ("crosstalk", "effective_temperature")
TIMEOUT_S = 8 * 3600.0
FIXED_POINT = "bias_loop"
CONVERGES = ("couplers.*.zero_coupling_V", "couplers.*.kappa_over_teff_per_V")


T_EFF_EXPONENT = 2.0  # design knowledge: T_eff = (T_chip^n + T_x^n)^(1/n)


@dataclass
class Parameters:
    span_V: float = 0.4  # coupler voltages swept over zero estimate +- span
    n_points: int = 9
    n_samples: int = 6000
    sample_rate_Hz: float = 200e3
    settle_s: float = 1e-3
    check_points: int = 3
    check_samples: int = 1500
    tolerance_V: float = 0.01  # Vc0 may move this far before the node is out of spec


def matchings(pairs: list[tuple[int, int]]) -> list[list[int]]:
    """Coupler indices grouped so that no two in a group share a cell (greedy edge colouring)."""
    colours: list[list[int]] = []
    busy: list[set[int]] = []
    for k, (a, b) in enumerate(pairs):
        for c, cells in enumerate(busy):
            if a not in cells and b not in cells:
                colours[c].append(k)
                cells.update((a, b))
                break
        else:
            colours.append([k])
            busy.append({a, b})
    return colours


def t_eff_from_state(ctx: Context) -> float | None:
    """``T_eff`` from ``noise.t_excess_K`` and the chip thermometer, or None if unknown."""
    key = "noise.t_excess_K"
    if key not in ctx.state or not ctx.state.get(key).valid:
        return None
    layout = ctx.station.layout
    if not layout.thermometer_chip:
        return None
    t_chip = float(ctx.station.parameter(layout.thermometer_chip).get())
    t_x = float(ctx.state.value(key))
    n = T_EFF_EXPONENT
    return float((t_chip**n + t_x**n) ** (1 / n))


# ------------------------------------------------------------------- acquire
def acquire(ctx: Context, params: Parameters, mode: Mode = Mode.CALIBRATE) -> xr.Dataset:
    """Park cells at zero detuning; sweep each matching of couplers around its zero estimate."""
    station, state = ctx.station, ctx.state
    layout = station.layout
    n, pairs = layout.n_cells, [tuple(p) for p in layout.coupler_pairs]
    model = BiasModel.from_state(state, n)
    set_lines(ctx, layout.bias, model.voltages_for_detuning(np.zeros(n)))  # the cells parked
    zero = coupler_zeros(state, len(pairs))
    full = mode is Mode.CALIBRATE
    offsets = np.linspace(-params.span_V, params.span_V, params.n_points if full else params.check_points)
    rows, active = [], []
    for group in matchings(pairs):
        for dv in offsets:
            v = zero.copy()
            v[group] += dv
            rows.append(v)
            mask = np.zeros(len(pairs), dtype=bool)
            mask[group] = True
            active.append(mask)
    volts = np.array(rows)
    read = sample_cells(station, layout, params.sample_rate_Hz, params.n_samples if full else params.check_samples)
    sequence = Sweep(
        "point",
        {name: volts[:, k] for k, name in enumerate(layout.couplers)},
        body=[read],
        settle=settle_time(ctx, params.settle_s),
        coord=np.arange(len(volts)),
    )
    meta = {
        "calibration": NAME,
        "mode": str(mode),
        "parameters": asdict(params),
        "pairs": [list(p) for p in pairs],
        "coupler_volts": volts.tolist(),
        "active": np.array(active).tolist(),
        "cell_valid": model.valid.tolist(),
        "t_eff_K": t_eff_from_state(ctx),
    }
    return run(ctx, NAME, sequence, meta)


# ----------------------------------------------------------------------- fit
@dataclass
class CouplerResult:
    coupler: int
    pair: tuple[int, int]
    fit: FitResult  # values: slope_per_V (kappa/T_eff), vc0_V; kappa_K_per_V if T_eff known
    beta: np.ndarray = field(default_factory=lambda: np.zeros(0))
    beta_err: np.ndarray = field(default_factory=lambda: np.zeros(0))
    volts: np.ndarray = field(default_factory=lambda: np.zeros(0))
    flag: str = ""

    @property
    def ok(self) -> bool:
        return not self.flag and self.fit.success


def _attr(dataset: xr.Dataset, key: str):
    value = dataset.attrs.get(key)
    return json.loads(value) if isinstance(value, str) else value


def unmix(table: np.ndarray, e_a: float, e_b: float) -> np.ndarray:
    """Undo symmetric misassignment on a 2x2 joint table (rows: cell a 0/1, columns: cell b)."""
    m_a = np.array([[1 - e_a, e_a], [e_a, 1 - e_a]])
    m_b = np.array([[1 - e_b, e_b], [e_b, 1 - e_b]])
    return np.linalg.solve(m_a, np.linalg.solve(m_b, table.T).T)


def log_odds_coupling(
    s_a: np.ndarray, s_b: np.ndarray, e_a: float, e_b: float
) -> tuple[float, float]:
    """``beta = J / T_eff`` and its stderr from two cells' simultaneous 0/1 states."""
    n = s_a.size
    table = np.array(
        [[np.sum((s_a == x) & (s_b == y)) for y in (0, 1)] for x in (0, 1)], dtype=float
    ) / n
    p = np.clip(unmix(table, e_a, e_b), 0.5 / n, None)
    beta = 0.25 * math.log(p[1, 1] * p[0, 0] / (p[1, 0] * p[0, 1]))
    n_eff = max(n / integrated_time(influence(s_a, s_b, table)), 1.0)
    var = np.sum(1.0 / (n_eff * p)) / 16.0 / ((1 - 2 * e_a) * (1 - 2 * e_b)) ** 2
    return beta, math.sqrt(var)


def influence(s_a: np.ndarray, s_b: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Each sample's contribution to the log odds ratio, ``+-1 / (4 P(s_a, s_b))``.

    The estimator's variance is that of the mean of this series, so its correlation
    time, not either cell's, sets how many samples count: for two cells switching
    independently it decays as the *product* of their autocorrelations, much faster
    than the slower cell's (taking the slower cell's count overstated the error
    ~1.3-1.5x at the sample rates used here).
    """
    index = (np.asarray(s_a) > 0.5).astype(int) * 2 + (np.asarray(s_b) > 0.5).astype(int)
    sign = np.array([1.0, -1.0, -1.0, 1.0])
    return 0.25 * sign[index] / np.clip(table.ravel(), 0.5 / index.size, None)[index]


def integrated_time(x: np.ndarray) -> float:
    """Integrated autocorrelation time (samples) of a series, ``1 + 2 sum_k rho_k``.

    ``rho_k`` is taken geometric beyond lag 1, ``rho_1 (rho_2 / rho_1)^(k-1)``: exact
    for a Markov chain and, unlike lag 1 alone, it follows a decay whose first step is
    cut by independent misreadings. Clipped to a decay ratio of 0.99; anticorrelation
    counts as none.
    """
    y = np.asarray(x, dtype=float) - float(np.mean(x))
    var = float(np.mean(y * y))
    if not var > 0 or y.size < 3:
        return 1.0
    r1 = float(np.clip(np.mean(y[1:] * y[:-1]) / var, 0.0, 0.99))
    r2 = float(np.mean(y[2:] * y[:-2]) / var)
    ratio = float(np.clip(r2 / r1, 0.0, 0.99)) if r1 > 0 else 0.0
    return 1.0 + 2.0 * r1 / (1.0 - ratio)


def fit_line(v: np.ndarray, beta: np.ndarray, err: np.ndarray, t_eff: float | None) -> FitResult:
    """``beta = slope (V - Vc0)`` by weighted least squares; Fisher errors, absolute sigma."""
    w = 1.0 / err**2
    a = np.column_stack([np.ones_like(v), v])
    cov = np.linalg.inv(a.T @ (a * w[:, None]))
    coef = cov @ (a.T @ (w * beta))
    intercept, slope = coef
    dof = len(v) - 2
    chi2 = float(np.sum(w * (beta - a @ coef) ** 2) / dof) if dof > 0 else math.nan
    if not abs(slope) > 5 * math.sqrt(cov[1, 1]):
        return FitResult.failed("coupling_line", f"no significant coupling slope ({slope:.3g}/V)")
    vc0 = -intercept / slope
    grad = np.array([-1.0 / slope, intercept / slope**2])
    values = {"slope_per_V": float(slope), "vc0_V": float(vc0)}
    stderr = {"slope_per_V": math.sqrt(cov[1, 1]), "vc0_V": float(math.sqrt(grad @ cov @ grad))}
    if t_eff is not None:
        values["kappa_K_per_V"] = float(slope * t_eff)
        stderr["kappa_K_per_V"] = stderr["slope_per_V"] * t_eff
    return FitResult(
        model="coupling_line", values=values, stderr=stderr, chi2_reduced=chi2, dof=dof,
        absolute_sigma=True,
    )


def fit(dataset: xr.Dataset, params: Parameters | None = None) -> list[CouplerResult]:
    """Per coupler: beta at each voltage, and the straight line through them. Pure."""
    samples = values_in(dataset["samples"], "cell", "point", "sample")
    pairs = [tuple(p) for p in _attr(dataset, "pairs")]
    volts = np.asarray(_attr(dataset, "coupler_volts"), dtype=float)
    active = np.asarray(_attr(dataset, "active"), dtype=bool)
    valid = _attr(dataset, "cell_valid")
    t_eff = _attr(dataset, "t_eff_K")
    cells = digitize_cells(samples, sorted({c for p in pairs for c in p}))
    results = []
    for k, (a, b) in enumerate(pairs):
        bad = [c for c in (a, b) if not valid[c] or not cells[c].ok]
        if bad:
            reason = f"cell(s) {bad} not calibrated or without two-level readout"
            results.append(CouplerResult(k, (a, b), FitResult.failed("coupling_line", reason), flag="cell_unusable"))
            continue
        rows = np.flatnonzero(active[:, k])
        da, db = cells[a], cells[b]
        stats = [log_odds_coupling(da.states[r], db.states[r], da.misassignment, db.misassignment) for r in rows]
        beta = np.array([s[0] for s in stats])
        err = np.array([s[1] for s in stats])
        line = fit_line(volts[rows, k], beta, err, t_eff)
        results.append(
            CouplerResult(k, (a, b), line, beta, err, volts[rows, k], flag="" if line.success else "fit_failed")
        )
    return results


# --------------------------------------------------------------------- check
def check(results: list[CouplerResult], params: Parameters, state: CalibrationState) -> Verdict:
    """In spec while every calibrated coupler's zero stays within tolerance."""
    tolerance = Tolerance(params.tolerance_V, family_n_sigma(len(results)))
    verdicts = []
    for r in results:
        key = f"couplers.{r.coupler}.zero_coupling_V"
        if key not in state or not state.get(key).valid:
            continue
        if not r.ok:
            verdicts.append(Verdict(Spec.BAD_DATA, f"coupler {r.coupler}: {r.fit.message}"))
            continue
        old = state.get(key)
        verdicts.append(tolerance.judge(f"coupler {r.coupler} Vc0", r.fit["vc0_V"], r.fit.error("vc0_V"), old.value, old.stderr))
    return combine(verdicts)


# -------------------------------------------------------------------- update
def update(results: list[CouplerResult], params: Parameters | None = None) -> StateChange:
    change = StateChange()
    if results and not any(r.ok for r in results):
        return change.fail("no coupler could be calibrated")
    for r in results:
        prefix = f"couplers.{r.coupler}"
        keys = {"vc0_V": ("zero_coupling_V", "V"), "slope_per_V": ("kappa_over_teff_per_V", "1/V")}
        if "kappa_K_per_V" in r.fit.values:
            keys["kappa_K_per_V"] = ("kappa_K_per_V", "K/V")
        if r.ok:
            change.add_fit(prefix, r.fit, keys)
        else:
            for suffix, unit in keys.values():
                change.flag(f"{prefix}.{suffix}", f"{r.flag}: {r.fit.message}", unit)
    return change


def table(results: list[CouplerResult]) -> str:
    lines = [f"{'k':>3} {'pair':>7}  {'Vc0 (mV)':>14}  {'kappa/T (1/V)':>15}  {'chi2':>5}  status"]
    for r in results:
        pair = f"{r.pair[0]}-{r.pair[1]}"
        if r.ok:
            f = r.fit
            lines.append(
                f"{r.coupler:>3} {pair:>7}  {f['vc0_V'] * 1e3:>7.2f} ± {f.error('vc0_V') * 1e3:<4.2f}  "
                f"{f['slope_per_V']:>7.3f} ± {f.error('slope_per_V'):<5.3f}  {f.chi2_reduced:>5.2f}  ok"
            )
        else:
            lines.append(f"{r.coupler:>3} {pair:>7}  {'—':>14}  {'—':>15}  {'—':>5}  {r.flag}: {r.fit.message}")
    return "\n".join(lines)


def figures(results: list[CouplerResult], dataset: xr.Dataset | None = None) -> list[Any]:
    """β = J / T_eff against each coupler's voltage, the fitted line through zero at Vc0, residuals."""
    from labstack.calibrations import _figures as F

    shown = results[: F.MAX_PANELS]
    if not shown:
        return []
    fig, axes, resid = F.panels_with_residuals(len(shown), f"{NAME}: coupling β = J / T_eff vs coupler voltage")
    xlabel = "coupler voltage (V)"
    for ax, rax, r in zip(axes, shown and resid, shown, strict=False):
        title = f"coupler {r.coupler} ({r.pair[0]}–{r.pair[1]})"
        if r.beta.size == 0:
            F.failed_panel(ax, rax, f"{title}: {r.flag}", r.fit.message, xlabel, "β")
            continue
        ax.errorbar(r.volts, r.beta, r.beta_err, fmt="o", ms=3)
        ax.axhline(0, color="0.6", lw=0.6)
        ax.set_ylabel("β = J / T_eff")
        if r.ok:
            f = r.fit
            line = f["slope_per_V"] * (r.volts - f["vc0_V"])
            ax.plot(r.volts, line, color="C1", lw=1)
            F.residuals(rax, r.volts, (r.beta - line) / r.beta_err, xlabel)
            ax.set_title(f"{title}: {F.value_text('Vc0', f['vc0_V'], f.error('vc0_V'), 'V')}\n"
                         f"{F.value_text('κ/T', f['slope_per_V'], f.error('slope_per_V'), '1/V')}", fontsize=7)
        else:
            ax.set_title(f"{title}: {r.flag}", fontsize=7, color="#b00")
            ax.set_xlabel(xlabel)
            ax.tick_params(labelbottom=True)
            rax.set_visible(False)
    return [fig]
