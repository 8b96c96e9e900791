"""The readout node's swing must saturate every cell; one it does not is caught switching.

A swing of +-0.35 V on the default 16-cell chip leaves the cells with offsets beyond
~0.15 V switching in the configurations that hold them low: their readings there mix
both levels. The node leaves those acquisitions out (or calls the cell unsaturated)
and every level it does state is right within its error; the old fit, which used every
configuration, missed amplitudes by several sigma.
"""

from __future__ import annotations

import numpy as np
import pytest

from labstack.calibrate import CalibrationGraph, Context
from labstack.calibrations import readout
from tests.acquisition_truth import runs_of, truth_at_middle

SWING = 0.35


@pytest.fixture(scope="module")
def narrow_swing(tmp_path_factory):
    from tests.conftest import lab_description, lab_of, open_station

    tmp = tmp_path_factory.mktemp("narrow")
    description = lab_description(seed=5, cells=16)
    station = open_station("virtual", lab=description)
    lab = lab_of(description)
    params = readout.Parameters(v_low=-SWING, v_high=SWING)
    graph = CalibrationGraph(Context.create(tmp, station))
    graph.add_module(readout, params)
    graph.calibrate_all()
    dataset = runs_of(tmp, "readout")[0].load()
    yield lab, dataset, params
    station.close()


def _pulls(lab, dataset, result):
    at = truth_at_middle(lab, dataset, "config")
    return {
        r.cell: ((r.fit["amp_V"] - at.readout_amp_V[r.cell]) / r.fit.error("amp_V"),
                 (r.fit["offset_V"] - at.readout_offset_V[r.cell]) / r.fit.error("offset_V"))
        for r in result.cells if r.ok
    }


def test_switching_acquisitions_are_left_out_and_stated_levels_are_right(narrow_swing):
    lab, dataset, params = narrow_swing
    result = readout.fit(dataset, params)
    v0 = np.abs(lab.truth.cells.v0_V)
    unsaturated = {r.cell for r in result.cells if r.health == readout.UNSATURATED}
    partly = {r.cell for r in result.cells if r.ok and r.detail.get("switching_configs")}
    assert unsaturated and all(v0[i] > 0.12 for i in unsaturated), (unsaturated, v0)
    assert all(v0[i] > 0.06 for i in partly), (partly, v0)  # a neighbour's crosstalk pulls it back
    assert all(r.ok for r in result.cells if v0[r.cell] < 0.05)  # far inside the swing: fitted
    for r in result.cells:
        if r.health == readout.UNSATURATED:
            assert "does not saturate" in r.fit.message
    pulls = _pulls(lab, dataset, result)
    assert len(pulls) >= 10
    assert max(abs(p) for pair in pulls.values() for p in pair) < 3.2, pulls


def test_a_fit_that_keeps_switching_acquisitions_misses_amplitudes(narrow_swing, monkeypatch):
    lab, dataset, params = narrow_swing
    monkeypatch.setattr(readout, "switching_acquisitions", lambda variance, *_: np.zeros(np.shape(variance), bool))
    pulls = _pulls(lab, dataset, readout.fit(dataset, params))
    assert max(abs(a) for a, _ in pulls.values()) > 4.0, pulls
