"""Replay: a recorded run re-executed on the virtual lab, judged against ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from labstack.data import load_run
from labstack.measure import Read, Set, Sweep, run_sequence
from labstack.session import calibrate_station
from labstack.session.replay import REPORT_JSON, ReplayError, replay_run
from labstack.sim.truth import GroundTruth

SMALL = {"bias_scurve": {"n_points": 21, "n_samples": 400}}


@pytest.fixture
def chip_files(tmp_path: Path) -> tuple[Path, Path, float]:
    """A 4-cell chip's ground truth, and a copy with cell 2's V0 moved by 50 mV."""
    truth = GroundTruth.from_seed(7, 4, "chain")
    chip = truth.save(tmp_path / "chip.json")
    doc = json.loads(chip.read_text())
    doc["cells"]["v0_V"][2] += 0.05
    moved = tmp_path / "moved.json"
    moved.write_text(json.dumps(doc))
    return chip, moved, 0.05


def test_calibration_replays_bit_for_bit_and_a_moved_v0_is_named(virtual_station, chip_files, tmp_path):
    chip, moved, shift = chip_files
    station, lab = virtual_station(truth=chip)
    data = tmp_path / "data"
    report = calibrate_station(station, data_dir=data, progress=False, names=["bias_scurve"], params=SMALL)
    record = load_run(report.run_id, data)
    attrs = record.attrs
    assert record.name == "calibration" and record.metadata["kind"] == "calibration"
    assert "qdac1" in attrs["station_file"] and f"truth={chip}" in attrs["lab_description"]
    # a chip given as a ground-truth file names no seed in its description, and the station
    # never opens that file (no backdoor to the truth): the run has no seed to record
    assert lab.seed is not None and attrs["lab_seed"] is None
    assert attrs["calibration_state_version"] == 0
    with pytest.raises(ReplayError, match="qdac1.*open in this process"):
        replay_run(report.run_id, data)
    station.close()

    same = replay_run(report.run_id, data)
    assert same.expect_identical and same.identical and same.passed, same.text()
    assert any(v.name == "samples" for v in same.variables)
    keys = {p.key for p in same.parameters}
    assert {f"cells.{i}.bias_offset_V" for i in range(4)} <= keys
    assert all(p.delta == 0 for p in same.parameters if np.isfinite(p.delta))
    saved = json.loads((Path(same.out_dir) / REPORT_JSON).read_text())
    assert saved["passed"] is True and saved["identical"] is True

    other = replay_run(report.run_id, data, truth=moved)
    assert not other.passed and not other.expect_identical
    keys = [p.key for p in other.differences]
    assert keys[0] == "cells.2.bias_offset_V", other.text()
    assert all(k.startswith("cells.2.") for k in keys), other.text()
    top = other.differences[0]
    assert abs(top.delta - shift) < 5 * np.hypot(top.original_err, top.replay_err)
    assert "cells.2.bias_offset_V" in other.text() and "result: FAIL" in other.text()


def test_measurement_replays_bit_for_bit(virtual_station, tmp_path):
    station, lab = virtual_station(seed=11, cells=4)
    # only what the sequence holds is replayed: the sampler keeps its default sample count
    seq = Set("qdac1.ch02.dc_constant_V", 0.2) + Sweep.over(
        "v", "qdac1.ch01.dc_constant_V", np.linspace(-0.3, 0.3, 7),
        Read("sampler.samples", name="samples"), settle=1e-3,
    )
    run = run_sequence(seq, station, name="iv", data_dir=tmp_path, progress=False)
    assert run.attrs["lab_seed"] == 11 and run.attrs["seed"] == 11
    station.close()
    report = replay_run(run.id, tmp_path)
    assert report.kind == "measurement" and report.identical and report.passed, report.text()

    # a different chip: same sequence, different data, no fitted values to judge
    other = replay_run(run.id, tmp_path, lab="seed=12,cells=4")
    assert not other.identical and other.passed
    assert any(not v.identical and v.name == "samples" for v in other.variables)


def test_a_run_without_station_record_is_refused(tmp_path):
    from labstack.data.store import RunWriter

    writer = RunWriter("old", data_dir=tmp_path, attrs={"sequence": "{}"})
    run = writer.close("completed")
    with pytest.raises(ReplayError, match="station file"):
        replay_run(run.id, tmp_path)
