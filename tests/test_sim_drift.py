"""A chip that drifts on the lab clock: offsets diffuse, gains wander, defects jump; its truth at any time.

Checked against the laws themselves: a random walk's variance grows as ``D^2 t`` per
cell (a chip that did not drift, or drifted at one shared rate, fails), jumps come as
a Poisson process of the drawn rate and sizes, a jump injected at a chosen time lands
then, ``drift=off`` keeps the chip still, and ``VirtualLab.truth_at`` is what the
fields were made of at that time.
"""

from __future__ import annotations

import numpy as np
import pytest

from labstack.sim.drift import ChipDrift
from labstack.sim.lab import VirtualLab
from labstack.sim.truth import DriftTruth


def test_offsets_diffuse_at_each_cells_own_rate():
    n, trials, span = 6, 400, 3600.0
    rates = np.array([1e-4, 2e-4, 4e-4, 8e-4, 1.6e-3, 3.2e-3]) / 60  # V / sqrt(s)
    truth = DriftTruth(rates, np.zeros(n), 0.0)
    moves = []
    for k in range(trials):
        drift = ChipDrift(np.zeros(n), np.ones(n), truth, np.random.default_rng(k))
        for t in np.linspace(100.0, span, 36):  # updated in steps: exact at any step
            drift.update(t)
        moves.append(drift.v0.copy())
    sd = np.std(moves, axis=0)
    expected = rates * np.sqrt(span)
    np.testing.assert_allclose(sd, expected, rtol=4 / np.sqrt(2 * trials))  # sd of an sd: 1/sqrt(2N)
    assert sd.max() / sd.min() > 10  # not one shared rate


def test_gains_wander_multiplicatively_and_far_more_slowly():
    truth = DriftTruth(np.zeros(200), np.full(200, 3e-4 / 60), 0.0)
    drift = ChipDrift(np.zeros(200), np.full(200, 0.3), truth, np.random.default_rng(1))
    drift.update(7200.0)
    rel = drift.alpha / 0.3 - 1
    assert np.std(rel) == pytest.approx(3e-4 / 60 * np.sqrt(7200.0), rel=0.15)


def test_defect_jumps_arrive_as_a_poisson_process_of_the_drawn_rate_and_sizes():
    truth = DriftTruth(np.zeros(16), np.zeros(16), 1.0 / 86400, 0.003, 0.03)
    drift = ChipDrift(np.zeros(16), np.ones(16), truth, np.random.default_rng(2))
    days = 400
    drift.update(days * 86400.0)
    count = len(drift.jumps)
    assert abs(count - days) < 4 * np.sqrt(days)  # Poisson: mean = variance = rate * time
    sizes = np.abs([j.volts for j in drift.jumps])
    assert sizes.min() >= 0.003 and sizes.max() <= 0.03
    # log-uniform sizes: ln(size) uniform over ln(3 mV) .. ln(30 mV): mean at the geometric middle
    assert np.mean(np.log(sizes)) == pytest.approx(np.log(np.sqrt(0.003 * 0.03)), abs=4 * 0.66 / np.sqrt(count))
    assert 0.35 < np.mean([j.volts > 0 for j in drift.jumps]) < 0.65  # either sign
    np.testing.assert_allclose(drift.v0, np.bincount([j.cell for j in drift.jumps], [j.volts for j in drift.jumps], 16))


def test_a_jump_injected_at_a_chosen_time_lands_then_and_truth_at_tells_before_from_after():
    lab = VirtualLab.from_description("seed=5,cells=4")
    lab.sleep(100.0)
    before = lab.truth_at().v0_V[2]
    lab.drift.schedule_jump(2, 0.02, at=500.0)
    lab.sleep(1000.0)
    assert lab.truth_at(499.0).v0_V[2] == pytest.approx(before, abs=1e-3)  # diffusion only
    assert lab.truth_at(1000.0).v0_V[2] - lab.truth_at(499.0).v0_V[2] == pytest.approx(0.02, abs=1e-3)
    (jump,) = [j for j in lab.drift.jumps if j.scheduled]
    assert jump.time == 500.0 and jump.cell == 2
    with pytest.raises(ValueError, match="already"):
        lab.drift.schedule_jump(1, 0.01, at=10.0)


def test_drift_off_keeps_the_chip_still_and_ideal_chips_never_move():
    still = VirtualLab.from_description("seed=5,cells=4,drift=off")
    moving = VirtualLab.from_description("seed=5,cells=4")
    for lab in (still, moving):
        lab.sleep(7200.0)
    np.testing.assert_array_equal(still.truth_at().v0_V, still.truth.cells.v0_V)
    assert np.max(np.abs(moving.truth_at().v0_V - moving.truth.cells.v0_V)) > 1e-5
    ideal = VirtualLab.from_description("seed=5,cells=4,realism=ideal")
    ideal.sleep(7200.0)
    assert ideal.drift is None
    np.testing.assert_array_equal(ideal.truth_at().v0_V, ideal.truth.cells.v0_V)


def test_truth_at_is_what_the_fields_were_made_of():
    lab = VirtualLab.from_description("seed=5,cells=4,drift=on")
    for k in range(1, 4):
        lab.set_dac(1, 1, 0.1 * k)
        lab.sleep(3600.0)
        at = lab.truth_at()
        h = at.alpha_K_per_V * (lab.bias_V - at.v0_V)
        np.testing.assert_allclose(lab.fields(), h, rtol=1e-12)
    assert lab.truth_at(3600.0).time == 3600.0
    with pytest.raises(ValueError, match="future"):
        lab.truth_at(lab.clock.now() + 10.0)
