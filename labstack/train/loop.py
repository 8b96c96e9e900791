"""The training loop: program, wait, sample, measure, update; recorded, safe, timed.

One iteration writes every bias and coupler line (one guarded message per DAC,
:class:`~labstack.train.program.LineWriter`), waits for the lines' ramp rate and the
calibrated DAC settling time, takes one single-shot sample of all cells, computes the
target cells' statistics (:mod:`~labstack.train.stats`, thresholded by the run's
readout split: fitted on the first sample, then only checked for drift,
:mod:`~labstack.train.readout`) and the next update
(:mod:`~labstack.train.update`). Each part is timed in wall and lab seconds and the
iteration is streamed to the run (:mod:`~labstack.train.record`); the wall time of
that record (a zarr flush) is computing, counted in the next iteration's split, which
is the one it delays.

Before the loop the target is checked on the chip (nothing is sent for a bad file) and
the open-loop point (the target programmed through the calibration alone) is
programmed through the ramping parameters; after it, the chip is scored on a long
evaluation sample at the open-loop and the trained parameters alike: ``KL(chip ||
target)`` by exact enumeration for a model target, the held-out log-likelihood per
sample (next to the exact maximum-likelihood model of the same graph) for data.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labstack.calibrate import STATE_DIRNAME, CalibrationState
from labstack.data import resolve_data_dir
from labstack.train import exact
from labstack.train.program import ChipMap, LineWriter, UpdateRefused
from labstack.train.readout import ReadoutSplit
from labstack.train.record import PARTS, Recorder, resume_point
from labstack.train.stats import Moments, measure
from labstack.train.target import Target, TargetError, load_target
from labstack.train.update import Schedule, StopRule, diverging, residual, step


@dataclass
class TrainConfig:
    """How hard the loop samples and when it stops."""

    n_samples: int = 40_000
    sample_rate_Hz: float = 100e3
    #: wait after writing before sampling; None: the state's ``dac.settle_s`` (else 1 ms)
    settle_s: float | None = None
    #: samples of the scoring acquisitions (open loop and trained)
    n_eval: int = 400_000
    evaluate_open_loop: bool = True
    #: refused updates (limits) in a row before the run stops; each halves the step
    max_refusals: int = 3
    schedule: Schedule = field(default_factory=Schedule)
    stop: StopRule = field(default_factory=StopRule)


@dataclass
class Score:
    """One evaluation of the chip at fixed parameters."""

    kl_nats: float | None = None  # model target
    kl_bias_nats: float | None = None  # finite-sample bias of the plug-in estimate
    loglik: float | None = None  # data target: held-out nats per sample
    n_eff: float = 0.0


@dataclass
class TrainResult:
    run_id: str
    kind: str
    cells: list[int]
    edges: list[list[int]]
    edge_couplers: list[int]
    #: the model target's (theta, beta), or the exact ML model of a data target's graph
    target_params: np.ndarray
    params: np.ndarray
    open_loop_params: np.ndarray
    iterations: int
    stopped: str  # "converged", "max_iterations", "diverged: ...", "refused: ..."
    chi2: list[float]
    timings: list[dict[str, float]]
    trained: Score
    open_loop: Score | None = None
    loglik_ml: float | None = None  # data: the exact ML model of the graph on the held-out rows
    messages_per_iteration: float = 0.0

    @property
    def converged(self) -> bool:
        return self.stopped == "converged"

    def last_line(self) -> str:
        if self.kind == "model":
            return f"KL = {self.trained.kl_nats:.5f} nats"
        return f"held-out log-likelihood = {self.trained.loglik:.4f} nats/sample"

    def render(self) -> str:
        lines = [f"training run {self.run_id}: {self.kind} target on cells {self.cells}, "
                 f"{len(self.edges)} couplers; {self.iterations} iterations, stopped: {self.stopped}"]
        if self.chi2:
            lines.append("chi2/dof per iteration: " + " ".join(f"{c:.2f}" for c in self.chi2))
        if self.timings:
            mean = {k: float(np.mean([t[k] for t in self.timings])) for k in self.timings[0]}
            lines.append("per iteration (wall ms): " + ", ".join(
                f"{p} {1e3 * mean[f'wall_{p}_s']:.2f}" for p in PARTS)
                + "; lab ms: " + ", ".join(f"{p} {1e3 * mean[f'lab_{p}_s']:.2f}" for p in PARTS)
                + f"; {self.messages_per_iteration:.1f} SCPI writes per iteration")
        if self.kind == "model":
            if self.open_loop is not None:
                lines.append(f"open loop: KL = {self.open_loop.kl_nats:.5f} nats")
            lines.append(f"trained:   KL = {self.trained.kl_nats:.5f} nats "
                         f"(finite-sample bias ~{self.trained.kl_bias_nats:.5f}, n_eff {self.trained.n_eff:.0f})")
        else:
            lines.append(f"exact ML model of the graph: {self.loglik_ml:.4f} nats/sample on the held-out rows")
            if self.open_loop is not None:
                lines.append(f"open loop: {self.open_loop.loglik:.4f} nats/sample")
        lines.append(self.last_line())
        return "\n".join(lines)


class _Stop(Exception):
    pass


def train(
    station: Any,
    target: Target | str | Path,
    *,
    state: CalibrationState | None = None,
    data_dir: str | Path | None = None,
    config: TrainConfig | None = None,
    resume: str | None = None,
    start_params: np.ndarray | None = None,
    on_iteration: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train the chip of ``station`` toward ``target`` (a :class:`Target` or a target file).

    ``state``: the calibration state (default: the one in ``data_dir``). ``resume``: the
    run id of an earlier training of the same target to continue from. ``start_params``:
    a warm start, e.g. the parameters an earlier training of the same target ended at
    (a periodic re-training of a drifting chip starts where the last one left it, which
    is nearer than the open-loop point); a new run with a full iteration budget.
    """
    config = config or TrainConfig()
    target = target if isinstance(target, Target) else load_target(target)
    if state is None:
        state = CalibrationState.load(resolve_data_dir(data_dir) / STATE_DIRNAME)
    layout = station.layout
    pairs = [tuple(p) for p in layout.coupler_pairs]
    cmap = ChipMap.build(target, state, layout.n_cells, pairs)  # a bad target stops here: nothing sent
    edges = cmap.edges
    mu_target, err_target, start, reference = _reference(cmap)
    settle = config.settle_s
    if settle is None:
        settle = float(state.value("dac.settle_s", 1e-3) or 1e-3)
    open_params = start.copy()
    start_iteration, best_chi2 = 0, math.inf
    if resume is not None:
        point = resume_point(resume, data_dir)
        if point.metadata.get("cells") != target.cells:
            raise TargetError(f"{target.path}: cells: run {resume} trained cells {point.metadata.get('cells')}, not {target.cells}")
        start, start_iteration, best_chi2 = point.params, point.iterations, point.best_chi2
        open_params = np.asarray(point.metadata.get("open_loop_params", open_params), dtype=float)
    elif start_params is not None:
        start = np.asarray(start_params, dtype=float)
        if start.shape != open_params.shape:
            raise TargetError(f"{target.path}: start_params: {start.shape[0] if start.ndim else 0} values, "
                              f"the target has {open_params.shape[0]} parameters")
    names = list(layout.bias) + list(layout.couplers)
    writer = LineWriter(station, names)
    first = np.concatenate(cmap.voltages(start))
    writer.check_limits(first)  # refused before anything is sent
    clock = station.clock
    sampler = station.components[layout.readout]
    sampler.sample_rate(config.sample_rate_Hz)
    metadata = {
        "target_file": target.path, "kind": target.kind, "cells": target.cells, "edges": edges.tolist(),
        "edge_couplers": cmap.edge_couplers.tolist(), "t_eff_K": cmap.t_eff_K, "settle_s": settle,
        "open_loop_params": open_params.tolist(), "config": json.loads(json.dumps(asdict(config))),
        "state_version": state.version, "resumed_from": resume, "start_iteration": start_iteration,
    }
    n_iter = config.stop.max_iterations
    recorder = Recorder(data_dir, n_iter, cmap.n_params, layout.n_cells, len(pairs), metadata, mu_target)

    def program_ramped(params: np.ndarray) -> None:
        for name, v in zip(names, np.concatenate(cmap.voltages(params)), strict=True):
            station.parameter(name).set(float(v))
        clock.sleep(settle)

    open_score = None
    rows = _transfer_only(sampler, cmap.cells)
    try:
        if config.evaluate_open_loop and resume is None:
            program_ramped(open_params)
            open_score = _score(sampler, cmap, config, reference, rows)
        program_ramped(start)
        sampler.n_samples(config.n_samples)
        params, best, best_params = start.copy(), best_chi2, start.copy()
        chi2s: list[float] = []
        timings: list[dict[str, float]] = []
        stopped, calm, refusals = "max_iterations", 0, 0
        delta = np.zeros_like(params)
        split: ReadoutSplit | None = None  # fitted on the run's first sample
        it = start_iteration
        recording = 0.0  # wall seconds the last iteration's record took: this one's computing
        while it < n_iter:
            t = _Timer(clock)
            t.parts["wall_compute_s"] += recording
            recording = 0.0
            scale, sent_messages, proposal = 1.0, 0, params
            if it > start_iteration:
                proposal = params + delta
                volts = np.concatenate(cmap.voltages(proposal))
                try:
                    writer.check_limits(volts)
                except UpdateRefused as exc:
                    refusals += 1
                    if refusals > config.max_refusals:
                        stopped = f"refused: {exc}"
                        break
                    delta = 0.5 * delta  # refused, never sent: a shorter step next
                    continue
                ratio = writer.step_ratio(volts)
                if ratio > 1.0:  # scaled back to the largest step the ramps allow
                    scale = 0.999 / ratio
                    proposal = params + scale * delta
                    volts = np.concatenate(cmap.voltages(proposal))
                t.lap("compute")
                wait = writer.ready_at() - clock.now()
                if wait > 0:
                    clock.sleep(wait)
                t.lap("wait")
                sent_messages = writer.write(volts)
                t.lap("io")
                clock.sleep(settle)
                t.lap("wait")
            readings = sampler.acquire()
            t.lap("sample", lab=config.n_samples / config.sample_rate_Hz)
            params = proposal
            mine = readings[rows]
            split = ReadoutSplit.fit(mine, target.cells) if split is None else split.follow(mine, target.cells)
            chip = measure(mine, edges, target.cells, split)
            r, chi2 = residual(mu_target, err_target, chip)
            why = diverging(chi2, best, params, config.stop)
            if why is None and chi2 < best:
                best, best_params = chi2, params.copy()
            eta = config.schedule.eta(it - start_iteration)
            delta = step(r, chip, eta)
            t.lap("compute")
            refusals = 0
            chi2s.append(chi2)
            timings.append(t.split())
            t_record = time.perf_counter()
            bias_v, coupler_v = cmap.voltages(params)
            recorder.iteration({
                "params": params, "bias_V": bias_v, "coupler_V": coupler_v, "moments": chip.value,
                "moments_err": chip.stderr, "chi2": chi2, "eta": eta, "scale": scale, "sent": 1.0,
                "messages": sent_messages, "n_eff": chip.n_eff, **timings[-1],
            })
            recording = time.perf_counter() - t_record
            if on_iteration is not None:
                on_iteration(it, {"chi2": chi2, "eta": eta, "scale": scale, **timings[-1]})
            it += 1
            if why is not None:
                stopped = f"diverged: {why}"
                break
            calm = calm + 1 if chi2 <= config.stop.threshold(len(r)) else 0
            if calm >= config.stop.patience and it - start_iteration >= config.stop.min_iterations:
                stopped = "converged"
                break
        final = params if not stopped.startswith(("diverged", "refused")) else best_params
        if stopped.startswith(("diverged", "refused")):
            program_ramped(final)  # the last good parameters, through the ramps
        trained = _score(sampler, cmap, config, reference, rows)
        sampler.n_samples(config.n_samples)
    except BaseException as exc:
        recorder.close("failed", {"stopped": "error"}, error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        _transfer_all(sampler)
    result = TrainResult(
        run_id=recorder.run_id, kind=target.kind, cells=list(target.cells), edges=edges.tolist(),
        edge_couplers=cmap.edge_couplers.tolist(), target_params=reference["params"],
        params=final, open_loop_params=open_params, iterations=it, stopped=stopped, chi2=chi2s,
        timings=timings, trained=trained, open_loop=open_score,
        loglik_ml=reference.get("loglik_ml"),
        messages_per_iteration=writer.messages / max(len(timings) - 1, 1),
    )
    recorder.close("completed", {"stopped": stopped, "iterations": it, "final_params": final.tolist(),
                                 "last_line": result.last_line()})
    return result


# ---------------------------------------------------------------- helpers
class _Timer:
    """Wall and lab seconds per part of one iteration."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.wall = time.perf_counter()
        self.lab = clock.now()
        self.parts = {f"{c}_{p}_s": 0.0 for p in PARTS for c in ("wall", "lab")}

    def lap(self, part: str, lab: float | None = None) -> None:
        wall, now = time.perf_counter(), self.clock.now()
        self.parts[f"wall_{part}_s"] += wall - self.wall
        self.parts[f"lab_{part}_s"] += (now - self.lab) if lab is None else lab
        self.wall, self.lab = wall, now

    def split(self) -> dict[str, float]:
        return dict(self.parts)


def _reference(cmap: ChipMap) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Target moments, their errors, the open-loop parameters, and what scores need."""
    t, n, edges = cmap.target, cmap.target.n, cmap.edges
    if t.kind == "model":
        params = cmap.model_params()
        p = exact.distribution(params, n, edges)
        return exact.moments(p, n, edges), np.zeros(cmap.n_params), params, {"p": p, "params": params}
    rows, held = t.split()
    f = exact.features(rows, edges)
    mu = f.mean(axis=0)
    err = np.sqrt(np.clip(1 - mu**2, 1.0 / len(rows), None) / len(rows))
    ml = exact.fit_ml(mu, n, edges)
    p_ml = exact.distribution(ml, n, edges)
    return mu, err, ml, {"held": held, "p_ml": p_ml, "params": ml, "loglik_ml": exact.log_likelihood(p_ml, held)}


def _transfer_only(sampler: Any, cells: Any) -> np.ndarray | slice:
    """Have the sampler send the target cells' readings only, if it can; the rows of an
    acquisition that hold them, in the target's order (all of them, as a slice: a view
    of the readings, not a copy).

    A loop on a dozen cells of a 64-cell chip then moves a dozen cells' readings per
    iteration (a fifth of the transfer and parsing); a sampler without a channel
    selection sends every cell and the rows are picked out of it.
    """
    cells = np.asarray(cells, dtype=int)
    selection = getattr(sampler, "channels", None)
    if selection is None:
        return cells
    selection([int(c) for c in cells])
    return slice(None)


def _transfer_all(sampler: Any) -> None:
    """Back to every cell (what calibration routines expect of the sampler)."""
    selection = getattr(sampler, "channels", None)
    if selection is not None:
        selection(None)


def _score(sampler: Any, cmap: ChipMap, config: TrainConfig, reference: dict[str, Any],
           rows: np.ndarray | slice) -> Score:
    """Score the chip as programmed now on one long acquisition (``rows``: the target cells')."""
    sampler.n_samples(config.n_eval)
    readings = sampler.acquire()
    chip: Moments = measure(readings[rows], cmap.edges, cmap.target.cells)
    p = chip.distribution()
    if cmap.target.kind == "model":
        q = reference["p"]
        support = int(np.count_nonzero(q > 1.0 / chip.n_eff))
        return Score(kl_nats=exact.kl(p, q), kl_bias_nats=(support - 1) / (2 * chip.n_eff), n_eff=chip.n_eff)
    # held-out rows under the chip's distribution, half a count of prior per state
    smoothed = (p * chip.n_samples + 0.5) / (chip.n_samples + 0.5 * p.size)
    return Score(loglik=exact.log_likelihood(smoothed, reference["held"]), n_eff=chip.n_eff)
