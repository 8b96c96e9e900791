"""Validation: program a target Boltzmann distribution through the calibration, sample it, score it.

The whole calibration is tested end to end, using only the calibration state (never
the simulator's truth): a random target ``P(s) ∝ exp(sum theta_i s_i + sum beta_ij
s_i s_j)`` on a chain of ``block`` cells (dimensionless ``theta = h / T_eff``,
``beta = J / T_eff``, so no gain or temperature is needed) is programmed through the
virtual biases (:mod:`labstack.calibrations.virtual_bias`: offsets, single-line widths,
crosstalk) and the couplers' ``kappa / T_eff`` and zero; couplers leaving the block
idle at zero coupling so it is isolated from the rest of the chip. The chip is then
sampled and the KL divergence ``KL(empirical || target)`` computed against the exact
distribution by enumeration (:mod:`labstack.fit.ising`).

The readout chain is not the chip: each cell's misassignment rate (from its own
two-level fit) is undone on the empirical distribution, one tensor axis per cell,
before scoring; negative quasi-probabilities are clipped. The finite-sample bias of
the estimator, ``(support - 1) / (2 n_eff)``, is reported next to it.

``check`` answers ``bad_data`` when the KL is above ``max_kl_nats``: a failed
validation says something upstream is off, so the graph diagnoses the dependencies.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from labstack.calibrate import CalibrationState, Context, Mode, Spec, StateChange, Verdict
from labstack.calibrations._common import run, sample_cells, settle_time
from labstack.calibrations.cell_states import digitize, n_effective
from labstack.calibrations.virtual_bias import BiasModel, coupler_zeros
from labstack.data import values_in
from labstack.fit import ising
from labstack.measure import Sweep

NAME = "validation"
#: needs a sampler: it compares sampled joint distributions of cells, which need single shots (a lock-in gives time averages)
READOUT_KINDS = ("sampler",)
# bias_scurve: the target is programmed through every cell's offset (virtual biases), so a
# per-cell recalibration changes what this node validates; it declares no tolerance
# (CONSUMES): the check is the one end-to-end test of the new offsets, and cheap (~12 s)
DEPENDS_ON: tuple[str, ...] = ("couplers", "crosstalk", "bias_scurve")
TIMEOUT_S = 3600.0


@dataclass
class Parameters:
    block: int = 8
    target_seed: int = 2024
    theta_max: float = 0.5  # fields h / T_eff drawn uniformly in +-theta_max
    beta_max: float = 0.5  # couplings J / T_eff drawn uniformly in +-beta_max
    n_samples: int = 40000
    sample_rate_Hz: float = 100e3
    settle_s: float = 1e-3
    max_kl_nats: float = 0.02
    #: shots of the zero-field re-zero taken just before programming (0: none)
    zero_samples: int = 20000


def chain_block(state: CalibrationState, model: BiasModel, pairs: list[tuple[int, int]], size: int) -> tuple[list[int], list[int]] | None:
    """A path of ``size`` calibrated cells joined by calibrated couplers: (cells, coupler indices)."""
    edges: dict[int, list[tuple[int, int]]] = {}
    for k, (a, b) in enumerate(pairs):
        ok = all(
            f"couplers.{k}.{key}" in state and state.get(f"couplers.{k}.{key}").valid
            for key in ("zero_coupling_V", "kappa_over_teff_per_V")
        )
        if ok and model.valid[a] and model.valid[b]:
            edges.setdefault(a, []).append((b, k))
            edges.setdefault(b, []).append((a, k))

    def extend(path: list[int], used: list[int]) -> tuple[list[int], list[int]] | None:
        if len(path) == size:
            return path, used
        for nxt, k in sorted(edges.get(path[-1], [])):
            if nxt not in path:
                found = extend(path + [nxt], used + [k])
                if found:
                    return found
        return None

    for start in sorted(edges):
        found = extend([start], [])
        if found:
            return found
    return None


def target(params: Parameters, size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The target's ``theta`` (block cells) and ``beta`` (block chain links)."""
    size = params.block if size is None else size
    rng = np.random.default_rng(params.target_seed)
    theta = rng.uniform(-params.theta_max, params.theta_max, size)
    beta = rng.uniform(-params.beta_max, params.beta_max, size - 1)
    return theta, beta


# ------------------------------------------------------------------- acquire
def acquire(ctx: Context, params: Parameters, mode: Mode = Mode.CALIBRATE) -> xr.Dataset:
    """Program the target on a calibrated chain block and sample the chip once."""
    station, state = ctx.station, ctx.state
    layout = station.layout
    n, pairs = layout.n_cells, [tuple(p) for p in layout.coupler_pairs]
    model = BiasModel.from_state(state, n)
    # the longest calibrated chain up to ``block`` cells (a small chip validates on all of it)
    found = None
    for size in range(min(params.block, n), 1, -1):
        found = chain_block(state, model, pairs, size)
        if found is not None:
            break
    if found is None:
        raise RuntimeError("no chain of two or more calibrated cells and couplers to validate on")
    cells, links = found
    theta, beta = target(params, len(cells))
    drift, drift_err = re_zero(ctx, params, model, cells, coupler_zeros(state, len(pairs)))
    theta_full = np.zeros(n)
    theta_full[cells] = theta - drift
    bias = model.voltages_for_theta(theta_full)
    coupler_v = coupler_zeros(state, len(pairs))
    for k, b in zip(links, beta, strict=True):
        coupler_v[k] += b / state.value(f"couplers.{k}.kappa_over_teff_per_V")
    for name, v in zip(layout.couplers, coupler_v, strict=True):
        station.parameter(name).set(float(v))
    read = sample_cells(station, layout, params.sample_rate_Hz, params.n_samples)
    sequence = Sweep(
        "point",
        {name: np.array([v]) for name, v in zip(layout.bias, bias, strict=True)},
        body=[read],
        settle=settle_time(ctx, params.settle_s),
        coord=np.arange(1),
    )
    meta = {
        "calibration": NAME,
        "mode": str(mode),
        "parameters": asdict(params),
        "block_cells": cells,
        "block_pairs": [[cells[i], cells[i + 1]] for i in range(len(cells) - 1)],
        "theta": theta.tolist(),
        "beta": beta.tolist(),
        "zero_field_theta": drift.tolist(),
        "zero_field_theta_err": drift_err.tolist(),
    }
    return run(ctx, NAME, sequence, meta)


def re_zero(
    ctx: Context, params: Parameters, model: BiasModel, cells: list[int], coupler_v: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The field (``theta = h / T_eff``) each block cell sees when programmed to zero, and its error.

    Offsets move between the S-curves and this node (a random walk, and flux jumps of
    several mV a few times a day) while their timeouts have not expired; a lab re-zeros
    before a run. Every cell is programmed to zero field with every coupler at zero
    coupling, the block is sampled, and ``theta = artanh(m)`` of each cell's mean spin
    (its readout misassignment undone) is subtracted from the target. The shots are a
    run of their own (``metadata.role = "re-zero"``).
    """
    k = len(cells)
    if params.zero_samples <= 0:
        return np.zeros(k), np.zeros(k)
    station, layout = ctx.station, ctx.station.layout
    for name, v in zip(layout.couplers, coupler_v, strict=True):
        station.parameter(name).set(float(v))
    zero = model.voltages_for_theta(np.zeros(layout.n_cells))
    read = sample_cells(station, layout, params.sample_rate_Hz, params.zero_samples)
    sequence = Sweep(
        "point",
        {name: np.array([v]) for name, v in zip(layout.bias, zero, strict=True)},
        body=[read],
        settle=settle_time(ctx, params.settle_s),
        coord=np.arange(1),
    )
    data = run(ctx, NAME, sequence, {"mode": "re-zero", "role": "re-zero", "block_cells": cells})
    samples = values_in(data["samples"], "cell", "point", "sample")[:, 0]
    found = [zero_field_theta(samples[cell]) for cell in cells]
    return np.array([f[0] for f in found]), np.array([f[1] for f in found])


def zero_field_theta(readings: np.ndarray) -> tuple[float, float]:
    """``(theta, stderr)`` of one cell's shots at programmed zero field: ``artanh`` of its
    mean spin with the readout misassignment undone; (0, 0) without a two-level readout
    (the cell is left as calibrated, and the fit says so)."""
    digits = digitize(readings)
    if not digits.ok:
        return 0.0, 0.0
    scale = 1.0 - 2.0 * digits.misassignment
    m = float(np.clip((2.0 * digits.states.mean() - 1.0) / scale, -0.98, 0.98))
    n_eff = float(n_effective(digits.states[None, :])[0])
    err = math.sqrt((1.0 - m * m) / max(n_eff, 1.0)) / scale / (1.0 - m * m)
    return math.atanh(m), err


# ----------------------------------------------------------------------- fit
@dataclass
class ValidationResult:
    cells: list[int]
    kl_nats: float
    kl_err_nats: float
    kl_raw_nats: float  # before undoing readout misassignment
    kl_bias_nats: float  # expected KL of a perfect chip at this sample count
    n_effective: float
    misassignment: list[float] = field(default_factory=list)
    message: str = ""
    #: the field each block cell saw at programmed zero just before (subtracted from the target)
    zero_field_theta: list[float] = field(default_factory=list)
    #: this is the re-zero's own run (no target programmed): only ``zero_field_theta`` means anything
    re_zero: bool = False

    @property
    def ok(self) -> bool:
        return self.re_zero or math.isfinite(self.kl_nats)


def _attr(dataset: xr.Dataset, key: str):
    value = dataset.attrs[key]
    return json.loads(value) if isinstance(value, str) else value


def unmix(p: np.ndarray, errors: list[float]) -> np.ndarray:
    """Undo per-cell symmetric misassignment on a distribution over ``2**n`` states.

    State ``k`` has cell ``i`` up iff bit ``i`` is set, so in C order tensor axis ``a``
    is cell ``n - 1 - a``.
    """
    n = len(errors)
    t = p.reshape([2] * n)
    for axis in range(n):
        e = errors[n - 1 - axis]
        m_inv = np.linalg.inv(np.array([[1 - e, e], [e, 1 - e]]))
        t = np.moveaxis(np.tensordot(m_inv, t, axes=([1], [axis])), 0, axis)
    return t.reshape(-1)


def kl(p: np.ndarray, q: np.ndarray) -> float:
    return ising.kl_divergence(p, q)


def fit(dataset: xr.Dataset, params: Parameters | None = None) -> ValidationResult:
    """Empirical distribution of the block (readout-unmixed) vs the exact target. Pure."""
    samples = values_in(dataset["samples"], "cell", "point", "sample")[:, 0]
    cells = list(_attr(dataset, "block_cells"))
    if dataset.attrs.get("mode") == "re-zero" or "theta" not in dataset.attrs:
        drift = [zero_field_theta(samples[c])[0] for c in cells]
        return ValidationResult(cells, math.nan, math.nan, math.nan, math.nan, 0.0,
                                message="re-zero shots", zero_field_theta=drift, re_zero=True)
    drift = [float(x) for x in _attr(dataset, "zero_field_theta")] if "zero_field_theta" in dataset.attrs else []
    theta = np.asarray(_attr(dataset, "theta"), dtype=float)
    beta = np.asarray(_attr(dataset, "beta"), dtype=float)
    chain = np.array([[i, i + 1] for i in range(len(cells) - 1)])
    exact = ising.boltzmann(theta, chain, beta, 1.0)
    digits = [digitize(samples[c]) for c in cells]
    if not all(d.ok for d in digits):
        bad = [c for c, d in zip(cells, digits, strict=True) if not d.ok]
        return ValidationResult(cells, math.nan, math.nan, math.nan, math.nan, 0.0, message=f"cells {bad} gave no two-level readout")
    states = np.stack([d.states for d in digits], axis=1)  # (sample, cell) 0/1
    index = ising.state_index(2 * states - 1)
    n = len(index)
    raw = np.bincount(index, minlength=2 ** len(cells)) / n
    errors = [d.misassignment for d in digits]
    p = np.clip(unmix(raw, errors), 0.0, None)
    p /= p.sum()
    n_eff = float(min(n_effective(states.T)))
    support = int(np.count_nonzero(exact > 1.0 / n_eff))
    mask = p > 0
    log_ratio = np.log(p[mask] / exact[mask])
    value = kl(p, exact)
    var = (np.sum(p[mask] * log_ratio**2) - value**2) / n_eff
    return ValidationResult(
        cells=cells,
        kl_nats=value,
        kl_err_nats=math.sqrt(max(var, 0.0)),
        kl_raw_nats=kl(raw, exact),
        kl_bias_nats=(support - 1) / (2 * n_eff),
        n_effective=n_eff,
        misassignment=errors,
        zero_field_theta=drift,
    )


# --------------------------------------------------------------------- check
def check(result: ValidationResult, params: Parameters, state: CalibrationState) -> Verdict:
    """Bad data (look upstream) when the programmed distribution is off target."""
    if not result.ok:
        return Verdict(Spec.BAD_DATA, result.message)
    if result.kl_nats > params.max_kl_nats:
        return Verdict(Spec.BAD_DATA, f"KL {result.kl_nats:.4f} nats > {params.max_kl_nats}")
    return Verdict(Spec.IN_SPEC)


# -------------------------------------------------------------------- update
def update(result: ValidationResult, params: Parameters | None = None) -> StateChange:
    params = params or Parameters()
    change = StateChange()
    if not result.ok:
        return change.fail(result.message)
    change.set("validation.kl_nats", result.kl_nats, result.kl_err_nats, "nats")
    change.set("validation.kl_raw_nats", result.kl_raw_nats, None, "nats", note="before readout unmixing")
    change.set("validation.kl_bias_nats", result.kl_bias_nats, None, "nats", note="finite-sample bias")
    change.set("validation.cells", result.cells)
    if result.zero_field_theta:
        change.set("validation.zero_field_theta", [float(x) for x in result.zero_field_theta],
                   note="h/T_eff each block cell saw at programmed zero just before (re-zeroed)")
    if result.kl_nats > params.max_kl_nats:
        change.fail(f"KL {result.kl_nats:.4f} nats > {params.max_kl_nats} on cells {result.cells}")
    return change


def table(result: ValidationResult) -> str:
    if result.re_zero:
        return f"re-zero of cells {result.cells}: h/T_eff at programmed zero {np.round(result.zero_field_theta, 3).tolist()}"
    if not result.ok:
        return f"validation failed: {result.message}"
    drift = (f"; re-zeroed, largest |h/T_eff| drift {max(abs(x) for x in result.zero_field_theta):.3f}"
             if result.zero_field_theta else "")
    return (
        f"cells {result.cells}: KL = {result.kl_nats:.4f} ± {result.kl_err_nats:.4f} nats "
        f"(raw {result.kl_raw_nats:.4f}, finite-sample bias ~{result.kl_bias_nats:.4f}, "
        f"n_eff {result.n_effective:.0f}){drift}"
    )


def distributions(dataset: xr.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray, float] | None:
    """(measured after unmixing, target, measured's stderr, n_eff) over the block's states,
    computed as :func:`fit` computes them; None if a cell gave no two-level readout."""
    samples = values_in(dataset["samples"], "cell", "point", "sample")[:, 0]
    cells = list(_attr(dataset, "block_cells"))
    theta = np.asarray(_attr(dataset, "theta"), dtype=float)
    beta = np.asarray(_attr(dataset, "beta"), dtype=float)
    chain = np.array([[i, i + 1] for i in range(len(cells) - 1)])
    exact = ising.boltzmann(theta, chain, beta, 1.0)
    digits = [digitize(samples[c]) for c in cells]
    if not all(d.ok for d in digits):
        return None
    states = np.stack([d.states for d in digits], axis=1)
    index = ising.state_index(2 * states - 1)
    raw = np.bincount(index, minlength=2 ** len(cells)) / len(index)
    p = np.clip(unmix(raw, [d.misassignment for d in digits]), 0.0, None)
    p /= p.sum()
    n_eff = float(min(n_effective(states.T)))
    err = np.sqrt(np.maximum(exact * (1 - exact), 1e-12) / n_eff)
    return p, exact, err, n_eff


def figures(result: ValidationResult, dataset: xr.Dataset | None = None) -> list[Any]:
    """Measured against target probability of every state of the block, with residuals."""
    from labstack.calibrations import _figures as F

    if dataset is None or not result.ok:
        return []
    found = distributions(dataset)
    if found is None:
        return []
    p, exact, err, _ = found
    k = np.arange(p.size)
    kl_text = F.format_value(result.kl_nats, result.kl_err_nats, "nats")
    fig, (ax,), (rax,) = F.panels_with_residuals(
        1, f"{NAME}: KL = {kl_text} on cells {result.cells}", cols=1, size=(7.5, 3.6)
    )
    ax.bar(k, exact, width=0.8, color="0.8", label="target")
    ax.errorbar(k, p, err, fmt=".", ms=3, color="C0", label="measured (readout unmixed)")
    ax.set_ylabel("probability")
    ax.legend(fontsize=7)
    ax.set_title(f"{p.size} states of {len(result.cells)} cells", fontsize=8)
    F.residuals(rax, k, (p - exact) / err, "state index (bit i: cell i up)")
    F.integer_ticks(rax)
    return [fig]
