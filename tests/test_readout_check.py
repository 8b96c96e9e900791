"""The readout's cheap check: an unchanged readout stays in spec, a moved level does not.

The check fits each cell's levels from four configurations and a short wander trace,
and judges every cell's fit (chi-square, one degree of freedom, its variance from the
trace) and its levels against the calibrated ones. Judged cell by cell at a fixed
threshold, an unchanged 16-cell readout was flagged on about a third of the checks,
and each flag cost a recalibration (readout.chi2_threshold).
"""

from __future__ import annotations

import numpy as np

from labstack.calibrate import Context, Spec
from labstack.calibrations import readout
from labstack.session import build_graph
from tests.acquisition_truth import runs_of

CHECKS = 6


def test_checks_of_a_still_readout_pass_and_a_moved_level_is_caught(virtual_station, tmp_path):
    station, lab = virtual_station(seed=13, cells=16, drift="off")
    ctx = Context.create(tmp_path, station, progress=False)
    graph = build_graph(ctx, ["readout"], None, None)
    assert graph.calibrate("readout")
    chi2, verdicts = [], []
    for _ in range(CHECKS):
        station.clock.sleep(60.0)
        verdicts.append(graph.check_data("readout"))
        checked = runs_of(tmp_path, "readout")[-1]  # the data the check just judged
        chi2 += [c.fit.chi2_reduced for c in readout.fit(checked, graph["readout"].params).cells if c.ok]
    assert [v.spec for v in verdicts] == [Spec.IN_SPEC] * CHECKS, [v.reason for v in verdicts]
    # the fixed threshold of 5 would have flagged some of these checks on noise alone
    assert np.nanmax(chi2) > 5.0, np.nanmax(chi2)
    # a level that really moved (the amplifier's offset on one channel, 3 mV) is out of spec
    lab.readout.offset[4] += 3e-3
    moved = graph.check_data("readout")
    assert moved.spec is Spec.OUT_OF_SPEC and "cell 4 offset_V" in moved.reason, moved.reason
