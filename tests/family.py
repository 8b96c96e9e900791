"""A family of realistic chips unlike the test seeds, and how a calibration of each is judged.

The acceptance of "calibration that converges on chips it has never seen" is on a
family, not a seed: chips of 16-64 cells, chain and grid couplings, 0-8 % DAC
crosstalk, 0-10 % dead or stuck cells and up to twice the default fabrication
spreads, each with the realistic per-seed fridge, DACs, thermometry, drift and
readout of the simulator. :data:`FAMILY` fixes them (seeds chosen before any
routine was tuned); :func:`write_truth` draws one as a ground-truth file;
:func:`inspect` (run in the chip's worker, where its virtual lab lives) compares
the calibrated state with the truth *at the time of each value's acquisition*
(every entry names its run, every run its lab times); :func:`judge` turns the
pulls of a family into the acceptance table.

Used by ``bench/bench_family.py`` (the whole family as a Dask batch) and
``tests/test_family.py`` (three of its chips).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labstack.calibrate import family_n_sigma
from labstack.distributed.specs import ChipSpec


@dataclass(frozen=True)
class Member:
    """One chip of the family: how it is drawn."""

    seed: int
    cells: int
    topology: str = "chain"
    crosstalk: float = 0.0
    dead: float = 0.0
    stuck: float = 0.0
    #: fabrication spreads (gain, offset, barrier, attempt rate, couplers) x this
    spread: float = 1.0

    @property
    def chip_id(self) -> str:
        return f"fam-{self.seed}-{self.cells}{self.topology[0]}"


#: the family, fixed before any routine was tuned (seeds 101-120)
FAMILY: tuple[Member, ...] = (
    Member(101, 16, "chain"),
    Member(102, 16, "chain", 0.05, 0.0625, 0.0, 1.5),
    Member(103, 16, "grid", 0.08, 0.0625, 0.0, 2.0),
    Member(104, 16, "chain", 0.03, 0.0, 0.0625, 2.0),
    Member(105, 25, "grid", 0.0, 0.04, 0.04, 1.0),
    Member(106, 25, "grid", 0.05, 0.08, 0.0, 1.5),
    Member(107, 20, "chain", 0.08, 0.0, 0.05, 2.0),
    Member(108, 36, "grid", 0.02, 0.05, 0.05, 1.25),
    Member(109, 24, "chain", 0.06, 0.0, 0.0, 1.75),
    Member(110, 16, "grid", 0.08, 0.0625, 0.0, 2.0),
    Member(111, 36, "grid", 0.04, 0.03, 0.03, 1.5),
    Member(112, 20, "chain", 0.0, 0.1, 0.0, 2.0),
    Member(113, 25, "grid", 0.05, 0.04, 0.04, 1.0),
    Member(114, 20, "chain", 0.08, 0.05, 0.05, 2.0),
    Member(115, 16, "grid", 0.01, 0.0, 0.0, 1.25),
    Member(116, 20, "chain", 0.07, 0.05, 0.05, 1.75),
    Member(117, 24, "chain", 0.04, 0.0, 0.08, 2.0),
    Member(118, 16, "chain", 0.0, 0.0625, 0.0, 2.0),
    Member(119, 20, "chain", 0.08, 0.1, 0.0, 1.5),
    Member(120, 64, "grid", 0.08, 0.05, 0.05, 2.0),
)

#: the subset the test suite runs: a chain with crosstalk and broken cells, and a grid at
#: 8 % crosstalk and twice the spreads (the clean-ish grid fam-115 it also ran cost 55 s of
#: a suite near its limit; the whole family, itself included, is bench/bench_family.py)
TEST_SUBSET: tuple[Member, ...] = (FAMILY[1], FAMILY[9])


def fresh_family(base_seed: int = 901) -> tuple[Member, ...]:
    """The same shapes with new seeds: the run that checks nothing was tuned to the seeds."""
    return tuple(Member(base_seed + k, *list(asdict(m).values())[1:]) for k, m in enumerate(FAMILY))


def write_truth(member: Member, directory: str | Path) -> Path:
    """The member's realistic chip, its fabrication spreads scaled, as a ground-truth file.

    Deviations from the design values are scaled by ``spread`` (gain 0.30 K/V,
    offset 0, barrier 0.25 K, attempt rate 1 GHz on a log scale, coupler slope
    0.05 K/V, coupler zero 0), then clipped to what the sweep and the physics allow.
    """
    import inspect as _inspect

    from labstack.sim.truth import GroundTruth

    # the realistic chip where the simulator has one (its fridge, DACs, drift, readout)
    realistic = {"realism": "realistic"} if "realism" in _inspect.signature(GroundTruth.from_seed).parameters else {}
    truth = GroundTruth.from_seed(
        member.seed,
        member.cells,
        member.topology,
        dead_fraction=member.dead,
        stuck_fraction=member.stuck,
        crosstalk=member.crosstalk,
        **realistic,
    )
    s = member.spread
    c = truth.cells
    c.alpha_K_per_V = (0.30 + s * (c.alpha_K_per_V - 0.30)).clip(0.12, None)
    c.v0_V = (s * c.v0_V).clip(-0.75, 0.75)
    c.barrier_K = (0.25 + s * (c.barrier_K - 0.25)).clip(0.1, None)
    c.gamma0_Hz = 1.0e9 * np.exp(s * np.log(c.gamma0_Hz / 1.0e9))
    if truth.couplers is not None and truth.couplers.n:
        k = truth.couplers
        k.kappa_K_per_V = (0.05 + s * (k.kappa_K_per_V - 0.05)).clip(0.01, None)
        k.vc0_V = s * k.vc0_V
    path = Path(directory) / f"{member.chip_id}.json"
    truth.save(path)
    return path


def chip_spec(member: Member, truth_file: Path) -> ChipSpec:
    """The batch entry of a member: its ground truth, its seed for the noise."""
    return ChipSpec(member.chip_id, "virtual", f"truth={truth_file},seed={member.seed}")


# ----------------------------------------------------------------- evaluation
#: parameter -> what it is compared with (for the table's legend)
PARAMETERS = {
    "V0": "cells.<i>.bias_offset_V: all-lines S-curve centre alpha V0 / (alpha + sum_j Xt_ij) when swept",
    "V0_free": "cells.<i>.crosstalk_free_offset_V: single-line offset V0 when swept",
    "width": "cells.<i>.scurve_width_V: T_eff / 2 (alpha + sum_j Xt_ij) when swept",
    "alpha": "cells.<i>.alpha_K_per_V: gain at the middle of the effective-temperature runs",
    "barrier": "cells.<i>.barrier_K",
    "gamma0": "ln cells.<i>.gamma0_Hz (relative error)",
    "coupler_zero": "couplers.<k>.zero_coupling_V",
    "kappa": "couplers.<k>.kappa_over_teff_per_V: kappa / T_eff when measured",
}
#: parameters the acceptance is on (the others are shown)
ACCEPTED = ("V0", "alpha", "barrier", "gamma0", "coupler_zero", "kappa")


def lab_of_station(station: Any) -> Any:
    """The virtual lab behind an open virtual station (its instruments share one)."""
    for component in station.components.values():
        handle = getattr(component, "visa_handle", None)
        lab = getattr(getattr(handle, "visalib", None), "lab", None)
        if lab is not None:
            return lab
    raise RuntimeError("no virtual lab behind this station")


def inspect(chip: ChipSpec, station: Any, report: Any) -> dict[str, Any]:
    """Pulls of every calibrated value against the truth when it was acquired (plain data)."""
    from labstack.data import load_run

    lab = lab_of_station(station)
    truth_at = lab.truth_at if hasattr(lab, "truth_at") else _still(lab)
    state = report.graph.context.state
    data_dir = Path(report.data_dir)
    truth = lab.truth
    n = truth.n_cells
    dead = truth.cells.dead | (truth.cells.stuck != 0)
    xt_sum = truth.crosstalk_K_per_V.sum(axis=1) if truth.crosstalk_K_per_V is not None else np.zeros(n)
    runs: dict[str, Any] = {}
    datasets: dict[str, Any] = {}
    spans: dict[str, list[float]] = {}

    def run(run_id: str) -> Any:
        if run_id not in runs:
            runs[run_id] = load_run(run_id, data_dir)
        return runs[run_id]

    def dataset(run_id: str) -> Any:
        """A run's dataset, opened once: every cell and parameter asks for the same few runs."""
        if run_id not in datasets:
            datasets[run_id] = run(run_id).dataset()
        return datasets[run_id]

    def run_times(run_id: str) -> list[float]:
        """Lab times a run's points span: its own, or those of the runs it was merged from."""
        if run_id in spans:
            return spans[run_id]
        parts = run(run_id).metadata.get("derived_from")
        if parts:
            each = [run_times(p) for p in parts]
            spans[run_id] = [min(s[0] for s in each), max(s[1] for s in each)]
            return spans[run_id]
        ds = dataset(run_id)
        start = float(ds.attrs["clock_start"])
        clocks = [v for v in ds.variables if str(v).endswith("_clock")]
        if clocks:
            times = start + np.asarray(ds[clocks[0]].values, dtype=float).ravel()
            spans[run_id] = [float(times.min()), float(times.max())]
        else:
            spans[run_id] = [start, start]
        return spans[run_id]

    def crossing(run_id: str, cell: int, fitted: float) -> Any:
        """The truth when the S-curve sweep crossed ``fitted`` (where its curve is decided)."""
        ds = dataset(run_id)
        merged = bool(run(run_id).metadata.get("derived_from"))
        # a sweep merged with per-cell windows keeps every point's clock (from its first part's
        # start) and which block each point is for: the cell's crossing is in its own points,
        # minutes to hours from the middle of the whole merge while offsets drift
        if "bias" in ds.variables and "bias_clock" in ds.variables and (not merged or "block" in ds.variables):
            volts = np.asarray(ds["bias"].values, dtype=float)
            times = float(ds.attrs["clock_start"]) + np.asarray(ds["bias_clock"].values, dtype=float)
            if volts.ndim > 1:  # per-cell grids (cell, point)
                volts = volts[cell]
            elif "block" in ds.variables:
                blocks = json.loads(ds.attrs.get("block_cells", "[null]"))
                mine = np.array([blocks[b] is None or cell in blocks[b] for b in np.asarray(ds["block"].values)])
                volts, times = volts[mine], times[mine]
            k = int(np.argmin(np.abs(volts.ravel() - fitted)))
            return truth_at(float(times.ravel()[min(k, times.size - 1)]))
        lo, hi = run_times(run_id)
        return truth_at(0.5 * (lo + hi))

    pulls: dict[str, list[float]] = {p: [] for p in PARAMETERS}
    errors: dict[str, list[float]] = {p: [] for p in PARAMETERS}

    def add(param: str, value: float, err: float, true: float) -> None:
        pulls[param].append(float((value - true) / err) if err > 0 else math.inf)
        errors[param].append(float(err))

    live = [i for i in range(n) if not dead[i]]
    for i in live:
        e = _entry(state, f"cells.{i}.bias_offset_V")
        if e is None:
            pulls["V0"].append(math.inf)  # a live cell without an offset: a failure
            continue
        at = crossing(e.run_id, i, e.value)
        a, x = at.alpha_K_per_V[i], xt_sum[i]
        add("V0", e.value, e.stderr, a * at.v0_V[i] / (a + x))
        w = _entry(state, f"cells.{i}.scurve_width_V")
        if w is not None:
            add("width", w.value, w.stderr, at.t_eff_K / (2 * (a + x)))
        f = _entry(state, f"cells.{i}.crosstalk_free_offset_V")
        if f is not None:
            add("V0_free", f.value, f.stderr, at.v0_V[i])
        g = _entry(state, f"cells.{i}.alpha_K_per_V")
        if g is not None:
            lo, hi = run_times(g.run_id)
            add("alpha", g.value, g.stderr, truth_at(0.5 * (lo + hi)).alpha_K_per_V[i])
        b = _entry(state, f"cells.{i}.barrier_K")
        if b is not None:
            add("barrier", b.value, b.stderr, truth.cells.barrier_K[i])
        r = _entry(state, f"cells.{i}.gamma0_Hz")
        if r is not None:
            add("gamma0", math.log(r.value), r.stderr / r.value, math.log(truth.cells.gamma0_Hz[i]))
    if truth.couplers is not None:
        for k, (a, b) in enumerate(np.asarray(truth.couplers.pairs)):
            if dead[a] or dead[b]:
                continue
            z = _entry(state, f"couplers.{k}.zero_coupling_V")
            if z is not None:
                add("coupler_zero", z.value, z.stderr, truth.couplers.vc0_V[k])
            s = _entry(state, f"couplers.{k}.kappa_over_teff_per_V")
            if s is not None:
                lo, hi = run_times(s.run_id)
                add("kappa", s.value, s.stderr, truth.couplers.kappa_K_per_V[k] / truth_at(0.5 * (lo + hi)).t_eff_K)
    scalars = {}
    for key, true in (("t_excess", truth.noise.t_excess_K), ("t_eff_exponent", truth.noise.t_eff_exponent)):
        e = _entry(state, f"noise.{key}" if key != "t_excess" else "noise.t_excess_K")
        # a design value (stderr 0) was not measured: no pull
        scalars[key] = None if e is None or not e.stderr > 0 else float((e.value - true) / e.stderr)
    kl = _entry(state, "validation.kl_nats")
    health = {i: state.value(f"cells.{i}.health", "") for i in range(n)}
    offsets = {i: state.get(f"cells.{i}.bias_offset_V") if f"cells.{i}.bias_offset_V" in state else None for i in range(n)}
    flagged = {i for i in range(n) if health[i] not in ("", "ok") or offsets[i] is None or not offsets[i].valid}
    fixed = {k.split(".")[-1]: state.value(k) for k in state.keys("fixed_point.")}
    return {
        "chip": chip.chip_id,
        "n_cells": n,
        "pulls": pulls,
        "stderr": errors,
        "scalars": scalars,
        "kl": None if kl is None else float(kl.value),
        "broken": sorted(int(i) for i in np.flatnonzero(dead)),
        "flagged": sorted(int(i) for i in flagged),
        "health": {str(i): str(h) for i, h in health.items()},
        "fixed_point": fixed,
        "status": {k: str(v) for k, v in report.status.items()},
    }


def _still(lab: Any) -> Any:
    """``truth_at`` of a simulator whose chips do not drift: the truth, any time."""
    from types import SimpleNamespace

    def at(t: float) -> Any:
        c = lab.truth.cells
        t_eff = lab.t_eff() if callable(lab.t_eff) else lab.t_eff
        return SimpleNamespace(v0_V=c.v0_V, alpha_K_per_V=c.alpha_K_per_V, t_eff_K=float(t_eff))

    return at


def _entry(state: Any, key: str) -> Any:
    if key not in state:
        return None
    e = state.get(key)
    if not e.valid or e.value is None or e.stderr is None:
        return None
    try:
        if not (math.isfinite(float(e.value)) and math.isfinite(float(e.stderr))):
            return None
    except (TypeError, ValueError):
        return None
    return e


# ----------------------------------------------------------------- judgement
@dataclass(frozen=True)
class Row:
    chip: str
    parameter: str
    n: int
    within_3sigma: float
    pull_rms: float
    max_abs_pull: float
    threshold: float  # family-wise for this chip's count of this parameter (shown; the acceptance is ChipRow)
    median_stderr: float

    @property
    def ok(self) -> bool:
        return self.max_abs_pull <= self.threshold


def rows(inspections: Iterable[Mapping[str, Any]]) -> list[Row]:
    out = []
    for ins in inspections:
        for p in PARAMETERS:
            pulls = np.asarray(ins["pulls"][p], dtype=float)
            if pulls.size == 0:
                continue
            errs = np.asarray(ins["stderr"][p], dtype=float)
            out.append(
                Row(
                    ins["chip"], p, int(pulls.size),
                    float(np.mean(np.abs(pulls) < 3)),
                    float(np.sqrt(np.mean(pulls**2))),
                    float(np.max(np.abs(pulls))),
                    family_n_sigma(int(pulls.size)),
                    float(np.median(errs)) if errs.size else math.nan,
                )
            )
    return out


@dataclass(frozen=True)
class ChipRow:
    """One chip's accepted values together: the acceptance's "no value beyond the
    family-wise threshold for that chip's number of values".

    The threshold counts every accepted value of the chip (offsets, gains, barriers,
    rates, coupler zeros and kappas alike), as the crosstalk check counts every entry
    of its matrix: judging each parameter of each chip at its own 1 % family-wise
    level would make ~120 tests of a 20-chip family, and honest errors would fail one
    of them ~70 % of the time; per chip it is 20 tests, ~18 %.
    """

    chip: str
    n: int
    max_abs_pull: float
    worst: str  # "<parameter> #<k>": the largest |pull|, the k-th of that parameter's values
    threshold: float

    @property
    def ok(self) -> bool:
        return self.max_abs_pull <= self.threshold


def chip_rows(inspections: Iterable[Mapping[str, Any]]) -> list[ChipRow]:
    out = []
    for ins in inspections:
        named = [
            (abs(float(z)), f"{p} #{k}")
            for p in ACCEPTED
            for k, z in enumerate(ins["pulls"].get(p, ()))
        ]
        if not named:
            continue
        top, worst = max(named)
        out.append(ChipRow(ins["chip"], len(named), top, worst, family_n_sigma(len(named))))
    return out


def pooled(inspections: Sequence[Mapping[str, Any]]) -> dict[str, tuple[int, float, float]]:
    """parameter -> (n, fraction within 3 sigma, pull rms) over the family."""
    out = {}
    for p in PARAMETERS:
        pulls = np.concatenate([np.asarray(i["pulls"][p], dtype=float) for i in inspections] or [np.zeros(0)])
        if pulls.size:
            out[p] = (int(pulls.size), float(np.mean(np.abs(pulls) < 3)), float(np.sqrt(np.mean(pulls**2))))
    return out


def failures(inspections: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every acceptance criterion of the family that fails, said in words (empty: all hold)."""
    bad = []
    for p, (n, frac, rms) in pooled(inspections).items():
        if p not in ACCEPTED:
            continue
        if frac < 0.95:
            bad.append(f"{p}: {frac:.1%} within 3 sigma over the family (n={n}) < 95 %")
        if not 0.8 <= rms <= 1.25:
            bad.append(f"{p}: pull rms {rms:.2f} over the family outside 0.8-1.25")
    for c in chip_rows(inspections):
        if not c.ok:
            bad.append(f"{c.chip}: |pull| {c.max_abs_pull:.2f} ({c.worst}) > family-wise {c.threshold:.2f} (n={c.n})")
    for key in ("t_excess", "t_eff_exponent"):
        zs = [i["scalars"][key] for i in inspections]
        missing = [i["chip"] for i in inspections if i["scalars"][key] is None]
        if missing:
            bad.append(f"{key}: not calibrated on {missing}")
            continue
        for i, z in zip(inspections, zs, strict=True):
            if abs(z) > 3:
                bad.append(f"{i['chip']} {key}: pull {z:+.1f} beyond 3 sigma")
        rms = float(np.sqrt(np.mean(np.square(zs))))
        if not 0.7 <= rms <= 1.4 and len(zs) >= 10:
            bad.append(f"{key}: pull rms {rms:.2f} over the family outside 0.7-1.4")
    for i in inspections:
        if i["kl"] is None or not i["kl"] < 0.02:
            bad.append(f"{i['chip']}: validation KL {i['kl']} not < 0.02 nats")
        if set(i["broken"]) - set(i["flagged"]):
            bad.append(f"{i['chip']}: broken cells not flagged {sorted(set(i['broken']) - set(i['flagged']))}")
        if set(i["flagged"]) - set(i["broken"]):
            bad.append(f"{i['chip']}: live cells flagged {sorted(set(i['flagged']) - set(i['broken']))}")
    return bad


def worst_fraction(inspections: Sequence[Mapping[str, Any]]) -> float:
    """The worst pooled fraction within 3 sigma over the accepted parameters."""
    fr = [frac for p, (_, frac, _) in pooled(inspections).items() if p in ACCEPTED]
    return min(fr) if fr else 0.0
