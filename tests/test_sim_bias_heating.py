"""Bias heating: current in the bias lines warms the mixing chamber, so T_eff depends on where the DACs sit.

Each line dissipates ``k V^2`` (microwatts for a bank at full range), which joins the
mixing chamber's load: the base becomes ``sqrt((P_load + k sum V^2) / a)``, the closed
form the fridge is compared with after settling. A model without the heating misses.
"""

from __future__ import annotations

import numpy as np
import pytest

from labstack.sim.lab import VirtualLab


def test_bias_lines_warm_the_mixing_chamber_as_their_power_says():
    lab = VirtualLab.from_description("seed=11,cells=16,drift=off")
    c = lab.truth.cryostat
    cold_base = c.mc_base_K
    volts = np.linspace(-1.5, 1.5, 16)
    for i, v in enumerate(volts):
        lab.set_dac(1, i + 1, float(v))
    lab.sleep(15 * c.mc_tau_s(cold_base))  # many time constants: settled
    power = c.bias_heating_W_per_V2 * float(np.sum(volts**2))
    expected = np.sqrt((c.mc_load_W + power) / c.mc_cooling_W_per_K2)
    assert lab.cryostat.t_mc == pytest.approx(expected, rel=1e-4)
    assert lab.truth_at().mc_base_K == pytest.approx(expected, rel=1e-9)  # outputs are 25-bit codes
    assert (expected - cold_base) > 5 * 1e-4 * cold_base  # five tolerances: a model without heating misses
    # microwatts for all lines at full range, nanowatts at these voltages
    full = c.bias_heating_W_per_V2 * 100.0 * (lab.truth.n_cells + lab.truth.n_couplers)
    assert 1e-7 < full < 1e-4 and power < 1e-7


def test_t_eff_depends_a_little_on_where_the_dacs_sit():
    lab = VirtualLab.from_description("seed=11,cells=16,drift=off")
    tau = lab.truth.cryostat.mc_tau_s(lab.truth.cryostat.mc_base_K)
    lab.sleep(10 * tau)
    at_zero = lab.t_eff()
    for i in range(16):
        lab.set_dac(1, i + 1, 1.0)
    lab.sleep(10 * tau + 10 * lab.truth.cryostat.chip_tau_s)
    at_one = lab.t_eff()
    assert 0 < at_one / at_zero - 1 < 0.02  # warmer, a little
