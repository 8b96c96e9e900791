"""Bias settling: how long a bias line takes to deliver a step -> the wait every sweep needs.

A DAC step reaches the chip through the QDAC-II's output filter (its setting, the
driver's ``output_filter``: corners 10 Hz, 10 kHz, 300 kHz on the datasheet) and the
fridge line's own RC and copper-powder filters, whose time constant no datasheet
gives. Set a point and sample before the line has settled and the cells feel the
previous point: up- and down-sweeps disagree (hysteresis), rates come out of a field
that moved during the acquisition. So the line time constant is measured, with the
cells as the voltmeter.

Each calibrated cell's line steps across its S-curve, from ``V0 - s/2`` to ``V0 + s/2``
and back (``s`` two widths, within the station's ramp step so the step is one
command), all lines at once, after a long wait; the cells are sampled every
``period_s`` from ``delay`` after the step. The period is long enough that every sample
is an independent draw from the equilibrium at the field of its instant (the cells
relax in micro- to milliseconds), and the delays interleave the samples of
repetitions on a grid ``period_s / n_delays`` fine. The field follows the two-pole step
response ``V(t) = V_end - s h(t)``, ``h(t) = (t1 e^{-t/t1} - t2 e^{-t/t2}) / (t1 - t2)``
(``t1`` the filter's, known; ``t2`` the line's, fitted), and each cell is a logistic in
it, ``P(+1) = e + (1 - 2e) sigma(a_i + b_i V)`` with its misreading rate ``e`` from the
two-level split of its own readings. For each trial ``t2`` every cell's ``(a_i, b_i)`` is
fitted by maximum likelihood (Fisher scoring); ``t2`` maximises the summed profile
likelihood and its error is where that falls by one half.

The wait a sweep needs: the line's response must have come within ``residual`` of
the step (``h(t) <= residual``), with ``t2`` taken at its upper bound (``+ 3 sigma``) and
``line_spread`` more for the lines that differ from the average by their components.
Stored as ``dac.line_tau_s`` and ``dac.settle_s``; the routines that sweep after this
one wait ``max(their own settle, dac.settle_s)`` (:func:`labstack.calibrations._common.settle_time`).
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
)
from labstack.calibrations._common import (
    cell_values,
    idle_couplers,
    run,
    sample_cells,
    set_lines,
    stored_settle,
)
from labstack.calibrations.cell_states import digitize
from labstack.data import values_in
from labstack.fit import FitResult
from labstack.measure import Read, Sequence, Set, Step, Trace, Wait

NAME = "bias_settling"
#: needs a sampler: the cells are the voltmeter, read in single shots milliseconds after a
#: step; a lock-in averages over its filter window (seconds), far longer than the line settles
READOUT_KINDS = ("sampler",)
DEPENDS_ON: tuple[str, ...] = ("bias_scurve",)
TIMEOUT_S = 7 * 24 * 3600.0  # wiring and filters do not change without someone opening the fridge
FIXED_POINT = "bias_loop"
CARRIED = True
#: a per-cell S-curve recalibration within these leaves the line time constant as it was
#: (labstack.calibrate.consumes): the node steps each line across its cell's S-curve and
#: fits each cell's logistic (a_i, b_i) freely, so where exactly the step sits on the curve
#: changes only how much signal it carries, never the time constant it measures
CONSUMES = {
    "bias_scurve": (
        Uses("cells.*.bias_offset_V", within=0.25, per="scurve_width_V",
             why="the +-1-width step is centred on V0: off by a quarter width it still spans "
                 "P(+1) 0.22-0.68 instead of 0.27-0.73, the same 0.46 of signal"),
        Uses("cells.*.scurve_width_V", within=0.25, per=RELATIVE,
             why="the width only sizes the step: 25 % more or less changes the signal, "
                 "hence the error bar, not the time constant"),
    ),
}



#: QDAC-II output filter corners (datasheet), by the driver's ``output_filter`` value
FILTER_CORNER_HZ = {"dc": 10.0, "med": 10e3, "high": 300e3}


@dataclass
class Parameters:
    #: the step, in S-curve widths (capped at the station's ramp step: one command)
    step_widths: float = 2.0
    #: samples of each transient, and the time between them: long enough to be independent
    #: draws (no sample rate faster than 500 Hz is needed to see milliseconds: the delays do it)
    n_samples: int = 40
    period_s: float = 2e-3
    #: delays after the step before the first sample; they interleave on a period / n grid
    n_delays: int = 5
    repeats: int = 2
    #: wait before each step: the line must have settled from the last one (10 x 50 ms)
    wait_s: float = 0.5
    #: a check waits this many of the stored settle times (``dac.settle_s``, a residual of
    #: 1e-3; one and a half leave ~3e-5, microvolts of a step), at most ``wait_s``: a 64-cell
    #: check 12.7 -> ~7 s of fridge time. A line that slowed shows as a transient still
    #: moving, out of spec
    check_wait_settles: float = 1.5
    #: what may be left of a step when a sweep samples (2 V steps: 2 mV)
    residual: float = 1e-3
    #: lines differ from their average by their components' tolerance (+-5 %): allow for it
    line_spread: float = 0.2
    #: how far the line time constant may move (relative) before the node is out of spec
    tolerance_rel: float = 0.2


def filter_tau(name: str) -> float:
    """The QDAC-II output filter's time constant for its setting ``name``."""
    return 1.0 / (2 * math.pi * FILTER_CORNER_HZ[name.lower()])


def remainder(t: np.ndarray, t1: float, t2: float) -> np.ndarray:
    """``h(t)``: what is left of a unit step at ``t`` after two first-order poles."""
    t = np.maximum(np.asarray(t, dtype=float), 0.0)
    if abs(t1 - t2) <= 1e-9 * max(t1, t2):
        return (1 + t / t1) * np.exp(-t / t1)
    return (t1 * np.exp(-t / t1) - t2 * np.exp(-t / t2)) / (t1 - t2)


def settle_time(t1: float, t2: float, residual: float) -> float:
    """The first time at which ``h(t) <= residual``."""
    hi = 50 * max(t1, t2)
    return float(optimize.brentq(lambda t: remainder(np.array([t]), t1, t2)[0] - residual, 0.0, hi))


# ------------------------------------------------------------------- acquire
def _max_step(ctx: Context, name: str) -> float:
    safety = ctx.station.safety
    channel = safety.channels.get(name) if safety is not None else None
    return channel.ramp.max_step if channel is not None and channel.ramp is not None else math.inf


def acquire(ctx: Context, params: Parameters, mode: Mode = Mode.CALIBRATE) -> xr.Dataset:
    """Step every calibrated line across its S-curve and back; sample the transients."""
    layout = ctx.station.layout
    n = layout.n_cells
    v0 = cell_values(ctx, n, "bias_offset_V")
    width = cell_values(ctx, n, "scurve_width_V")
    good = np.isfinite(v0) & np.isfinite(width)
    if not good.any():
        raise RuntimeError("no cell has a calibrated S-curve to step across")
    steps = np.array([min(params.step_widths * w, 0.999 * _max_step(ctx, name)) for w, name in zip(np.where(good, width, 0.05), layout.bias, strict=True)])
    low = np.where(good, v0 - steps / 2, 0.0)
    high = np.where(good, v0 + steps / 2, 0.0)
    read = sample_cells(ctx.station, layout, 1.0 / params.period_s, params.n_samples)
    idle_couplers(ctx, layout)
    # every line to its first level side by side: one after another, the ramps from where
    # the last node left them (up to ~1 V at 1 V/s a line) cost a 64-cell check ~40 s
    set_lines(ctx, layout.bias, low)
    filters = {str(ctx.station.parameter(name.rsplit(".", 1)[0] + ".output_filter").get()) for name in layout.bias}
    if len(filters) != 1:
        raise RuntimeError(f"bias lines have different output filters {sorted(filters)}: settle them one filter at a time")
    delays = [k * params.period_s / params.n_delays for k in range(params.n_delays)]
    wait = params.wait_s if mode is not Mode.CHECK else stored_settle(ctx, params.wait_s, params.check_wait_settles)
    traces: list[Step] = []
    names = []
    for direction, (start, end) in (("up", (low, high)), ("down", (high, low))):
        for k, delay in enumerate(delays):
            body: list[Step] = [Set(name, float(v)) for name, v in zip(layout.bias, start, strict=True)]
            body.append(Wait(wait))
            body += [Set(name, float(v)) for name, v in zip(layout.bias, end, strict=True)]
            if delay > 0:
                body.append(Wait(delay))
            tag = f"{direction}{k}"
            body.append(Read(read.param, dims=read.dims, name=f"samples_{tag}"))
            traces.append(Trace(tag, params.repeats, 0.0, tuple(body)))
            names.append((tag, direction, delay))
    meta = {
        "mode": str(mode),
        "parameters": asdict(params),
        "traces": [list(x) for x in names],
        "filter": filters.pop(),
        "step_V": steps.tolist(),
        "low_V": low.tolist(),
        "high_V": high.tolist(),
        "measured": good.tolist(),
    }
    return run(ctx, NAME, Sequence(tuple(traces)), meta)


# ----------------------------------------------------------------------- fit
@dataclass
class SettlingResult:
    fit: FitResult  # line_tau_s, settle_s
    filter_tau_s: float
    cells: list[int] = field(default_factory=list)
    profile: tuple[np.ndarray, np.ndarray] = field(default_factory=lambda: (np.zeros(0), np.zeros(0)))
    #: time after the step, and per direction (up, down) the cells' mean state and the model's
    transient: tuple[np.ndarray, np.ndarray, np.ndarray] = field(
        default_factory=lambda: (np.zeros(0), np.zeros((2, 0)), np.zeros((2, 0)))
    )

    @property
    def ok(self) -> bool:
        return self.fit.success


def _attr(dataset: xr.Dataset, key: str):
    value = dataset.attrs[key]
    return json.loads(value) if isinstance(value, str) else value


def _cell_logistic(
    y: np.ndarray, v: np.ndarray, e: np.ndarray, start: np.ndarray | None = None, iterations: int = 30
) -> tuple[np.ndarray, np.ndarray]:
    """Per cell (rows) ``P = e + (1 - 2e) sigma(a + b v)`` by Fisher scoring; ((a, b), log-likelihood)."""
    n_cells = y.shape[0]
    vc = v - v.mean(axis=1, keepdims=True)  # centred voltages: a and b nearly uncorrelated
    ab = np.zeros((n_cells, 2)) if start is None else start.copy()
    if start is None:
        ab[:, 1] = 1.0 / np.maximum(vc.std(axis=1), 1e-6)
    for _ in range(iterations):
        z = np.clip(ab[:, :1] + ab[:, 1:] * vc, -30, 30)
        q = 1 / (1 + np.exp(-z))
        p = np.clip(e[:, None] + (1 - 2 * e[:, None]) * q, 1e-12, 1 - 1e-12)
        dp = (1 - 2 * e[:, None]) * q * (1 - q)
        r = (y - p) / (p * (1 - p)) * dp
        w = dp**2 / (p * (1 - p))
        g = np.stack([r.sum(axis=1), (r * vc).sum(axis=1)], axis=1)
        i00, i01, i11 = w.sum(axis=1), (w * vc).sum(axis=1), (w * vc * vc).sum(axis=1)
        det = np.maximum(i00 * i11 - i01**2, 1e-300)
        step = np.stack([(i11 * g[:, 0] - i01 * g[:, 1]) / det, (i00 * g[:, 1] - i01 * g[:, 0]) / det], axis=1)
        ab += step
        if np.max(np.abs(step)) < 1e-10:
            break
    # a cell's P(+1) rises with its field: a falling fit is no fit (at t -> infinity the two
    # directions swap their voltages, and a slope of the wrong sign would fit them as well)
    falling = ab[:, 1] < 0
    if falling.any():
        mean = np.clip((y.mean(axis=1) - e) / (1 - 2 * e), 1e-9, 1 - 1e-9)
        ab[falling] = np.stack([np.log(mean / (1 - mean)), np.zeros_like(mean)], axis=1)[falling]
    z = np.clip(ab[:, :1] + ab[:, 1:] * vc, -30, 30)
    p = np.clip(e[:, None] + (1 - 2 * e[:, None]) / (1 + np.exp(-z)), 1e-12, 1 - 1e-12)
    return ab, np.sum(y * np.log(p) + (1 - y) * np.log1p(-p), axis=1)


def fit(dataset: xr.Dataset, params: Parameters | None = None) -> SettlingResult:
    """The line time constant from the transients of a stored run. Pure."""
    params = params or Parameters()
    traces = _attr(dataset, "traces")
    t1 = filter_tau(str(dataset.attrs["filter"]))
    low, high = np.asarray(_attr(dataset, "low_V")), np.asarray(_attr(dataset, "high_V"))
    measured = np.asarray(_attr(dataset, "measured"), dtype=bool)
    period = params.period_s
    states, times, ups = [], [], []
    readings = {tag: values_in(dataset[f"samples_{tag}"], "cell", tag, "sample") for tag, _, _ in traces}
    pooled = np.concatenate([r.reshape(r.shape[0], -1) for r in readings.values()], axis=1)
    splits = [digitize(pooled[i]) for i in range(pooled.shape[0])]
    cells = [i for i in range(pooled.shape[0]) if measured[i] and splits[i].ok]
    if len(cells) < 2:
        return SettlingResult(FitResult.failed("line_settling", f"{len(cells)} cells switch: too few"), t1)
    for tag, direction, delay in traces:
        r = readings[tag][cells]  # (cell, repeat, sample)
        thr = np.array([splits[i].threshold_V for i in cells])[:, None, None]
        states.append((r > thr).reshape(len(cells), -1))
        t = delay + period * (np.arange(r.shape[2]) + 1.0)
        times.append(np.tile(t, r.shape[1]))
        ups.append(np.full(r.shape[1] * r.shape[2], direction == "up"))
    y = np.concatenate(states, axis=1).astype(float)
    t_all = np.concatenate(times)
    up = np.concatenate(ups)
    e = np.array([splits[i].misassignment for i in cells])
    lo, hi = low[cells][:, None], high[cells][:, None]

    def volts(t2: float) -> np.ndarray:
        h = remainder(t_all, t1, t2)[None, :]
        return np.where(up[None, :], hi - (hi - lo) * h, lo + (hi - lo) * h)

    memo: dict[float, tuple[float, np.ndarray]] = {}

    def neg_loglike(log_t2: float) -> float:
        key = round(float(log_t2), 12)
        if key not in memo:
            ab, ll = _cell_logistic(y, volts(math.exp(log_t2)), e)
            memo[key] = (-float(ll.sum()), ab)
        return memo[key][0]

    grid = np.log(np.geomspace(max(period / 50, 2 * t1), 0.5, 40))
    values = np.array([neg_loglike(g) for g in grid])
    k = int(np.argmin(values))
    bracket = (grid[max(k - 1, 0)], grid[k], grid[min(k + 1, grid.size - 1)])
    if k == grid.size - 1:
        return SettlingResult(
            FitResult.failed("line_settling", f"the lines settle slower than {math.exp(grid[-1]):.3g} s"),
            t1, cells, (np.exp(grid), values),
        )
    if k == 0:
        # faster than the samples resolve: the data give only an upper limit U (where the
        # likelihood has fallen by 1/2); report the middle of 0 .. U with an error of U / 2
        nll = float(values[0])
        upper = math.exp(optimize.brentq(lambda x: neg_loglike(x) - nll - 0.5, grid[0], grid[-1]))
        t2, err = upper / 2, upper / 2
    else:
        best = optimize.minimize_scalar(neg_loglike, bracket=bracket, method="brent", options={"xtol": 1e-6})
        log_t2 = float(best.x)
        nll = float(best.fun)
        # profile likelihood: where it rises by 1/2 on either side
        bounds = []
        for sign in (-1.0, 1.0):
            far = log_t2 + sign * 3.0
            try:
                bounds.append(optimize.brentq(lambda x: neg_loglike(x) - nll - 0.5, log_t2, far))
            except ValueError:
                bounds.append(far)
        t2 = math.exp(log_t2)
        err = t2 * 0.5 * abs(bounds[1] - bounds[0])
    upper = t2 + 3 * err
    settle = settle_time(t1, upper * (1 + params.line_spread), params.residual)
    ab, _ = _cell_logistic(y, volts(t2), e)
    v = volts(t2)
    vc = v - v.mean(axis=1, keepdims=True)
    model = e[:, None] + (1 - 2 * e[:, None]) / (1 + np.exp(-np.clip(ab[:, :1] + ab[:, 1:] * vc, -30, 30)))
    grid_t = np.unique(np.round(t_all, 12))
    # a delay taken in one step direction only has no point in the other: NaN there (not plotted)
    data_mean = _mean_by_delay(y, t_all, up, grid_t)
    model_mean = _mean_by_delay(model, t_all, up, grid_t)
    result = FitResult(
        "line_settling",
        {"line_tau_s": t2, "settle_s": settle},
        {"line_tau_s": err, "settle_s": 0.0},
        dof=int(y.size) - 2 * len(cells) - 1,
        absolute_sigma=True,
        extra={"filter_tau_s": t1},
    )
    return SettlingResult(result, t1, cells, (np.exp(grid), values), (grid_t, data_mean, model_mean))


# --------------------------------------------------------------------- check
def check(result: SettlingResult, params: Parameters, state: CalibrationState) -> Verdict:
    """In spec while the line time constant stays within tolerance of the stored one."""
    key = "dac.line_tau_s"
    if key not in state or not state.get(key).valid:
        return Verdict(Spec.OUT_OF_SPEC, "no stored line time constant")
    if not result.ok:
        return Verdict(Spec.BAD_DATA, result.fit.message)
    old = state.get(key)
    value, err = result.fit["line_tau_s"], result.fit.error("line_tau_s")
    return combine([Tolerance(params.tolerance_rel * float(old.value)).judge("line tau", value, err, old.value, old.stderr)])


# -------------------------------------------------------------------- update
def update(result: SettlingResult, params: Parameters | None = None) -> StateChange:
    change = StateChange()
    if not result.ok:
        return change.fail(result.fit.message)
    f = result.fit
    change.set("dac.line_tau_s", f["line_tau_s"], f.error("line_tau_s"), "s", note="line_settling")
    change.set("dac.settle_s", f["settle_s"], None, "s", note=f"h(t) <= residual, filter tau {result.filter_tau_s:.3g} s")
    return change


def table(result: SettlingResult) -> str:
    f = result.fit
    if not f.success:
        return f"bias settling: FAILED ({f.message})"
    return (
        f"line time constant {f['line_tau_s'] * 1e3:.3f} ± {f.error('line_tau_s') * 1e3:.3f} ms "
        f"(output filter {result.filter_tau_s * 1e6:.3g} us, {len(result.cells)} cells); "
        f"sweeps wait {f['settle_s'] * 1e3:.1f} ms"
    )


def figures(result: SettlingResult, dataset: xr.Dataset | None = None) -> list[Any]:
    """The cells' mean state after an up and a down step with the fitted model; the profile
    likelihood of the line's time constant."""
    from matplotlib.figure import Figure

    out = []
    t, data, model = result.transient
    if t.size:
        fig = Figure(figsize=(7, 3.2), layout="constrained")
        ax = fig.add_subplot()
        for k, (label, colour) in enumerate((("step up", "C3"), ("step down", "C0"))):
            ax.plot(t * 1e3, data[k], "o", ms=3, color=colour, label=f"{label}: cells' mean state")
            ax.plot(t * 1e3, model[k], "-", lw=1, color=colour, label=f"{label}: model")
        ax.set_xscale("log")
        ax.set_xlabel("time after the step (ms)")
        ax.set_ylabel("P(+1), mean over cells")
        ax.legend(fontsize=7)
        tau = result.fit.values.get("line_tau_s", math.nan)
        ax.set_title(f"{NAME}: transients, line tau {tau * 1e3:.2f} ms" if result.ok else f"{NAME}: {result.fit.message}")
        out.append(fig)
    taus, nll = result.profile
    if taus.size:
        fig = Figure(figsize=(7, 3.2), layout="constrained")
        ax = fig.add_subplot()
        ax.plot(taus * 1e3, nll - nll.min(), "-", color="C0")
        if result.ok:
            f = result.fit
            ax.axvline(f["line_tau_s"] * 1e3, color="C1", lw=1)
            ax.axvspan((f["line_tau_s"] - f.error("line_tau_s")) * 1e3, (f["line_tau_s"] + f.error("line_tau_s")) * 1e3,
                       color="C1", alpha=0.2)
        ax.set_xscale("log")
        ax.set_xlabel("line time constant (ms)")
        ax.set_ylabel("-log likelihood (from its minimum)")
        ax.set_title(f"{NAME}: profile likelihood of the line time constant")
        out.append(fig)
    return out


def _mean_by_delay(values: np.ndarray, t_all: np.ndarray, up: np.ndarray, grid_t: np.ndarray) -> np.ndarray:
    """Mean of ``values`` over cells and points at each delay, per step direction (up, down)."""
    out = np.full((2, grid_t.size), np.nan)
    for row, direction in enumerate((True, False)):
        for col, t in enumerate(grid_t):
            mask = (t_all == t) & (up == direction)
            if mask.any():
                out[row, col] = values[:, mask].mean()
    return out
