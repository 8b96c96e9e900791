"""A cell switching within a sample or two of the amplifier's memory: its correlation time from
the voltages (labstack.fit.telegraph.filtered_correlation_time) against the truth, the states'
estimate shown to fail there, and the thermalization fit dropping the points it cannot trust.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr
from scipy.signal import lfilter

from labstack.calibrations import thermalization
from labstack.fit.telegraph import filtered_correlation_time, switching_rates

MEMORY = 0.25  # the thermalization node's sampling rule: a = 1/4 of a reading left per sample
NOISE_V = 0.08  # amplifier rms against a 1 V step between the levels
SERIES, SAMPLES = 12, 20000


def voltages(tau_samples: float, p_up: float, seed: int) -> np.ndarray:
    """(SERIES, SAMPLES) readings of a sampled telegraph through the amplifier's low-pass and its
    band-limited noise, as the simulator's readout chain makes them."""
    rng = np.random.default_rng(seed)
    lam = math.exp(-1.0 / tau_samples)
    s = np.empty((SERIES, SAMPLES))
    s[:, 0] = rng.random(SERIES) < p_up
    u = rng.random((SERIES, SAMPLES))
    for t in range(1, SAMPLES):
        up = u[:, t] < lam * s[:, t - 1] + (1 - lam) * p_up  # P(up now | before), a Markov chain
        s[:, t] = up
    y = lfilter([1 - MEMORY], [1, -MEMORY], s, axis=1, zi=MEMORY * s[:, :1])[0]
    white = rng.normal(0.0, NOISE_V, s.shape) * math.sqrt(1 - MEMORY**2)
    noise = lfilter([1.0], [1, -MEMORY], white, axis=1)
    return y + noise


@pytest.mark.parametrize("tau", [1.2, 2.0, 5.0, 20.0])
def test_voltage_correlation_time_matches_the_truth(tau: float) -> None:
    est = filtered_correlation_time(voltages(tau, 0.3, seed=int(tau * 10)), MEMORY)
    assert np.all(np.isfinite(est))
    # each series: log error rms 0.2 where the cell's decay and the amplifier's overlap
    # (tau near a sample), 0.09 at 2-5 samples, 0.14 at 20 (fewer correlation times in the
    # series); bounds at about 3 rms
    spread = 0.6 if tau < 1.5 else 0.3 if tau < 10 else 0.45
    assert np.all(np.abs(np.log(est / tau)) < spread), est / tau
    assert abs(math.log(np.median(est) / tau)) < 0.1, np.median(est) / tau


def test_thresholded_states_make_a_fast_cell_look_slow_and_the_fit_drops_it() -> None:
    """At one sample per correlation time the states' estimate is far off (the wrong model);
    the voltages say so, and the thermalization fit refuses those points."""
    tau = 1.0
    v = voltages(tau, 0.3, seed=5)
    states = v > 0.5
    binary = [switching_rates(s, 1.0) for s in states]
    usable = [r.tau_c_s for r in binary if r.ok]
    assert usable and np.median(usable) > 1.3 * tau, usable  # thresholding merged short dwells
    assert np.all(filtered_correlation_time(v, MEMORY) < 2.0)
    # faster still, the cell's decay merges with the amplifier's (tau_a = 0.72 samples): the
    # estimate sticks near it, and still says "too fast"
    assert np.all(filtered_correlation_time(voltages(0.8, 0.3, seed=7), MEMORY) < 2.0)

    # the fit: five points per cell; the warm two marked fast by their voltages
    n_points, cells = 5, SERIES
    slow = voltages(8.0, 0.3, seed=6) > 0.5
    data = {
        "states": (("point", "cell", "sample"), np.stack([slow] * n_points).astype(np.uint8)),
        "T_chip": (("point",), np.array([0.02, 0.02, 0.02, 0.03, 0.04])),
        "bias_widths": (("point",), np.array([-1.0, 0.0, 1.0, 0.0, 0.0])),
        "measured": (("cell",), np.ones(cells, bool)),
        "voltage_tau_samples": (("point", "cell"), np.array([[8.0] * cells] * 3 + [[1.0] * cells] * 2)),
    }
    ds = xr.Dataset(data, attrs={"sample_period_s": 1e-6, "t_excess_K": 1e-9, "t_excess_err_K": 0.0,
                                 "t_eff_exponent": 2.0, "t_eff_exponent_err": 0.0})
    result = thermalization.fit(ds, thermalization.Parameters(calibration_rel_10mK=0.0))
    assert all(c.flag == "too_few_points" for c in result.cells), [c.flag for c in result.cells]
    assert "2 faster than 2 samples" in result.cells[0].fit.message
    assert np.all(np.isnan(result.cells[0].ln_r0[3:])) and np.all(np.isfinite(result.cells[0].ln_r0[:3]))
    # and the Arrhenius plot shows the refused points where the states put them, unfitted
    fig = thermalization.figures(result)[0]
    marked = [line for ax in fig.axes for line in ax.get_lines() if "too fast" in str(line.get_label())]
    assert marked and all(len(line.get_xdata()) == 2 for line in marked)
