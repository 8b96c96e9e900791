"""Two chips of the family (tests/family.py) calibrated from cold as one batch: the acceptance on each.

The chips (a chain at 5 % crosstalk with a dead cell and 1.5x spreads, a grid at
8 % crosstalk with twice the spreads and a dead cell) are calibrated with the
shipped routines through the batch code path; every value is judged against the
simulator's truth at the time of its acquisition (tests/family.py: inspect). The
whole family of 20 chips is ``bench/bench_family.py``.

A criterion the shipped routines do not meet is marked ``xfail(strict=True)`` with the
figure it reaches on the realistic simulator: it fails loudly the day it passes, so the
mark goes with the fix (none is marked today).
"""

from __future__ import annotations

import numpy as np
import pytest

from labstack.distributed.chips import calibrate_chips
from labstack.distributed.cluster import SERIAL
from tests import family

#: the one batch (module fixture) calibrates two 16-cell chips from cold on the realistic
#: simulator: ~110 s on one core
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def inspections(tmp_path_factory):
    root = tmp_path_factory.mktemp("family")
    chips = [family.chip_spec(m, family.write_truth(m, root)) for m in family.TEST_SUBSET]
    # the line-settling node with one repeat of each step (not judged here: it sets how long
    # sweeps settle, and its +3 sigma bound stays conservative), to keep the module short
    report = calibrate_chips(chips, root / "data", scheduler=SERIAL, inspect=family.inspect,
                             params={"bias_settling": {"repeats": 1}})
    missing = [(r.chip_id, r.error) for r in report.results if r.inspection is None]
    assert not missing, missing
    return [r.inspection for r in report.results]


def test_the_bias_loop_converged_and_says_how(inspections):
    for ins in inspections:
        fp = ins["fixed_point"]
        assert fp["converged"] is True, (ins["chip"], fp)
        assert 2 <= fp["passes"] <= 5 and fp["moving"] == []
        assert fp["last_change_sigma"] <= fp["threshold_sigma"]


def test_couplers_barriers_and_rates_within_the_family_wise_threshold_on_each_chip(inspections):
    rows = [r for r in family.rows(inspections) if r.parameter in ("coupler_zero", "kappa", "barrier", "gamma0")]
    assert len(rows) == 4 * len(inspections)
    bad = [(r.chip, r.parameter, round(r.max_abs_pull, 2), round(r.threshold, 2)) for r in rows if not r.ok]
    assert not bad, bad


def test_offsets_within_the_family_wise_threshold_on_each_chip(inspections):
    bad = [(r.chip, round(r.max_abs_pull, 2)) for r in family.rows(inspections) if r.parameter == "V0" and not r.ok]
    assert not bad, bad


def test_pooled_offsets_within_3_sigma_and_pull_rms_honest(inspections):
    n, frac, rms = family.pooled(inspections)["V0"]
    assert n >= 28
    assert frac >= 0.95, frac
    assert 0.8 <= rms <= 1.25, rms


def test_noise_floor_within_3_sigma_on_every_chip(inspections):
    for ins in inspections:
        z = ins["scalars"]["t_excess"]
        assert z is not None and abs(z) < 3, (ins["chip"], z)


def test_exponent_measured_within_3_sigma_on_every_chip(inspections):
    for ins in inspections:
        z = ins["scalars"]["t_eff_exponent"]
        assert z is not None and abs(z) < 3, (ins["chip"], z)


def test_validation_kl_below_acceptance_on_every_chip(inspections):
    for ins in inspections:
        assert ins["kl"] is not None and ins["kl"] < 0.02, (ins["chip"], ins["kl"])


def test_every_broken_cell_flagged_and_no_live_one(inspections):
    for ins in inspections:
        assert ins["flagged"] == ins["broken"], ins["chip"]
    assert sum(len(i["broken"]) for i in inspections) >= 2  # the subset has broken cells to find


def test_gains_within_3_sigma_at_8_percent_crosstalk(inspections):
    """The grid at 8 % crosstalk: a DAC neighbour swept alongside a cell in the
    effective-temperature grids scales the step its field sees."""
    grid = next(i for i in inspections if i["chip"].startswith("fam-110"))
    pulls = np.asarray(grid["pulls"]["alpha"])
    assert np.mean(np.abs(pulls) < 3) >= 0.9, np.round(pulls, 1)
