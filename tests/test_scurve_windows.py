"""Adaptive S-curve ranges: a cell the chip-wide sweep cannot resolve gets its own window."""

from __future__ import annotations

import json

import numpy as np
import pytest

from labstack.calibrate import CalibrationState, Context, StateChange
from labstack.calibrations.scurve_windows import Window, beyond_the_end, merged_volts, needs_window
from labstack.data import load_run
from labstack.fit import FitResult, ScurveResult, logistic
from labstack.session import calibrate_station
from labstack.sim.truth import GroundTruth
from labstack.visa import open_station
from tests.conftest import lab_description, lab_of

VOLTS = np.linspace(-1.0, 1.0, 61)


def _ok(cell: int, v0: float, w: float) -> ScurveResult:
    return ScurveResult(cell, FitResult("logistic", {"v0_V": v0, "width_V": w}, {"v0_V": 1e-3, "width_V": 1e-3}))


@pytest.mark.parametrize("v0", [1.15, 1.08, -1.1])
def test_a_centre_beyond_the_end_is_found_from_the_last_points(v0):
    w = 0.05
    p = logistic(VOLTS, v0, w)
    estimate = beyond_the_end(VOLTS, p, w)
    # the last point's P fixes the centre to a width or so (P is clipped at 2 %)
    assert estimate == pytest.approx(v0, abs=2 * w)


def test_flat_readings_give_no_window():
    assert beyond_the_end(VOLTS, np.full(VOLTS.size, 0.3), 0.05) is None


def test_which_cells_get_windows_and_why():
    results = [_ok(0, 0.0, 0.05), _ok(1, 0.9, 0.05), _ok(2, 0.1, 0.2), _ok(3, 0.2, 0.05), _ok(4, -0.1, 0.05)]
    failed = ScurveResult(5, FitResult.failed("logistic", "no switching"), flag="no_switching")
    failed.fit.extra["p"] = logistic(VOLTS, 1.1, 0.05).tolist()
    dead = ScurveResult(6, FitResult.failed("logistic", "dead"), flag="dead")
    dead.fit.extra["p"] = logistic(VOLTS, 1.1, 0.05).tolist()
    windows = {w.cell: w for w in needs_window([*results, failed, dead], VOLTS, broken={6, 1})}
    assert set(windows) == {1, 2, 5}  # cell 1 reads as stuck but its curve fitted: it is live
    assert "range" in windows[1].why and "width" in windows[2].why and "no_switching" in windows[5].why
    assert windows[5].centre_V == pytest.approx(1.1, abs=0.1) and windows[5].width_V == pytest.approx(0.05)


def test_one_sweep_covers_every_window_at_its_own_spacing():
    narrow, twin, wide, far = (Window(0, 0.10, 0.02, ""), Window(1, 0.13, 0.02, ""), Window(2, 0.2, 0.1, ""),
                               Window(3, -0.8, 0.02, ""))
    windows = [narrow, twin, wide, far]
    volts = merged_volts(windows, 6.0, 31, (-1.0, 1.0))
    assert np.all(np.diff(volts) > 0)
    for w in windows:  # every point a window asks for has one of the sweep's near it
        grid = w.volts(6.0, 31, (-1.0, 1.0))
        nearest = np.abs(grid[:, None] - volts[None, :]).min(axis=1)
        assert nearest.max() <= 0.5 * (grid[1] - grid[0]) + 1e-12
        inside = volts[(volts >= grid[0]) & (volts <= grid[-1])]
        assert np.diff(inside).max() <= (grid[1] - grid[0]) * (1 + 1e-9)
    # two overlapping windows of one spacing cost about one grid more than one of them,
    # far fewer than one sweep each
    assert len(volts) < 4 * 31 - 25
    assert len(merged_volts([narrow], 6.0, 31, (-1.0, 1.0))) == 31
    # the limits hold: a window at the edge is cut, not extended
    edge = merged_volts([Window(0, 0.98, 0.02, "")], 6.0, 31, (-1.0, 1.0))
    assert edge.max() <= 1.0 and edge.min() == pytest.approx(0.86)


def _calibrate(tmp_path, name: str, windows: bool, together: bool = True):
    """An ideal 8-cell chip with one offset at the sweep's end and one very narrow curve."""
    truth = GroundTruth.from_seed(5, 8, "chain", realism="ideal")
    truth.cells.v0_V[2] = 0.96
    truth.cells.alpha_K_per_V[5] = 1.5  # width ~10 mV: a couple of points on the 33 mV grid
    path = truth.save(tmp_path / f"{name}.json")
    description = lab_description(truth=path, seed=5)
    station = open_station("virtual", lab=description)
    try:
        data_dir = tmp_path / name
        # couplers idle at their true zeros: the cells are isolated, the S-curve model exact
        ctx = Context.create(data_dir, station)
        known = StateChange()
        for k, vc0 in enumerate(truth.couplers.vc0_V):
            known.set(f"couplers.{k}.zero_coupling_V", float(vc0), 0.0, "V")
        ctx.state.apply(known, clock=ctx.clock, node="coupler_zero", run_id="truth")
        calibrate_station(station, data_dir=data_dir, progress=False, names=["bias_scurve"],
                          params={"bias_scurve": {"n_samples": 1000, "windows": windows, "windows_together": together}})
        return lab_of(description), CalibrationState.load(data_dir / "calibration_state"), data_dir
    finally:
        station.close()


def test_edge_and_narrow_cells_get_windows_and_honest_precise_offsets(tmp_path):
    lab, state, data_dir = _calibrate(tmp_path, "windows", True)
    pulls = {}
    for cell in (2, 5):
        e = state.get(f"cells.{cell}.bias_offset_V")
        assert e.valid, e.note
        pulls[cell] = (e.value - lab.truth.cells.v0_V[cell]) / e.stderr
        assert abs(pulls[cell]) < 3, pulls
    # the values name one stored run: the chip-wide sweep (block 0) and the windows' sweep
    run = load_run(state.get("cells.2.bias_offset_V").run_id, data_dir).dataset()
    assert set(np.unique(run["block"].values)) == {0, 1}
    assert json.loads(run.attrs["block_cells"])[1] == [2, 5]
    narrow = state.get("cells.5.bias_offset_V").stderr
    # the wrong model: one range and one grid for every cell. The narrow curve then has a
    # couple of points on its transition: its offset is ~3x less precise
    lab1, state1, _ = _calibrate(tmp_path, "one_range", False)
    assert state1.get("cells.5.bias_offset_V").stderr > 2 * narrow


def test_windows_one_sweep_each_as_before(tmp_path):
    """The earlier acquisition (bench_lab_time's old settings): a run and a block per window."""
    lab, state, data_dir = _calibrate(tmp_path, "apart", True, together=False)
    run = load_run(state.get("cells.2.bias_offset_V").run_id, data_dir).dataset()
    assert set(np.unique(run["block"].values)) == {0, 1, 2}
    assert json.loads(run.attrs["block_cells"])[1:] == [[2], [5]]
    for cell in (2, 5):
        e = state.get(f"cells.{cell}.bias_offset_V")
        assert abs(e.value - lab.truth.cells.v0_V[cell]) < 3 * e.stderr
