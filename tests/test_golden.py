"""The project's own CI replays its golden runs through the labstack pytest plugin.

If one of these fails, labstack now measures something different from what it did
when the golden files were made. If that is intended, rewrite them with
``python -m tests.golden._make`` and say why in the commit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from labstack.pytest_plugin import golden_runs
from tests.golden.scripts import scpi_session

GOLDEN = Path(__file__).parent / "golden"
RUNS = GOLDEN / "runs"


def test_golden_files_are_present_and_small():
    kinds = sorted(p.parent.name for p in RUNS.glob("*/run.json"))
    # the calibration record; its acquisitions: bias_scurve, readout, and the cryostat's
    # three runs on the realistic chip (its heating, and a cool-down as long as it needs); a measurement
    assert len(kinds) == 7, kinds
    assert len(golden_runs(RUNS)) == 2
    size = sum(p.stat().st_size for p in GOLDEN.rglob("*") if p.is_file())
    assert size < 500_000, f"golden files are {size / 1e3:.0f} kB"


@pytest.mark.parametrize("run_id", golden_runs(RUNS))
def test_golden_run_replays_bit_for_bit(run_id, labstack_replay):
    report = labstack_replay(run_id, RUNS)
    assert report.expect_identical
    assert report.passed and report.identical, report.text()
    assert not any((RUNS / name).exists() for name in ("replays", "calibration_state"))


def test_drivers_replay_the_golden_scpi_transcript(labstack_playback):
    station = labstack_playback(GOLDEN / "scpi_session.jsonl.gz")
    temperature, samples = scpi_session(station)
    assert samples.shape == (4, 8) and np.isfinite(samples).all()
    assert 0.005 < temperature < 0.05  # the mixing chamber, as recorded
