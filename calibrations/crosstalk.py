"""DAC crosstalk: how much every bias line moves every other cell -> the compensation matrix.

Model: ``h_i = alpha_i (V_i - V0_i) + sum_j Xt_ij V_j``, so a cell's log-odds
``logit P_i(+1) = 2 h_i / T_eff`` is *linear* in every line voltage, with slope
``r_ij = 2 Xt_ij / T_eff`` (1/V) on line ``j``. This node measures ``r`` and turns it
into the crosstalk in volts per volt, ``C_ij = Xt_ij / alpha_i``, which needs no gain
``alpha`` (see :mod:`labstack.calibrations.virtual_bias`).

Acquisition (multiplexed, so a 64-cell chip costs ~100 acquisitions, not 64^2):
the lines are split into ``groups`` interleaved groups (``j % groups``). For group
``g``, every other line sits at its cell's S-curve centre (P ~ 0.5, most sensitive)
while the lines of ``g`` are pushed ``push_V`` above theirs, so their own cells sit
saturated at +1 in every point, plus ``+-step_V`` in the sign pattern of a
Hadamard matrix's columns (a line whose centre is within ``push_V + step_V`` of the
DAC's upper limit is pushed as far below instead, its cell held at -1). Cells held
saturated never flip, so a coupling left between neighbours only shifts intercepts
and cannot pose as crosstalk. Each cell outside ``g``
then gets a weighted least-squares fit of its (misassignment-corrected) log-odds on
the line voltages of ``g``: an intercept plus one slope per line, from ``K >= |g| + 1``
orthogonal, balanced patterns.

From slopes to volts: the bias S-curve sweeps all lines together, so its width is
``w'_i = T_eff / (2 (alpha_i + X_i))`` and its centre ``V0'_i = V0_i (1 - R_i)`` with
``X_i = sum_j Xt_ij`` and ``R_i = w'_i sum_j r_ij``. Hence, exactly in the model,
``C_ij = r_ij w'_i / (1 - R_i)``, and the single-line offset and width the virtual
biases need are ``V0_i = V0'_i / (1 - R_i)`` and ``w_i = w'_i / (1 - R_i)``.

Writes ``crosstalk.matrix_V_per_V`` (rows of flagged cells zero), per cell
``cells.<i>.crosstalk_row_V_per_V``, ``cells.<i>.crosstalk_free_offset_V`` and
``cells.<i>.crosstalk_free_width_V``, and ``crosstalk.max_abs_V_per_V``. The offset and
width are a record of this calibration (comparable with a chip's single-line
values); the virtual biases recompute them from the current S-curve and ``C``, so a
re-run S-curve needs no new crosstalk measurement.

Blind spot, by design: a cell is saturated while its own group is pushed, so it
never sees the other lines of its group, ``groups`` or more channels away. Those
entries are taken as 0 (stderr NaN, ``cells.<i>.crosstalk_row_measured``): DAC
crosstalk falls off with channel distance, and nearest and next-nearest channels
(the ones that matter) are always measured. ``groups=n_cells`` measures every pair,
at ~n_cells times the cost.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import xarray as xr
from scipy.linalg import hadamard

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
from labstack.calibrations._common import idle_couplers, line_limits, run, sample_cells, settle_time
from labstack.calibrations.cell_states import digitize, n_effective
from labstack.data import values_in
from labstack.measure import Sweep

NAME = "crosstalk"
#: needs a sampler: it reads every cell at once at each of many bias points, with single-shot thresholds (a lock-in gives time averages)
READOUT_KINDS = ("sampler",)
DEPENDS_ON: tuple[str, ...] = ("bias_scurve", "bias_settling")
TIMEOUT_S = 24 * 3600.0  # DAC wiring is stable; a day
FIXED_POINT = "bias_loop"
#: a per-cell S-curve recalibration within these leaves the matrix as it was
#: (labstack.calibrate.consumes)
CONSUMES = {
    "bias_scurve": (
        Uses("cells.*.bias_offset_V", within=0.25, per="scurve_width_V",
             why="a cell's log-odds is linear in every line voltage, so its slopes do not depend "
                 "on where it is parked; parked a quarter width off centre (P(+1) 0.56) it loses "
                 "1.5 % of its information, and the pushed lines (0.3 V or more, five widths and more, "
                 "above their centres) stay saturated"),
        Uses("cells.*.scurve_width_V", within=0.1, per=RELATIVE,
             why="C_ij = r_ij w'_i / (1 - R_i) scales with the width: 10 % moves an entry by 10 % "
                 "of itself, at most the node's 0.01 V/V tolerance for |C| up to 0.1 V/V"),
    ),
}




@dataclass
class Parameters:
    groups: int = 3
    push_V: float = 0.55  # lines of the group sit this far above their S-curve centre...
    step_V: float = 0.25  # ...plus or minus this (push - step must saturate the cell)
    #: a check's step and samples: the slopes' errors go as 1 / (step sqrt(samples)), the
    #: time of a point as 2 step / (ramp rate) + samples / rate, and 0.2 V with 1250 samples
    #: keeps the errors of 0.25 V with 800 for 0.67 s a point instead of 0.72 (1 V/s lines)
    check_step_V: float = 0.2
    n_samples: int = 1000
    #: 1 ms apart, far beyond any cell's correlation time at base (microseconds, 0.1 ms for
    #: the slowest of a realistic chip), so still independent draws, and the binomial errors
    #: count the independent ones anyway (labstack.fit.two_level.effective_count). Four
    #: repeated runs at each rate on a calibrated family chain: matrix pulls rms 0.99 at
    #: 1 kHz, 1.00 at 100 Hz, V0_free 1.08 and 1.10; fridge time per run 4.8 -> 1.2 min (a
    #: 64-cell grid's first run: 25 min at 100 Hz)
    sample_rate_Hz: float = 1000.0
    settle_s: float = 1e-3
    check_samples: int = 1250
    #: a check samples ten times faster: 0.1 ms apart, still beyond most cells' correlation
    #: times (microseconds; 0.1 ms for the slowest of a realistic chip, whose draws the
    #: binomial errors then count as fewer), its entries judged at the family-wise threshold.
    #: Measured on a calibrated 64-cell chip: the check 141 s -> 72 s of fridge time (what
    #: is left is the lines' ramps between its 96 pushes), in spec; on a 16-cell chip its
    #: matrix pulls against the truth stay within 0.7-1.4 (tests/test_routines_graph.py)
    check_rate_Hz: float = 10000.0
    #: how far an entry of C may move before the node is out of spec (V/V)
    tolerance: float = 0.01
    #: the bias lines' safe range (V): a line whose centre sits within push + step of the top
    #: is pushed down instead
    limits_V: tuple[float, float] = (-1.5, 1.5)


def _paley(q: int) -> np.ndarray:
    """Hadamard matrix of order ``q + 1`` (Paley I, ``q`` a prime = 3 mod 4), rows signed
    so that its first column is all +1 (then every other column is balanced)."""
    residues = {(x * x) % q for x in range(1, q)}
    chi = np.array([0] + [1 if d in residues else -1 for d in range(1, q)])
    jacobsthal = chi[(np.arange(q)[None, :] - np.arange(q)[:, None]) % q]
    s = np.zeros((q + 1, q + 1), dtype=int)
    s[0, 1:], s[1:, 0], s[1:, 1:] = 1, -1, jacobsthal
    h = np.eye(q + 1, dtype=int) + s
    return h * h[:, :1]


def _is_prime(q: int) -> bool:
    return q > 1 and all(q % d for d in range(2, math.isqrt(q) + 1))


def patterns(n_lines: int, compact: bool = False) -> np.ndarray:
    """``(K, n_lines)`` balanced, mutually orthogonal +-1 columns (Hadamard, first column dropped).

    ``K`` is the next power of two above ``n_lines``; ``compact`` also takes the Paley
    orders (``q + 1``, ``q`` a prime = 3 mod 4: 4, 8, 12, 20, 24, 28, 32, 44, 48, ...),
    so 21 lines need 24 patterns instead of 32 (a check's pushes cost their ramps)."""
    k = 2
    while k < n_lines + 1:
        k *= 2
    if compact:
        paley = next((m for m in range(n_lines + 1, k) if m % 4 == 0 and _is_prime(m - 1)), None)
        if paley is not None:
            return _paley(paley - 1)[:, 1 : n_lines + 1].astype(float)
    return hadamard(k)[:, 1 : n_lines + 1].astype(float)


def design(n_cells: int, params: Parameters, compact: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(offsets (points, lines) added to the base voltages, group of each point); ``compact``:
    the fewest orthogonal patterns each group allows (see :func:`patterns`)."""
    rows, group_of = [], []
    for g in range(params.groups):
        lines = np.arange(g, n_cells, params.groups)
        if lines.size == 0:
            continue
        pat = patterns(lines.size, compact)
        block = np.zeros((pat.shape[0], n_cells))
        block[:, lines] = params.push_V + params.step_V * pat
        rows.append(block)
        group_of += [g] * pat.shape[0]
    return np.vstack(rows), np.array(group_of)


def push_directions(centres: np.ndarray, params: Parameters, high: np.ndarray | None = None) -> np.ndarray:
    """+1 for a line pushed above its centre, -1 below: down where up would leave the safe
    range (a chip's offsets reach within 0.8 V of a 1.5 V limit). A cell held at -1 never
    flips either, so it serves the same; the fit works on the voltages the lines had.
    ``high``: each line's upper limit (default ``params.limits_V[1]`` for every line)."""
    reach = params.push_V + params.step_V
    top = params.limits_V[1] if high is None else np.asarray(high, dtype=float)
    return np.where(centres + reach > top, -1.0, 1.0)


# ------------------------------------------------------------------- acquire
def acquire(ctx: Context, params: Parameters, mode: Mode = Mode.CALIBRATE) -> xr.Dataset:
    """Park every cell at its S-curve centre and push groups of lines in Hadamard patterns."""
    station, state = ctx.station, ctx.state
    layout = station.layout
    n = layout.n_cells
    scurve = {
        key: [state.value(f"cells.{i}.{key}", None) for i in range(n)]
        for key in ("bias_offset_V", "scurve_width_V")
    }
    errors = {
        key: [_stderr(state, f"cells.{i}.{key}") for i in range(n)]
        for key in ("bias_offset_V", "scurve_width_V")
    }
    valid = [
        all(
            f"cells.{i}.{k}" in state and state.get(f"cells.{i}.{k}").valid
            for k in ("bias_offset_V", "scurve_width_V")
        )
        for i in range(n)
    ]
    base = np.array([scurve["bias_offset_V"][i] if valid[i] else 0.0 for i in range(n)])
    full = mode is Mode.CALIBRATE
    # a check pushes the fewest patterns (72 instead of 96 on a 64-cell chip): its entries
    # are judged at their own, somewhat larger errors; a calibration keeps the powers of two
    offsets, group_of = design(n, params if full else replace(params, step_V=params.check_step_V), compact=not full)
    _, high = line_limits(ctx, layout.bias, params.limits_V)
    volts = base[None, :] + offsets * push_directions(base, params, high)[None, :]
    idle_couplers(ctx, layout)
    read = (sample_cells(station, layout, params.sample_rate_Hz, params.n_samples) if full
            else sample_cells(station, layout, params.check_rate_Hz, params.check_samples))
    sequence = Sweep(
        "point",
        {name: volts[:, i] for i, name in enumerate(layout.bias)},
        body=[read],
        settle=settle_time(ctx, params.settle_s),
        coord=np.arange(len(volts)),
    )
    meta = {
        "calibration": NAME,
        "mode": str(mode),
        "parameters": asdict(params),
        "line_volts": volts.tolist(),
        "group_of_point": group_of.tolist(),
        "scurve_offset_V": [v if ok else None for v, ok in zip(scurve["bias_offset_V"], valid, strict=True)],
        "scurve_offset_err_V": errors["bias_offset_V"],
        "scurve_width_V": [v if ok else None for v, ok in zip(scurve["scurve_width_V"], valid, strict=True)],
        "scurve_width_err_V": errors["scurve_width_V"],
    }
    return run(ctx, NAME, sequence, meta)


def _stderr(state: CalibrationState, key: str) -> float | None:
    if key not in state:
        return None
    s = state.get(key).stderr
    return None if s is None else float(s)


# ----------------------------------------------------------------------- fit
@dataclass
class CrosstalkResult:
    """Slopes ``r`` (1/V), crosstalk ``C`` (V/V) and single-line offset/width per cell."""

    slopes: np.ndarray  # (cells, lines), NaN on the diagonal and for flagged rows
    slopes_err: np.ndarray
    matrix: np.ndarray  # C, zeros on the diagonal
    matrix_err: np.ndarray
    offset_V: np.ndarray
    offset_err_V: np.ndarray
    width_V: np.ndarray
    width_err_V: np.ndarray
    chi2_reduced: np.ndarray
    flags: list[str] = field(default_factory=list)  # per cell: "" or why not calibrated

    def ok(self, i: int) -> bool:
        return not self.flags[i]


def _meta(dataset: xr.Dataset, key: str) -> list:
    value = dataset.attrs[key]
    return json.loads(value) if isinstance(value, str) else list(value)


def fit_slopes(
    logit: np.ndarray, weight: np.ndarray, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Weighted least squares ``logit = a + x @ r``; (r, r stderr, chi2_red, dof)."""
    design_m = np.column_stack([np.ones(len(x)), x])
    sw = np.sqrt(weight)
    coef, *_ = np.linalg.lstsq(design_m * sw[:, None], logit * sw, rcond=None)
    cov = np.linalg.inv(design_m.T @ (design_m * weight[:, None]))
    resid = (logit - design_m @ coef) * sw
    dof = len(logit) - design_m.shape[1]
    chi2 = float(resid @ resid / dof) if dof > 0 else math.nan
    return coef[1:], np.sqrt(np.diag(cov))[1:], chi2, dof


def fit(dataset: xr.Dataset, params: Parameters | None = None) -> CrosstalkResult:
    """Slopes per (cell, line) and the crosstalk matrix, from a stored run alone."""
    samples = values_in(dataset["samples"], "cell", "point", "sample")
    volts = np.asarray(_meta(dataset, "line_volts"), dtype=float)
    group_of = np.asarray(_meta(dataset, "group_of_point"))
    n = samples.shape[0]
    w_sc = np.array([np.nan if v is None else v for v in _meta(dataset, "scurve_width_V")])
    w_sc_err = np.array([np.nan if v is None else v for v in _meta(dataset, "scurve_width_err_V")])
    v_sc = np.array([np.nan if v is None else v for v in _meta(dataset, "scurve_offset_V")])
    v_sc_err = np.array([np.nan if v is None else v for v in _meta(dataset, "scurve_offset_err_V")])
    slopes = np.full((n, n), np.nan)
    slopes_err = np.full((n, n), np.nan)
    chi2 = np.full(n, np.nan)
    flags = [""] * n
    for i in range(n):
        if not np.isfinite(w_sc[i]) or not np.isfinite(v_sc[i]):
            flags[i] = "no bias S-curve calibration"
            continue
        chis = []
        # points where this cell's own line is not pushed: its group's points are skipped
        pushed = np.abs(volts[:, i] - np.median(volts[:, i])) > 1e-12
        own_group = set(group_of[pushed].tolist())
        # readout levels from the points that leave this line alone (all points on a chip so
        # small that every point pushes every line)
        d = digitize(samples[i][~pushed] if (~pushed).any() else samples[i])
        if not d.ok:
            flags[i] = f"no two-level signal (levels {d.separation:.1f} sigma apart)"
            continue
        states = (samples[i] > d.threshold_V).astype(np.float64)
        p_meas = states.mean(axis=-1)
        n_eff = n_effective(states)
        e = d.misassignment
        p = np.clip((p_meas - e) / (1 - 2 * e), 0.5 / n_eff, 1 - 0.5 / n_eff)
        logit = np.log(p / (1 - p))
        weight = n_eff * p * (1 - p) * (1 - 2 * e) ** 2
        for g in np.unique(group_of):
            if g in own_group:
                continue
            rows = group_of == g
            lines = np.flatnonzero(np.ptp(volts[rows], axis=0) > 0)
            r, r_err, c2, _ = fit_slopes(logit[rows], weight[rows], volts[np.ix_(rows, lines)])
            slopes[i, lines], slopes_err[i, lines] = r, r_err
            chis.append(c2)
        finite = [c for c in chis if np.isfinite(c)]
        chi2[i] = float(np.mean(finite)) if finite else math.nan
        if not chis:
            flags[i] = "no line measured"
    matrix = np.zeros((n, n))
    matrix_err = np.zeros((n, n))
    offset, offset_err = np.full(n, np.nan), np.full(n, np.nan)
    width, width_err = np.full(n, np.nan), np.full(n, np.nan)
    for i in range(n):
        if flags[i]:
            continue
        measured = np.isfinite(slopes[i])
        r, r_err = np.nan_to_num(slopes[i]), np.nan_to_num(slopes_err[i])
        big_r = w_sc[i] * r.sum()
        big_r_err = math.hypot(w_sc[i] * math.sqrt(np.sum(r_err**2)), np.nan_to_num(w_sc_err[i]) * r.sum())
        scale = 1.0 / (1.0 - big_r)
        matrix[i] = r * w_sc[i] * scale
        rel_w = np.nan_to_num(w_sc_err[i]) / w_sc[i]
        matrix_err[i] = np.hypot(r_err * w_sc[i] * scale, np.abs(matrix[i]) * rel_w)
        matrix_err[i, ~measured] = np.nan
        matrix[i, i] = matrix_err[i, i] = 0.0
        offset[i] = v_sc[i] * scale
        offset_err[i] = math.hypot(np.nan_to_num(v_sc_err[i]) * scale, abs(v_sc[i]) * big_r_err * scale**2)
        width[i] = w_sc[i] * scale
        width_err[i] = math.hypot(np.nan_to_num(w_sc_err[i]) * scale, w_sc[i] * big_r_err * scale**2)
    return CrosstalkResult(
        slopes, slopes_err, matrix, matrix_err, offset, offset_err, width, width_err, chi2, flags
    )


# --------------------------------------------------------------------- check
def check(result: CrosstalkResult, params: Parameters, state: CalibrationState) -> Verdict:
    """In spec while every measured entry of C stays within tolerance of the stored one."""
    if "crosstalk.matrix_V_per_V" not in state:
        return Verdict(Spec.OUT_OF_SPEC, "no stored crosstalk")
    n = result.matrix.shape[0]
    tolerance = Tolerance(params.tolerance, family_n_sigma(n * (n - 1)))
    verdicts = []
    for i in range(n):
        key = f"cells.{i}.crosstalk_row_V_per_V"
        if key not in state or not state.get(key).valid:
            continue
        if not result.ok(i):
            verdicts.append(Verdict(Spec.OUT_OF_SPEC, f"cell {i}: {result.flags[i]}"))
            continue
        old = np.asarray(state.value(key), dtype=float)
        old_err = np.asarray(state.get(key).stderr, dtype=float)
        for j in range(len(old)):
            if j != i and np.isfinite(result.matrix_err[i, j]) and np.isfinite(old_err[j]):
                verdicts.append(
                    tolerance.judge(
                        f"C[{i},{j}]", result.matrix[i, j], result.matrix_err[i, j], old[j], old_err[j]
                    )
                )
    return combine(verdicts)


# -------------------------------------------------------------------- update
def update(result: CrosstalkResult, params: Parameters | None = None) -> StateChange:
    """The matrix, each cell's row, and its crosstalk-free offset and width."""
    change = StateChange()
    n = result.matrix.shape[0]
    good = [i for i in range(n) if result.ok(i)]
    if not good:
        return change.fail("no cell gave a crosstalk measurement")
    for i in range(n):
        prefix = f"cells.{i}"
        if result.ok(i):
            change.set(f"{prefix}.crosstalk_row_V_per_V", result.matrix[i], result.matrix_err[i], "V/V")
            change.set(f"{prefix}.crosstalk_row_measured", np.isfinite(result.slopes[i]).tolist())
            change.set(f"{prefix}.crosstalk_free_offset_V", result.offset_V[i], result.offset_err_V[i], "V")
            change.set(f"{prefix}.crosstalk_free_width_V", result.width_V[i], result.width_err_V[i], "V")
        else:
            for key, unit in (("crosstalk_row_V_per_V", "V/V"), ("crosstalk_free_offset_V", "V"), ("crosstalk_free_width_V", "V")):
                change.flag(f"{prefix}.{key}", result.flags[i], unit)
    change.set("crosstalk.matrix_V_per_V", result.matrix, result.matrix_err, "V/V", note="rows of flagged cells are 0")
    change.set("crosstalk.max_abs_V_per_V", float(np.abs(result.matrix).max()), None, "V/V")
    return change


def table(result: CrosstalkResult) -> str:
    """Per cell: the two largest crosstalk entries and the corrected offset/width."""
    lines = [f"{'cell':>4}  {'largest C (V/V)':>28}  {'V0 (mV)':>9}  {'w (mV)':>7}  {'chi2':>5}  status"]
    for i, flag in enumerate(result.flags):
        if flag:
            lines.append(f"{i:>4}  {'—':>28}  {'—':>9}  {'—':>7}  {'—':>5}  {flag}")
            continue
        top = np.argsort(-np.abs(result.matrix[i]))[:2]
        text = ", ".join(f"{j}:{result.matrix[i, j]:+.3f}±{result.matrix_err[i, j]:.3f}" for j in top)
        lines.append(
            f"{i:>4}  {text:>28}  {result.offset_V[i] * 1e3:>9.2f}  {result.width_V[i] * 1e3:>7.2f}  "
            f"{result.chi2_reduced[i]:>5.2f}  ok"
        )
    return "\n".join(lines)


def figures(result: CrosstalkResult, dataset: xr.Dataset | None = None) -> list[Any]:
    """The crosstalk matrix C as a heat map, and each entry's significance |C| / σ.

    Unmeasured entries (a cell's own group, flagged rows) are grey, not zero.
    """
    from labstack.calibrations import _figures as F

    n = result.matrix.shape[0]
    measured = np.isfinite(result.slopes)
    matrix = np.where(measured, result.matrix, np.nan)
    errors = np.where(measured, result.matrix_err, np.nan)
    if not measured.any():
        return []
    flagged = [i for i in range(n) if result.flags[i]]
    note = f"\ngrey: unmeasured, flagged rows {flagged}" if flagged else "\ngrey: unmeasured"
    heat = F.heat_map(matrix, errors, f"{NAME}: C = Xt / α{note}", "C (V/V)",
                      xlabel="bias line j", ylabel="cell i")
    with np.errstate(invalid="ignore", divide="ignore"):
        significance = np.abs(matrix) / errors
    sig = F.heat_map(significance, None, f"{NAME}: significance\n|C| / σ per entry", "|C| / σ",
                     xlabel="bias line j", ylabel="cell i")
    return [heat, sig]
