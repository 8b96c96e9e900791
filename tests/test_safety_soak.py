"""Soak: a calibration under a seeded mix of faults loses no completed point and keeps the state whole.

``soak()`` is also what the figures in the issue note come from (run with more
points and another seed: ``python tests/test_safety_soak.py 0.01 11 61``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from safety_helpers import write_station

from labstack.calibrate import CalibrationGraph, CalibrationState, Context
from labstack.data import list_runs, load_run

SUSPENDER = """\
  suspenders:
    - {signal: ls372.ch06.temperature, high: 0.03, settle_s: 20, poll_s: 2, timeout_s: 7200}
"""


def soak(make_station, tmp_path: Path, rate: float, fault_seed: int, n_points: int) -> dict:
    """Calibrate the bias S-curves of a 4-cell chip under random faults; the figures."""
    from labstack.calibrations import bias_scurve
    from labstack.calibrations._common import line_limits
    from labstack.calibrations.scurve_windows import Window, merged_volts

    station, lab = make_station(
        str(write_station(tmp_path, SUSPENDER)), seed=7, cells=4, faults=rate, fault_seed=fault_seed
    )
    station.clock.sleep(1.0)  # random faults start once lab time moves
    ctx = Context.create(tmp_path / "data", station)
    graph = CalibrationGraph(ctx)
    params = bias_scurve.Parameters(n_points=n_points, n_samples=400, settle_s=0.05)
    graph.add_module(bias_scurve, params)
    ok = graph.calibrate("bias_scurve")
    state = CalibrationState.load(tmp_path / "data" / "calibration_state")
    # bias_scurve may measure in several runs (the chip-wide sweep, then one sweep over the
    # windows of the cells it did not resolve), stored merged as one run: the one the
    # state's values name. Every run must complete, and the merged dataset hold every
    # point of every part.
    runs = list_runs(tmp_path / "data")
    run = load_run(state.get("cells.0.bias_offset_V").run_id, tmp_path / "data")
    windows = json.loads(run.dataset().attrs.get("windows", "[]"))
    assert len(runs) == (1 if not windows else 3), [r.id for r in runs]
    samples = run.dataset()["samples"]
    complete = samples.notnull().all(dim=[d for d in samples.dims if d != "bias"])
    finite_points = int(complete.sum())
    # the windows' sweep as planned from the windows alone (not from what was stored)
    low, high = line_limits(ctx, station.layout.bias, params.limits_V)
    limits = (float(low.max()), float(high.min()))  # every line moves: within all their limits
    planned = [Window(w["cell"], w["centre_V"], w["width_V"], w["why"]) for w in windows]
    window_points = len(merged_volts(planned, params.window_widths, params.window_points, limits))
    n_planned = n_points + window_points
    stats = station.safety.hardener.stats
    v0 = np.array([state.value(f"cells.{i}.bias_offset_V", np.nan) for i in range(4)])
    counts = lab.faults.counts()
    return {
        "calibrated": ok,
        "run_status": run.info["status"],
        "run_statuses": sorted({r.info["status"] for r in runs}),
        "windows": len(windows),
        "window_points": window_points,
        "points_planned": n_planned,
        "points_stored": finite_points,
        "points_lost": n_planned - finite_points,
        "faults_injected": sum(counts.values()),
        "by_kind": counts,
        "errors_seen": stats.errors,
        "recovered": stats.recovered,
        "reconnects": stats.reconnects,
        "gave_up": stats.failures,
        "suspensions": sum(e["kind"] == "suspend" for r in runs for e in r.info.get("control_events", [])),
        "state_version": state.version,
        "state_history": [h.version for h in state.history()],
        "v0_error_V": np.abs(v0 - lab.truth.cells.v0_V),
        "lab_time_s": lab.clock.now(),
    }


def test_soak_under_random_faults_loses_no_point(virtual_station, tmp_path):
    figures = soak(virtual_station, tmp_path, rate=0.01, fault_seed=3, n_points=21)
    print(figures)
    assert figures["faults_injected"] >= 10 and figures["gave_up"] == 0
    assert figures["calibrated"] and figures["run_status"] == "completed"
    assert figures["run_statuses"] == ["completed"]  # the sweep, the windows' sweep, the merged run
    # 21 points of the chip-wide sweep plus the windows' sweep (the windows depend on the fit)
    assert figures["points_lost"] == 0
    assert figures["points_stored"] == figures["points_planned"] == 21 + figures["window_points"]
    assert figures["window_points"] <= 31 * figures["windows"]
    assert figures["state_history"] == [1] and figures["state_version"] == 1
    assert np.all(figures["v0_error_V"] < 0.04), figures["v0_error_V"]


if __name__ == "__main__":  # pragma: no cover - the figures for the issue note
    import tempfile

    from conftest import lab_description, lab_of

    from labstack.visa import open_station

    def make(path, **options):
        description = lab_description(**options)
        return open_station(path, lab=description), lab_of(description)

    rate, seed, n = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    with tempfile.TemporaryDirectory() as tmp:
        figures = soak(make, Path(tmp), rate, seed, n)
    for key, value in figures.items():
        print(f"{key}: {value}")
