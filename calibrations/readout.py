"""Readout: each cell's two readout levels, their leak into neighbours, threshold and fidelity.

A cryogenic readout chain is not a pair of clean Gaussians per cell: a little of
each channel leaks into its neighbours, the amplifier has 1/f noise that moves a
channel's level from one acquisition to the next, and the noise sets an assignment
fidelity below one. So every bias line is driven far beyond any cell's switching
point in four configurations of the even- and odd-numbered cells (both low, odd
high, both high, even high), each cell's readings averaged in each, and its level
fitted as

    m = offset + amp * s_own + leak * s_neighbours

(channels ``i +- 1`` always have the other parity, so the four configurations make
``offset``, ``amp`` and ``leak`` orthogonal contrasts). Averages taken tens of
seconds apart differ by the amplifier's low-frequency wander far more than by
their white noise, so the error of each average is measured, not assumed: a trace
of acquisitions, ``trace_spacing_s`` apart, gives the wander's structure function
``D(lag) = <(m(t + lag) - m(t))^2>``, and each configuration's average counts with
variance ``D(T) / 2`` at ``T``, the time between configurations (independent
errors: a slight overstatement for neighbouring configurations, fine for the
contrasts, which span them).

From the fitted levels: the noise ``sigma`` (within an acquisition, cells saturated),
the threshold halfway between the levels, and the fidelity of that threshold with
the neighbours in either state and the level wandering about it as the trace says
(``s^2 = D(run) / 2``), ``F = 1 - (Phi(-(amp + leak)/sigma_t) + Phi(-(amp - leak)/sigma_t)) / 2``,
``sigma_t^2 = sigma^2 + s^2``. The offset's error includes ``s^2`` too: it is the level
of the run, wherever the wander had it. A fast acquisition (10 MHz) of the noise alone gives the
amplifier's low-pass time constant from its autocorrelation,
``a = (rho1 - rho2) / (1 - rho1) = exp(-dt / tau)`` (immune to the slow part of the
noise, which adds the same to ``rho1`` and ``rho2``): the readout bandwidth other
routines choose their sample rates by.

The swing holds a cell at one level only if its line, plus what DAC crosstalk from its
neighbours' lines adds, stays several widths beyond its offset; a cell with its offset
far out (large fabrication spread) can still switch in a configuration that pulls it
back. Its readings there are a mixture of its two levels: their variance rises above
its quietest configuration's and they skew towards the other level
(:data:`SWITCHING_RATIO`; a level merely noisier than the other stays symmetric). Such
an acquisition is left out of that cell's noise and wander, and of its levels unless
the mean it moved (about the excess variance over the level separation) is below the
mean's own error (the wander then taken from the chain's other
cells, per unit of noise), and a cell caught switching in two configurations is
``unsaturated``, not fitted (offset, amplitude and leak need three). Without this, one
switching configuration biased a cell's amplitude by several sigma, or made a live cell
read as dead.

A cell whose levels are not ``min_separation_sigma`` apart is broken. Which way is
decided from where its mean reading sits among the healthy cells: a **dead** cell
(no signal) reads its offset, a **stuck** cell reads ``offset +- amp``. The healthy
cells' offsets and amplitudes give the three hypotheses' Gaussian likelihoods (their
spread includes the cell-to-cell scatter), and the most likely one is reported with
its posterior probability: with offsets scattered by a few tenths of the amplitude
the call is a best guess, not a certainty, and the table says how sure it is.
Both kinds are flagged invalid; neither stops the other cells.

With lock-in readout (the station's readout role) there are no single shots: each
line's time-averaged level at ``v_low`` and ``v_high`` is read ``reads`` times
(:mod:`._lockin`), the two means are the levels and the reads' spread the noise.
A time average has no assignment fidelity, leak contrast or amplifier bandwidth
(the lock-in's filter is far narrower than the amplifier's), so none is stored; the
threshold is the midpoint, for routines that need one. Broken cells are called as above.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import xarray as xr
from scipy import special, stats

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
from labstack.calibrations._common import idle_couplers, run, sample_cells, stored_settle
from labstack.data import values_in
from labstack.fit import FitResult
from labstack.measure import Read, Sequence, Set, Sweep, Trace

NAME = "readout"
READOUT_KINDS = ("sampler", "lockin")
DEPENDS_ON: tuple[str, ...] = ()
TIMEOUT_S = 24 * 3600.0

#: health labels a cell can get (stored as ``cells.<i>.health``)
HEALTHY, DEAD, STUCK_PLUS, STUCK_MINUS = "ok", "dead", "stuck_plus", "stuck_minus"
#: a cell that switched in two configurations or more: its levels were not measured
UNSATURATED = "unsaturated"

#: an acquisition whose variance exceeds the cell's quietest by this factor, with its
#: readings skewed beyond :data:`SWITCHING_SKEW`, caught it switching: a few per cent of
#: readings at the other level add ~amp^2 p to the variance and skew the distribution
#: towards that level, where wider Gaussian noise would not skew it. On the fresh family's
#: 19 readout runs every acquisition above 1.2 x was one of eight cells switching, and
#: acquisitions within 1.1 x had |skew| <= 0.28 (five chips checked). A variance beyond
#: :data:`SWITCHING_WIDE` x is switching whatever its shape (near the offset the mixture
#: is symmetric)
SWITCHING_RATIO = 1.25
SWITCHING_SKEW = 0.5
SWITCHING_WIDE = 4.0


def switching_acquisitions(variance: np.ndarray, skewness: np.ndarray, quiet: np.ndarray) -> np.ndarray:
    """Which acquisitions caught their cell switching (same shape as ``variance``; ``quiet``:
    each cell's quietest variance, broadcast against it)."""
    ratio = variance / quiet
    return ((ratio > SWITCHING_RATIO) & (np.abs(skewness) > SWITCHING_SKEW)) | (ratio > SWITCHING_WIDE)


#: (even cells, odd cells) in each configuration: -1 at v_low, +1 at v_high; ordered so
#: that each step moves one parity only
CONFIGS = ((-1, -1), (-1, 1), (1, 1), (1, -1))


@dataclass
class Parameters:
    v_low: float = -1.0
    v_high: float = 1.0
    n_samples: int = 2000
    sample_rate_Hz: float = 2e6
    #: wait after the lines arrive; this node runs before the line settling is measured, so
    #: ten times the slowest line filter a bias line has (RC <= 50 ms)
    settle_s: float = 0.5
    #: acquisitions of the wander trace, and the time between them
    trace_points: int = 40
    trace_spacing_s: float = 5.0
    #: a check's trace: the wander it needs is that of an average a couple of seconds apart,
    #: which eight acquisitions measure to ~50 % (the chi-square threshold allows for the
    #: short trace: F(1, 7)); the full trace was three quarters of the check's fridge time
    check_trace_points: int = 8
    #: ...spaced as the check's four configurations are (a 2 V ramp and the lines' measured
    #: settle time, 2.1 s), so the wander is read at the lag the fit needs. 12 points 2.5 s
    #: apart (settle 0.5 s) cost a check 37.3 s, 8 points 2.1 s apart 23.8 s; false alarms
    #: on unchanged 16-cell readouts (eight seeds, 15 checks each): 1 in 120, 0 in 60 before
    check_trace_spacing_s: float = 2.1
    #: the noise-only acquisition that gives the amplifier's bandwidth
    fast_rate_Hz: float = 10e6
    #: levels closer than this (in noise sigmas) are one level: the cell shows no signal
    #: (the weakest cells a realistic readout resolves sit at 2.5-4 sigma)
    min_separation_sigma: float = 2.0
    check_samples: int = 500
    #: how far a level may move (V) before the readout is out of spec: a 1 mV shift of
    #: a 5 mV half-separation moves the threshold error from 1e-9 to ~1e-5
    tolerance_V: float = 1e-3
    #: how a lock-in readout is driven (used only when the readout role is lock-ins)
    lockin: _lockin.LockinSettings = field(default_factory=lambda: _lockin.LockinSettings(reads=8))


@dataclass
class CellReadout:
    cell: int
    fit: FitResult
    health: str = HEALTHY
    #: posterior probability of ``health`` for a broken cell (1.0 for a healthy one)
    confidence: float = 1.0
    level_V: float = math.nan  # mean reading (what a broken cell reads)
    detail: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.health == HEALTHY and self.fit.success


# ------------------------------------------------------------------- acquire
def line_volts(n_cells: int, params: Parameters) -> np.ndarray:
    """``(configuration, cell)`` line voltages of the four configurations."""
    level = {-1: params.v_low, 1: params.v_high}
    return np.array([[level[config[i % 2]] for i in range(n_cells)] for config in CONFIGS])


def acquire(ctx: Context, params: Parameters, mode: Mode = Mode.CALIBRATE) -> xr.Dataset:
    """The four configurations, a trace of the wander, and a fast look at the noise."""
    layout = ctx.station.layout
    if _lockin.is_lockin(layout):
        volts2 = np.array([params.v_low, params.v_high])
        settings = _lockin.as_settings(params.lockin)
        idle_couplers(ctx, layout)
        chain = _lockin.prepare(ctx, settings, {b: params.v_high for b in layout.bias}, {b: params.v_low for b in layout.bias})
        meta = {"calibration": NAME, "mode": str(mode), "parameters": asdict(params)}
        return _lockin.sweep(ctx, settings, {b: volts2 for b in layout.bias}, volts2, "bias", run, NAME, meta, chain)
    n_samples = params.n_samples if mode is Mode.CALIBRATE else params.check_samples
    read = sample_cells(ctx.station, layout, params.sample_rate_Hz, n_samples)
    idle_couplers(ctx, layout)
    volts = line_volts(len(layout.bias), params)
    rate = f"{layout.readout}.sample_rate"
    sequence = Sequence(
        (
            Set(rate, params.sample_rate_Hz),
            Sweep(
                "config",
                {name: volts[:, i] for i, name in enumerate(layout.bias)},
                body=[read],
                # a check runs after the lines' settling was measured: it waits that long
                settle=params.settle_s if mode is Mode.CALIBRATE else stored_settle(ctx, params.settle_s),
                coord=np.arange(len(CONFIGS)),
            ),
            Trace("wander", trace_points(params, mode), trace_spacing(params, mode), (Read(read.param, dims=read.dims, name="wander_samples"),)),
            Set(rate, params.fast_rate_Hz),
            Read(read.param, dims=read.dims, name="fast"),
            Set(rate, params.sample_rate_Hz),
        )
    )
    meta = {"mode": str(mode), "parameters": asdict(params), "configs": [list(c) for c in CONFIGS]}
    return run(ctx, NAME, sequence, meta)


def trace_points(params: Parameters, mode: Mode) -> int:
    """Acquisitions of the wander trace a run of ``mode`` takes."""
    return params.trace_points if mode is Mode.CALIBRATE else params.check_trace_points


def trace_spacing(params: Parameters, mode: Mode) -> float:
    """Time between the wander trace's acquisitions in a run of ``mode``."""
    return params.trace_spacing_s if mode is Mode.CALIBRATE else params.check_trace_spacing_s


#: chance that a check of an unchanged readout flags some cell's fit on noise alone
CHECK_FALSE_ALARM = 0.01


def chi2_threshold(n_cells: int, trace_points: int, alpha: float = CHECK_FALSE_ALARM) -> float:
    """Largest chi-square (one degree of freedom) a check lets pass for every one of ``n_cells``.

    Each cell's chi-square divides a squared residual by a variance the trace estimated
    from ``trace_points - 1`` differences, so it follows ``F(1, trace_points - 1)``, not
    ``chi2(1)``, and ``n_cells`` of them are judged together: the threshold is that F
    distribution's point exceeded with probability ``alpha / n_cells`` (Bonferroni). A
    fixed 5 flagged one cell of 16 on a third of the checks of an unchanged readout,
    almost every check of 64 cells, and each flag cost a recalibration.
    """
    return float(stats.f.isf(alpha / max(n_cells, 1), 1, max(trace_points - 1, 1)))


# ----------------------------------------------------------------------- fit
def structure_function(means: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lags, D(lag)): mean squared difference of a trace's averages at each lag (per cell).

    ``means`` is ``(time, cell)``; lags are multiples of the trace's spacing.
    """
    n = means.shape[0]
    lags = np.array([times[k] - times[0] for k in range(1, n)])
    d = np.array([np.mean((means[k:] - means[:-k]) ** 2, axis=0) for k in range(1, n)])
    return lags, d


def wander_variance(lags: np.ndarray, d: np.ndarray, lag: float) -> np.ndarray:
    """``D(lag) / 2`` per cell: the variance one average adds to a difference taken ``lag`` apart
    (beyond the trace, its longest lag: the wander of 1/f noise grows only logarithmically)."""
    if lags.size == 0:
        return np.zeros(d.shape[1] if d.ndim > 1 else 0)
    k = int(np.argmin(np.abs(lags - min(lag, lags.max()))))
    lo, hi = max(0, k - 1), min(lags.size, k + 2)  # smooth over neighbouring lags
    return 0.5 * d[lo:hi].mean(axis=0)


def bandwidth(noise: np.ndarray, period: float) -> FitResult:
    """The amplifier's low-pass from readings of noise alone ``(cell, sample)``."""
    x = noise - noise.mean(axis=1, keepdims=True)
    var = np.mean(x**2)
    rho1 = float(np.mean(x[:, 1:] * x[:, :-1]) / var)
    rho2 = float(np.mean(x[:, 2:] * x[:, :-2]) / var)
    if not 0 < rho1 < 1:
        return FitResult.failed("lowpass", f"lag-1 autocorrelation {rho1:.3f}: no low-pass to measure")
    a = (rho1 - rho2) / (1 - rho1)
    if not 0 < a < 1:
        return FitResult.failed("lowpass", f"autocorrelations {rho1:.3f}, {rho2:.3f} fit no single pole")
    n = x.size
    # var(rho_k) ~ 1/n for small correlations; propagate both into a
    da = math.hypot(1 / (1 - rho1) + (rho1 - rho2) / (1 - rho1) ** 2, 1 / (1 - rho1)) / math.sqrt(n)
    tau = -period / math.log(a)
    tau_err = period * da / (a * math.log(a) ** 2)
    b = 1 / (2 * math.pi * tau)
    return FitResult(
        "lowpass",
        {"lowpass_tau_s": tau, "bandwidth_Hz": b},
        {"lowpass_tau_s": tau_err, "bandwidth_Hz": b * tau_err / tau},
        dof=n - 2,
    )


def fidelity(amp: float, leak: float, noise: float, neighbours: int = 2) -> float:
    """Assignment fidelity at the midpoint threshold, each neighbour in either state.

    ``leak`` is what both neighbours together add when in the same state; alone, each adds
    half of it (the split between them is not measured; an unequal one moves F by far
    less than its error), so with two neighbours the leak is ``+-leak`` half the time and 0
    the other half.
    """

    def f(x: float) -> float:
        return float(1 - 0.5 * (special.ndtr(-(amp + x) / noise) + special.ndtr(-(amp - x) / noise)))

    return f(leak) if neighbours < 2 else 0.5 * (f(leak) + f(0.0))


@dataclass
class ReadoutResult:
    cells: list[CellReadout]
    lowpass: FitResult


def fit_cell(
    cell: int,
    means: np.ndarray,
    own: np.ndarray,
    nb: np.ndarray,
    variance: float,
    noise: float,
    params: Parameters,
    slow_variance: float = 0.0,
    neighbours: int = 2,
    noise_err: float = 0.0,
) -> CellReadout:
    """Levels of one cell from its configuration averages (errors: ``variance`` each).

    ``slow_variance``: the wander over the whole run, which moves every average alike; it
    is in the offset's error (the level the run found, wherever it was then) and in the
    fidelity (a threshold the noise wanders about), not in the contrasts.
    """
    x = np.column_stack([np.ones_like(own), own, nb])
    cov = np.linalg.inv(x.T @ x) * variance
    cov[0, 0] += slow_variance
    beta = np.linalg.lstsq(x, means, rcond=None)[0]
    offset, amp, leak = (float(b) for b in beta)
    resid = means - x @ beta
    dof = len(means) - 3
    chi2 = float(resid @ resid / variance / dof) if dof > 0 and variance > 0 else math.nan
    level = float(means.mean())
    err = np.sqrt(np.diag(cov))
    separation = 2 * amp / noise if noise > 0 else 0.0
    if not (separation >= params.min_separation_sigma and amp > 5 * err[1]):
        why = f"levels {separation:.1f} sigma apart (amplitude {amp * 1e3:+.3f} ± {err[1] * 1e3:.3f} mV)"
        return CellReadout(cell, FitResult.failed("readout_levels", f"one readout level only ({why})"), health="", level_V=level)
    spread = math.sqrt(noise**2 + slow_variance)  # the threshold sees the noise and the wander
    f = fidelity(amp, leak, spread, neighbours)
    # d F / d amp and d F / d leak (delta method; sigma is known far better than the levels)
    g_amp = (fidelity(amp + 1e-7, leak, spread, neighbours) - fidelity(amp - 1e-7, leak, spread, neighbours)) / 2e-7
    g_leak = (fidelity(amp, leak + 1e-7, spread, neighbours) - fidelity(amp, leak - 1e-7, spread, neighbours)) / 2e-7
    g_noise = (fidelity(amp, leak, spread + 1e-7, neighbours) - fidelity(amp, leak, spread - 1e-7, neighbours)) / 2e-7
    f_var = g_amp**2 * cov[1, 1] + g_leak**2 * cov[2, 2] + 2 * g_amp * g_leak * cov[1, 2]
    f_err = math.sqrt(max(f_var + (g_noise * noise_err * noise / spread) ** 2, 0.0))
    result = FitResult(
        "readout_levels",
        {"amp_V": amp, "offset_V": offset, "leak_V": leak, "threshold": offset, "noise_V": noise, "fidelity": f},
        {"amp_V": float(err[1]), "offset_V": float(err[0]), "leak_V": float(err[2]), "threshold": float(err[0]),
         "noise_V": noise_err, "fidelity": f_err},
        chi2_reduced=chi2, dof=dof, absolute_sigma=True,
    )
    return CellReadout(cell, result, level_V=level, detail={"separation_sigma": separation})


def fit_cell_lockin(levels: np.ndarray, cell: int, params: Parameters) -> CellReadout:
    """Levels of one cell from its time-averaged reads ``(bias point, read)`` (lock-in readout)."""
    m = levels.shape[1]
    means = levels.mean(axis=1)
    noise = float(np.sqrt(levels.var(axis=1, ddof=1).mean())) if m > 1 else math.nan
    err = noise / math.sqrt(m)
    level = float(levels.mean())
    separation = abs(means[-1] - means[0]) / err if err > 0 else 0.0
    if not math.isfinite(separation) or separation < 2 * params.min_separation_sigma:
        why = f"levels {separation:.1f} sigma apart in the mean"
        return CellReadout(cell, FitResult.failed("two_levels_mean", f"one readout level only ({why})"), health="", level_V=level)
    lo, hi = float(means[0]), float(means[-1])
    values = {"mu0": lo, "mu1": hi, "amp_V": 0.5 * (hi - lo), "offset_V": 0.5 * (hi + lo), "noise_V": noise, "threshold": 0.5 * (hi + lo)}
    errors = {"mu0": err, "mu1": err, "amp_V": err / math.sqrt(2), "offset_V": err / math.sqrt(2), "noise_V": noise / math.sqrt(2 * 2 * (m - 1)), "threshold": err / math.sqrt(2)}
    fit = FitResult("two_levels_mean", values, errors, chi2_reduced=1.0, dof=2 * (m - 1), absolute_sigma=True)
    return CellReadout(cell, fit, level_V=level, detail={"separation_sigma": separation})


def classify(broken: list[CellReadout], healthy: list[CellReadout]) -> None:
    """Call each one-level cell dead, stuck at +1 or stuck at -1 (see the module docstring)."""
    if len(healthy) < 3:
        for r in broken:
            r.health, r.confidence = "dead_or_stuck", math.nan
        return
    offsets = np.array([r.fit["offset_V"] for r in healthy])
    amps = np.array([r.fit["amp_V"] for r in healthy])
    off_mu, off_sd = float(np.median(offsets)), float(np.std(offsets, ddof=1))
    amp_mu, amp_sd = float(np.median(amps)), float(np.std(amps, ddof=1))
    noise = float(np.median([r.fit["noise_V"] for r in healthy]))
    off_sd = max(off_sd, noise / 10)
    stuck_sd = math.hypot(off_sd, amp_sd)
    for r in broken:
        n = len(healthy)
        logl = {
            DEAD: _log_predictive(r.level_V, off_mu, off_sd, n),
            STUCK_PLUS: _log_predictive(r.level_V, off_mu + amp_mu, stuck_sd, n),
            STUCK_MINUS: _log_predictive(r.level_V, off_mu - amp_mu, stuck_sd, n),
        }
        # prior: as likely dead as stuck (either sign)
        logl[STUCK_PLUS] += math.log(0.5)
        logl[STUCK_MINUS] += math.log(0.5)
        best = max(logl, key=logl.__getitem__)
        top = logl[best]
        total = sum(math.exp(v - top) for v in logl.values())
        r.health, r.confidence = best, 1.0 / total
        r.fit = FitResult.failed(
            r.fit.model,
            f"{best} (p={r.confidence:.2f}): reads {r.level_V * 1e3:+.2f} mV; "
            f"healthy offsets {off_mu * 1e3:+.2f} ± {off_sd * 1e3:.2f} mV, amplitudes {amp_mu * 1e3:.2f} mV",
        )


def _log_predictive(x: float, mu: float, sd: float, n: int) -> float:
    """Log density of a new draw given ``n`` draws of mean ``mu`` and spread ``sd``
    (Student t with n - 1 degrees of freedom): heavy tails keep an outlying offset
    from making the call look surer than a dozen healthy cells allow."""
    return float(stats.t.logpdf(x, df=max(n - 1, 1), loc=mu, scale=sd * math.sqrt(1 + 1 / n)))


def fit(dataset: xr.Dataset, params: Parameters | None = None) -> ReadoutResult:
    """Fit every cell of a stored readout run. Pure: needs no instrument."""
    params = params or Parameters()
    if "level" in dataset:  # lock-in readout: time-averaged levels
        levels = values_in(dataset["level"], "cell", "bias", "read")
        lockin_cells = [fit_cell_lockin(levels[i], i, params) for i in range(levels.shape[0])]
        classify([r for r in lockin_cells if not r.health], [r for r in lockin_cells if r.ok])
        return ReadoutResult(lockin_cells, FitResult.failed("lowpass", "lock-in readout: the amplifier's bandwidth is not measured"))
    samples = values_in(dataset["samples"], "cell", "config", "sample").astype(float)
    configs = np.asarray(_attr(dataset, "configs"), dtype=float)
    n_cells = samples.shape[0]
    means = samples.mean(axis=2)  # (cell, config)
    wander = values_in(dataset["wander_samples"], "cell", "wander", "sample").astype(float)
    # a cell that switches in an acquisition (the swing does not hold it: a neighbour's DAC
    # crosstalk pulls it back towards its offset) reads a mixture of its levels there: its
    # variance rises by ~amp^2 p (1 - p). Such acquisitions say nothing of its levels, noise
    # or wander, and are left out for that cell (see switching_acquisitions)
    config_var = samples.var(axis=2, ddof=1)
    wander_var = wander.var(axis=2, ddof=1)
    quiet = config_var.min(axis=1)
    config_switching = switching_acquisitions(config_var, stats.skew(samples, axis=2), quiet[:, None])
    wander_ok = ~switching_acquisitions(np.median(wander_var, axis=1),
                                        np.median(stats.skew(wander, axis=2), axis=1), quiet)
    config_ok = ~config_switching
    # the noise within an acquisition (cells saturated), from every saturated acquisition of
    # the run; its error from their scatter, so that whatever moves it from one to the next counts
    variances = np.concatenate([config_var, wander_var], axis=1)
    used = np.concatenate([config_ok, np.repeat(wander_ok[:, None], wander_var.shape[1], axis=1)], axis=1)
    noise = np.sqrt(variances.mean(axis=1, where=used))
    counts = used.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        scatter = np.where(counts > 1, variances.std(axis=1, ddof=1, where=used), 0.0)
    noise_err = scatter / np.sqrt(counts) / (2 * noise)
    lags, d = structure_function(wander.mean(axis=2).T, np.asarray(dataset["wander_clock"].values, dtype=float))
    if lags.size and wander_ok.any() and not wander_ok.all():
        # a cell switching through the trace: its wander is the chain's, as the others see it
        # per unit of noise variance (one amplifier chain, one 1/f corner)
        typical = np.median(d[:, wander_ok] / noise[wander_ok] ** 2, axis=1)
        d[:, ~wander_ok] = typical[:, None] * noise[~wander_ok] ** 2
    times = np.asarray(dataset["config_clock"].values, dtype=float)
    gap = float(np.median(np.diff(times))) if times.size > 1 else 0.0
    variance = wander_variance(lags, d, gap) if lags.size else np.zeros(n_cells)
    # the white noise of one average adds to the wander (it is in D too, but not at lag 0)
    variance = np.maximum(variance, noise**2 / samples.shape[2])
    span = float(np.ptp(times)) if times.size else 0.0
    slow = wander_variance(lags, d, span) if lags.size else np.zeros(n_cells)
    results = []
    for i in range(n_cells):
        own, nb = configs[:, i % 2], configs[:, 1 - i % 2]
        edge = i in (0, n_cells - 1)
        # a configuration that caught the cell switching rarely moved its mean by about
        # (excess variance) / (level separation): kept when that is below the mean's own error
        separation = abs(means[i][own > 0].mean() - means[i][own < 0].mean())
        bias = (config_var[i] - quiet[i]) / max(separation, 1e-300)
        ok = config_ok[i] | (bias < math.sqrt(variance[i]))
        if ok.sum() < 3:  # offset, amplitude and leak need three configurations
            why = (f"switching in configurations {np.flatnonzero(~ok).tolist()}: the swing "
                   f"[{params.v_low:g}, {params.v_high:g}] V does not saturate it")
            results.append(CellReadout(i, FitResult.failed("readout_levels", why), health=UNSATURATED,
                                       confidence=math.nan, level_V=float(means[i].mean())))
            continue
        results.append(
            fit_cell(
                i, means[i][ok], own[ok], nb[ok], float(variance[i]), float(noise[i]), params, float(slow[i]),
                1 if edge else 2, float(noise_err[i]),
            )
        )
        if config_switching[i].any():
            results[-1].detail["switching_configs"] = float(np.count_nonzero(config_switching[i]))
            results[-1].detail["left_out_configs"] = float(np.count_nonzero(~ok))
    classify([r for r in results if not r.health], [r for r in results if r.ok])
    period = 1.0 / params.fast_rate_Hz
    healthy_noise = values_in(dataset["fast"], "cell", "sample").astype(float)
    return ReadoutResult(results, bandwidth(healthy_noise, period))


def _attr(dataset: xr.Dataset, key: str):
    value = dataset.attrs[key]
    return json.loads(value) if isinstance(value, str) else value


# --------------------------------------------------------------------- check
def check(result: ReadoutResult, params: Parameters, state: CalibrationState) -> Verdict:
    """In spec while every calibrated cell's levels stay within tolerance and it stays healthy.

    Levels that moved, with every fit good and every cell as healthy as before, are
    out of spec with ``refresh``: the engine updates the state from this check's
    result (the amplifier's offsets walk a few mV a week; a recalibration would
    measure the same levels again, with more samples, at three times the cost)."""
    tolerance = Tolerance(params.tolerance_V)
    quality = FitQuality(max_chi2_reduced=chi2_threshold(len(result.cells), params.check_trace_points))
    verdicts = []
    for r in result.cells:
        key = f"cells.{r.cell}.readout_offset_V"
        health = state.value(f"cells.{r.cell}.health", None)
        if health is not None and health != HEALTHY:
            # a broken cell stays broken: only a change of verdict matters
            if r.ok:
                verdicts.append(Verdict(Spec.OUT_OF_SPEC, f"cell {r.cell}: was {health}, now reads two levels"))
            else:
                verdicts.append(Verdict(Spec.IN_SPEC))
            continue
        if key not in state or not state.get(key).valid:
            continue
        if not r.ok:
            verdicts.append(Verdict(Spec.OUT_OF_SPEC, f"cell {r.cell}: {r.health}: {r.fit.message}"))
            continue
        verdicts.append(quality.judge(f"cell {r.cell} readout", r.fit))
        for name, suffix in (("offset_V", "readout_offset_V"), ("amp_V", "readout_amp_V")):
            old = state.get(f"cells.{r.cell}.{suffix}")
            moved = tolerance.judge(f"cell {r.cell} {name}", r.fit[name], r.fit.error(name), old.value, old.stderr)
            # a level that moved was measured by the check as by a calibration (the same four
            # configurations and wander trace, fewer samples): the state may take it from there
            verdicts.append(replace(moved, refresh=moved.spec is Spec.OUT_OF_SPEC))
    return combine(verdicts)


# -------------------------------------------------------------------- update
KEYS = {
    "amp_V": ("readout_amp_V", "V"),
    "offset_V": ("readout_offset_V", "V"),
    "leak_V": ("readout_leak_V", "V"),
    "threshold": ("readout_threshold_V", "V"),
    "fidelity": ("readout_fidelity", ""),
    "noise_V": ("readout_noise_V", "V"),
}


def update(result: ReadoutResult, params: Parameters | None = None) -> StateChange:
    """Per cell: levels, leak, threshold, fidelity, noise and ``health``; broken cells flagged;
    the amplifier's low-pass and bandwidth."""
    change = StateChange()
    noises = []
    lp = result.lowpass
    if lp.success:
        change.set("readout.lowpass_tau_s", lp["lowpass_tau_s"], lp.error("lowpass_tau_s"), "s")
        change.set("readout.bandwidth_Hz", lp["bandwidth_Hz"], lp.error("bandwidth_Hz"), "Hz")
    for r in result.cells:
        prefix = f"cells.{r.cell}"
        change.set(f"{prefix}.health", r.health, None, "", note=r.fit.message if not r.ok else "")
        if r.ok:
            change.add_fit(prefix, r.fit, {k: v for k, v in KEYS.items() if k in r.fit.values})
            noises.append(r.fit["noise_V"])
        else:
            for suffix, unit in KEYS.values():
                change.flag(f"{prefix}.{suffix}", f"{r.health}: {r.fit.message}", unit)
    if noises:
        change.set("readout.noise_V", float(np.median(noises)), float(np.std(noises) / math.sqrt(len(noises))), "V")
    else:
        change.fail("no cell shows two readout levels")
    return change


def table(result: ReadoutResult) -> str:
    lp = result.lowpass
    head = (
        f"amplifier low-pass {lp['lowpass_tau_s'] * 1e9:.1f} ± {lp.error('lowpass_tau_s') * 1e9:.1f} ns "
        f"(bandwidth {lp['bandwidth_Hz'] / 1e6:.3f} MHz)" if lp.success else f"amplifier low-pass: {lp.message}"
    )
    lines = [head, f"{'cell':>4}  {'amp (mV)':>14}  {'offset (mV)':>14}  {'leak (mV)':>8}  {'fidelity':>10}  status"]
    for r in result.cells:
        if r.ok:
            f = r.fit
            lines.append(
                f"{r.cell:>4}  {f['amp_V'] * 1e3:>6.3f} ± {f.error('amp_V') * 1e3:<5.3f}"
                f"  {f['offset_V'] * 1e3:>6.3f} ± {f.error('offset_V') * 1e3:<5.3f}"
                f"  {f.values.get('leak_V', math.nan) * 1e3:>+8.3f}  {f.values.get('fidelity', math.nan):>10.6f}  ok"
            )
        else:
            lines.append(f"{r.cell:>4}  {'—':>14}  {'—':>14}  {'—':>8}  {'—':>10}  {r.fit.message}")
    return "\n".join(lines)


def figures(result: ReadoutResult, dataset: xr.Dataset | None = None) -> list[Any]:
    """Each cell's readings in the four configurations with the fitted levels (a Gaussian of the
    fitted noise about each) and Pearson residuals; the levels, leaks and fidelities per cell."""
    from matplotlib.figure import Figure
    from scipy.special import ndtr

    from labstack.calibrations import _figures as F

    results = result.cells
    out = []
    if dataset is not None and "samples" in dataset:
        samples = values_in(dataset["samples"], "cell", "config", "sample").astype(float)
        configs = np.asarray(_attr(dataset, "configs"), dtype=float)
        shown = results[: F.MAX_PANELS]
        fig, axes, resid = F.panels_with_residuals(len(shown), f"{NAME}: readings per cell, fitted levels")
        for ax, rax, r in zip(axes, resid, shown, strict=False):
            pooled = samples[r.cell].ravel()
            counts, edges = np.histogram(pooled, bins=60)
            centres = 0.5 * (edges[1:] + edges[:-1]) * 1e3
            ax.stairs(counts, edges * 1e3, color="C0", label="readings")
            ax.set_ylabel("readings per bin")
            ax.set_yscale("symlog", linthresh=1)
            if r.ok:
                f = r.fit
                own, nb = configs[:, r.cell % 2], configs[:, 1 - r.cell % 2]
                levels = f["offset_V"] + f["amp_V"] * own + f["leak_V"] * nb
                per = samples.shape[2]
                mu = sum(per * np.diff(ndtr((edges - lv) / f["noise_V"])) for lv in levels)
                ax.plot(centres, mu, color="C1", lw=1, label="fit")
                ax.axvline(f["threshold"] * 1e3, color="0.5", ls=":", lw=0.8)
                F.residuals(rax, centres, (counts - mu) / np.sqrt(np.maximum(mu, 1e-9)), "reading (mV)")
                amp = F.value_text("A", f["amp_V"], f.error("amp_V"), "V")
                ax.set_title(f"cell {r.cell}: {amp}\nfidelity {F.format_value(f['fidelity'], f.error('fidelity'))}", fontsize=7)
            else:
                ax.set_title(f"cell {r.cell}: {r.health or 'no fit'} (one level)", fontsize=7, color="#b00")
                ax.set_xlabel("reading (mV)")
                ax.tick_params(labelbottom=True)
                rax.set_visible(False)
        out.append(fig)
    good = [r for r in results if r.ok]
    if good:
        fig = Figure(figsize=(7, 3.2), layout="constrained")
        ax = fig.add_subplot()
        cells = np.array([r.cell for r in good])
        off = np.array([r.fit["offset_V"] for r in good])
        amp = np.array([r.fit["amp_V"] for r in good])
        amp_err = np.array([r.fit.error("amp_V") for r in good])
        ax.errorbar(cells, (off - amp) * 1e3, amp_err * 1e3, fmt="o", ms=5, color="C0", label="level −1")
        ax.errorbar(cells, (off + amp) * 1e3, amp_err * 1e3, fmt="o", ms=5, color="C3", label="level +1")
        ax.errorbar(cells, off * 1e3, [r.fit.error("threshold") * 1e3 for r in good], fmt="_", ms=8, color="0.4", label="threshold")
        broken = [r for r in results if not r.ok]
        for r in broken:
            ax.plot(r.cell, r.level_V * 1e3, "x", color="#b00", ms=8)
            ax.annotate(r.health or "?", (r.cell, r.level_V * 1e3), fontsize=7, color="#b00",
                        textcoords="offset points", xytext=(4, 4))
        ax.set_xlabel("cell")
        ax.set_ylabel("reading (mV)")
        F.integer_ticks(ax)
        ax.legend(fontsize=7)
        ax.set_title(f"{NAME}: readout levels per cell" + (f" ({len(broken)} broken, ✕: their one level)" if broken else ""))
        out.append(fig)
    return out
