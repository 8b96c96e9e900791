"""The simulator's truth at the time a calibration acquired its data.

The virtual chip drifts (offsets, gains, readout levels) and its fridge moves, so a
fitted value is compared with what the chip was when the data were taken: a run
records its lab time (``clock_start``) and, for every sweep point, the seconds since
then (``<dim>_clock``). These helpers turn that into :meth:`VirtualLab.truth_at`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr
from scipy import stats

from labstack.data import list_runs, load_run
from labstack.sim.lab import TruthAt, VirtualLab


def runs_of(data_dir: str | Path, calibration: str) -> list[xr.Dataset]:
    """Every stored acquisition of a calibration routine, in the order of lab time (run ids
    order by wall-clock second only). A node's merge of its parts, stored as a run of its
    own (metadata ``derived_from``, :mod:`labstack.calibrate.merged`), took no data: left out."""
    runs = [
        load_run(r.id, data_dir).dataset()
        for r in list_runs(data_dir, calibration=calibration)
        if "derived_from" not in r.metadata
    ]
    return sorted(runs, key=lambda ds: float(ds.attrs["clock_start"]))


def point_times(dataset: xr.Dataset, dim: str) -> np.ndarray:
    """Lab time at each point of a sweep or trace dimension (after its settle)."""
    return float(dataset.attrs["clock_start"]) + np.asarray(dataset[f"{dim}_clock"].values, dtype=float)


def truth_at_start(lab: VirtualLab, dataset: xr.Dataset) -> TruthAt:
    return lab.truth_at(float(dataset.attrs["clock_start"]))


def truth_at_middle(lab: VirtualLab, dataset: xr.Dataset, dim: str) -> TruthAt:
    """The truth halfway through a run's points."""
    times = point_times(dataset, dim)
    return lab.truth_at(float(0.5 * (times.min() + times.max())))


def scurve_truth(lab: VirtualLab, dataset: xr.Dataset, fitted_v0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(V0, width) of each cell when the sweep crossed its fitted offset: where its S-curve
    is decided. Cells without a fit (NaN) get the truth at the middle of the run."""
    times = point_times(dataset, "bias")
    volts = dataset["bias"].values
    middle = lab.truth_at(float(0.5 * (times.min() + times.max())))
    v0, width = middle.v0_V.copy(), middle.scurve_width_V()
    for i, fitted in enumerate(np.asarray(fitted_v0, dtype=float)):
        if np.isfinite(fitted):
            at = lab.truth_at(float(times[int(np.argmin(np.abs(volts - fitted)))]))
            v0[i], width[i] = at.v0_V[i], at.scurve_width_V()[i]
    return v0, width


def idle_coupling(lab: VirtualLab, fitted_v0: np.ndarray, true_v0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per cell, (shift of its all-lines S-curve centre, factor on its width) that couplers
    idling at 0 V cause, to first order in the coupling (mean field).

    Before the coupler node has found each zero, couplers idle at 0 V with ``J = kappa (0 -
    Vc0)``. A neighbour at mean spin ``m_j`` when the sweep crosses cell ``i`` adds ``J m_j``
    to its field: the centre moves by ``-J m_j / alpha_i``, and a neighbour that switches
    there (``m_j = tanh(alpha_j (V - V0_j) / T_eff)``, a dead cell too: it is only unread)
    steepens or blunts the curve, ``alpha_i -> alpha_i + J dm_j/dV``; a stuck one holds its
    spin. The bias S-curve's first pass carries both unstated by design (its fixed point
    removes them: ``labstack.calibrations.idle_coupling``), so a test of that pass compares
    with them.
    """
    truth, now = lab.truth, lab.truth_at()
    n = truth.n_cells
    shift, gain = np.zeros(n), now.alpha_K_per_V.copy()
    if truth.couplers is None:
        return shift, np.ones(n)
    alpha, t_eff, stuck = now.alpha_K_per_V, now.t_eff_K, truth.cells.stuck
    fitted, true = np.asarray(fitted_v0, dtype=float), np.asarray(true_v0, dtype=float)
    for k, (i, j) in enumerate(truth.couplers.pairs):
        coupling = truth.couplers.kappa_K_per_V[k] * (0.0 - truth.couplers.vc0_V[k])
        for a, b in ((int(i), int(j)), (int(j), int(i))):
            if not np.isfinite(fitted[a]):
                continue
            if stuck[b]:
                shift[a] -= coupling * float(stuck[b]) / alpha[a]
                continue
            x = alpha[b] * (fitted[a] - true[b]) / t_eff
            shift[a] -= coupling * np.tanh(x) / alpha[a]
            gain[a] += coupling * alpha[b] / t_eff / np.cosh(x) ** 2
    return shift, alpha / gain


def within(values, errors, truth, n_sigma: float = 3.0) -> float:
    """Share of ``(values - truth) / errors`` within ``n_sigma``."""
    pulls = (np.asarray(values, dtype=float) - np.asarray(truth, dtype=float)) / np.asarray(errors, dtype=float)
    return float(np.mean(np.abs(pulls) < n_sigma))


def honest_coverage(values, errors, truth, n_sigma: float = 3.0, far: float = 4.5, alpha: float = 1e-3) -> str:
    """Why ``values`` fail to cover ``truth`` at their errors, or '' when they do.

    "95 % within 3 sigma" means "all of them" on a 16-cell chip, which honest errors miss
    4 % of the time (14 cells, each 0.27 % beyond 3 sigma). Judged instead: no more pulls
    beyond ``n_sigma`` than honest Gaussian errors give with probability ``alpha`` or less
    (one of 14, two from 40 cells), and none beyond ``far`` (a wrong value, not bad luck).
    """
    pulls = (np.asarray(values, dtype=float) - np.asarray(truth, dtype=float)) / np.asarray(errors, dtype=float)
    if not np.all(np.isfinite(pulls)):
        return f"pulls not finite: {pulls}"
    tail = 2 * stats.norm.sf(n_sigma)
    allowed = int(stats.binom.isf(alpha, pulls.size, tail))  # P(count > allowed) <= alpha
    beyond = int(np.count_nonzero(np.abs(pulls) >= n_sigma))
    if beyond > allowed:
        return f"{beyond} of {pulls.size} pulls beyond {n_sigma} sigma (honest errors: at most {allowed}): {np.round(pulls, 2)}"
    if np.any(np.abs(pulls) >= far):
        return f"a pull beyond {far} sigma: {np.round(pulls, 2)}"
    return ""


def swept_offsets_now(lab: VirtualLab) -> np.ndarray:
    """Every cell's all-lines S-curve centre now, ``alpha V0 / (alpha + sum_j Xt_ij)`` with the
    drifted V0 and alpha: what bias_scurve finds (the family's V0 judge uses the same)."""
    v0, alpha = lab.drift.at(lab.clock.now()) if lab.drift is not None else (
        lab.truth.cells.v0_V, lab.truth.cells.alpha_K_per_V)
    xt = lab.truth.crosstalk_K_per_V
    return alpha * v0 / (alpha + (xt.sum(axis=1) if xt is not None else 0.0))


def recalibrated_cells(calibrated: list[str], state) -> dict[str, list[int] | None]:
    """Per node a walk calibrated, the cells it re-measured alone (None: the whole node),
    from each node's record (``NodeRecord.recalibrated_cells``)."""
    out: dict[str, list[int] | None] = {}
    for name in calibrated:
        cells = state.node_record(name).recalibrated_cells
        out[name] = sorted(int(c) for c in cells) if cells else None
    return out
