"""Readout: each cell's two readout levels, threshold and assignment fidelity.

Every bias line is driven to ``v_low`` and then to ``v_high``, far beyond any
cell's switching point, so a healthy cell spends half the readings in each
state. Pooled, its readings form two Gaussians (amplifier noise around
``offset - amp`` and ``offset + amp``); a binned Poisson maximum-likelihood fit
(:func:`labstack.fit.fit_two_gaussians`) gives both levels with Fisher errors,
the noise, the most-likely threshold and the assignment fidelity.

Sampling at ``sample_rate_Hz`` = 2 MHz keeps the readings nearly independent:
the amplifier's low-pass (time constant ``1 / (2 pi B)``, 0.16 us at 1 MHz
bandwidth) decays by ``exp(-3)`` between samples, so the histogram's Poisson
errors hold and each reading sees the cell's state of that instant.

A cell whose readings show one level only is broken. Which way is decided from
where that level sits among the healthy cells: a **dead** cell (no signal) reads
its offset, a **stuck** cell reads ``offset +- amp``. The healthy cells' offsets
and amplitudes give the three hypotheses' Gaussian likelihoods (their spread
includes the cell-to-cell scatter), and the most likely one is reported with its
posterior probability: with offsets scattered by a few tenths of the amplitude
the call is a best guess, not a certainty, and the table says how sure it is.
Both kinds are flagged invalid; neither stops the other cells.

With lock-in readout (the station's readout role) there are no single shots: each
line's time-averaged level at ``v_low`` and ``v_high`` is read ``reads`` times
(:mod:`._lockin`), the two means are the levels and the reads' spread the noise.
A time average has no assignment fidelity, so none is stored; the threshold is the
midpoint, for routines that need one. Broken cells are called as above.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import xarray as xr
from scipy import stats

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
from labstack.calibrations._common import idle_couplers, run, sample_cells
from labstack.fit import FitResult, fit_two_gaussians
from labstack.measure import Sweep

NAME = "readout"
READOUT_KINDS = ("sampler", "lockin")
DEPENDS_ON: tuple[str, ...] = ()
TIMEOUT_S = 24 * 3600.0

#: health labels a cell can get (stored as ``cells.<i>.health``)
HEALTHY, DEAD, STUCK_PLUS, STUCK_MINUS = "ok", "dead", "stuck_plus", "stuck_minus"


@dataclass
class Parameters:
    v_low: float = -1.0
    v_high: float = 1.0
    n_samples: int = 2000
    sample_rate_Hz: float = 2e6
    settle_s: float = 1e-3
    bins: int = 60
    #: levels closer than this (in noise sigmas) are one level: the cell shows no signal
    min_separation_sigma: float = 4.0
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
def acquire(ctx: Context, params: Parameters, mode: Mode = Mode.CALIBRATE) -> xr.Dataset:
    """All bias lines at ``v_low`` then ``v_high``; every cell sampled at both."""
    layout = ctx.station.layout
    volts = np.array([params.v_low, params.v_high])
    if _lockin.is_lockin(layout):
        settings = _lockin.as_settings(params.lockin)
        idle_couplers(ctx, layout)
        chain = _lockin.prepare(ctx, settings, {b: params.v_high for b in layout.bias}, {b: params.v_low for b in layout.bias})
        meta = {"calibration": NAME, "mode": str(mode), "parameters": asdict(params)}
        return _lockin.sweep(ctx, settings, {b: volts for b in layout.bias}, volts, "bias", run, NAME, meta, chain)
    read = sample_cells(ctx.station, layout, params.sample_rate_Hz, params.n_samples if mode is Mode.CALIBRATE else params.check_samples)
    idle_couplers(ctx, layout)
    sequence = Sweep(
        "bias",
        {name: volts for name in layout.bias},
        body=[read],
        settle=params.settle_s,
        coord=volts,
    )
    return run(ctx, NAME, sequence, {"mode": str(mode), "parameters": asdict(params)})


# ----------------------------------------------------------------------- fit
def fit_cell(readings: np.ndarray, cell: int, params: Parameters) -> CellReadout:
    """Two-Gaussian fit of one cell's readings ``(bias point, sample)``."""
    pooled = readings.ravel().astype(float)
    level = float(pooled.mean())
    with np.errstate(invalid="ignore"):  # a one-level histogram has no Fisher errors
        f = fit_two_gaussians(pooled, bins=params.bins)
    if not f.success:
        return CellReadout(cell, f, health="", level_V=level)
    noise = 0.5 * (f["sigma0"] + f["sigma1"])
    separation = (f["mu1"] - f["mu0"]) / noise
    frac = f["frac1"]
    # each bias point should read mostly one level: the cell follows its bias
    high = (readings > f["threshold"]).mean(axis=1)
    follows = bool(high[-1] - high[0] > 0.5)
    if separation < params.min_separation_sigma or min(frac, 1 - frac) < 0.05 or not follows:
        why = (
            f"levels {separation:.1f} sigma apart, upper share {frac:.2f}, "
            f"share above threshold {high[0]:.2f} -> {high[-1]:.2f} from v_low to v_high"
        )
        return CellReadout(cell, FitResult.failed(f.model, f"one readout level only ({why})"), health="", level_V=level)
    cov = f.covariance
    assert cov is not None
    i0, i1 = f.names.index("mu0"), f.names.index("mu1")
    var_diff = cov[i0, i0] + cov[i1, i1] - 2 * cov[i0, i1]
    var_sum = cov[i0, i0] + cov[i1, i1] + 2 * cov[i0, i1]
    f.values.update(amp_V=0.5 * (f["mu1"] - f["mu0"]), offset_V=0.5 * (f["mu0"] + f["mu1"]), noise_V=noise)
    f.stderr.update(
        amp_V=0.5 * math.sqrt(var_diff),
        offset_V=0.5 * math.sqrt(var_sum),
        noise_V=0.5 * math.hypot(f.error("sigma0"), f.error("sigma1")),
    )
    return CellReadout(cell, f, level_V=level, detail={"separation_sigma": separation})


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


def fit(dataset: xr.Dataset, params: Parameters | None = None) -> list[CellReadout]:
    """Fit every cell of a stored readout run. Pure: needs no instrument."""
    params = params or Parameters()
    if "level" in dataset:  # lock-in readout: time-averaged levels
        levels = dataset["level"].transpose("cell", "bias", "read").values
        results = [fit_cell_lockin(levels[i], i, params) for i in range(levels.shape[0])]
        classify([r for r in results if not r.health], [r for r in results if r.ok])
        return results
    samples = dataset["samples"].transpose("cell", "bias", "sample").values
    results = [fit_cell(samples[i], i, params) for i in range(samples.shape[0])]
    classify([r for r in results if not r.health], [r for r in results if r.ok])
    return results


# --------------------------------------------------------------------- check
def check(results: list[CellReadout], params: Parameters, state: CalibrationState) -> Verdict:
    """In spec while every calibrated cell's levels stay within tolerance and it stays healthy."""
    tolerance = Tolerance(params.tolerance_V)
    quality = FitQuality(max_chi2_reduced=3.0)
    verdicts = []
    for r in results:
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
            verdicts.append(
                tolerance.judge(f"cell {r.cell} {name}", r.fit[name], r.fit.error(name), old.value, old.stderr)
            )
    return combine(verdicts)


# -------------------------------------------------------------------- update
KEYS = {
    "amp_V": ("readout_amp_V", "V"),
    "offset_V": ("readout_offset_V", "V"),
    "threshold": ("readout_threshold_V", "V"),
    "fidelity": ("readout_fidelity", ""),
    "noise_V": ("readout_noise_V", "V"),
}


def update(results: list[CellReadout], params: Parameters | None = None) -> StateChange:
    """Per cell: levels, threshold, fidelity, noise and ``health``; broken cells flagged."""
    change = StateChange()
    noises = []
    for r in results:
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


def table(results: list[CellReadout]) -> str:
    lines = [f"{'cell':>4}  {'amp (mV)':>14}  {'offset (mV)':>14}  {'fidelity':>10}  status"]
    for r in results:
        if r.ok:
            f = r.fit
            lines.append(
                f"{r.cell:>4}  {f['amp_V'] * 1e3:>6.3f} ± {f.error('amp_V') * 1e3:<5.3f}"
                f"  {f['offset_V'] * 1e3:>6.3f} ± {f.error('offset_V') * 1e3:<5.3f}"
                f"  {f.values.get('fidelity', math.nan):>10.6f}  ok"
            )
        else:
            lines.append(f"{r.cell:>4}  {'—':>14}  {'—':>14}  {'—':>10}  {r.fit.message}")
    return "\n".join(lines)


def figures(results: list[CellReadout], dataset: xr.Dataset | None = None) -> list[Any]:
    """Each cell's pooled readings with the two-Gaussian fit and Pearson residuals; levels per cell.

    The histogram uses the fit's own binning (``bins`` of the run's parameters), so the
    residuals are the fit's.
    """
    import json

    from matplotlib.figure import Figure

    from labstack.calibrations import _figures as F
    from labstack.fit import binned_two_gaussians

    out = []
    if dataset is not None and "samples" in dataset:
        raw = dataset.attrs.get("parameters")
        params = json.loads(raw) if isinstance(raw, str) else dict(raw or {})
        bins = int(params.get("bins", Parameters.bins))
        samples = dataset["samples"].transpose("cell", "bias", "sample").values
        shown = results[: F.MAX_PANELS]
        fig, axes, resid = F.panels_with_residuals(len(shown), f"{NAME}: readings per cell, two-Gaussian fit")
        for ax, rax, r in zip(axes, resid, shown, strict=False):
            pooled = samples[r.cell].ravel().astype(float)
            counts, edges = np.histogram(pooled, bins=bins)
            centres = 0.5 * (edges[1:] + edges[:-1]) * 1e3
            ax.stairs(counts, edges * 1e3, color="C0", label="readings")
            ax.set_ylabel("readings per bin")
            ax.set_yscale("symlog", linthresh=1)
            if r.ok:
                f = r.fit
                mu = binned_two_gaussians(edges, *(f[k] for k in ("n0", "mu0", "sigma0", "n1", "mu1", "sigma1")))
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
        for name, label, colour in (("mu0", "level −1", "C0"), ("mu1", "level +1", "C3"), ("threshold", "threshold", "0.4")):
            ax.errorbar(cells, [r.fit[name] * 1e3 for r in good], [r.fit.error(name) * 1e3 for r in good],
                        fmt="o" if name != "threshold" else "_", ms=5, color=colour, label=label)
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
