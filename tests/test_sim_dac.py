"""DAC outputs like a QDAC-II's: quantised, slewed, filtered (its filter, then the line's), noisy.

Quantisation and microvolt noise are far below an S-curve's ~50 mV width, so they are
tested on the delivered voltage itself: its steps and its spectrum. The filters and the
slew are tested against an independent integration of the two-pole circuit, with the
settings made through the unmodified QDAC-II driver; a wrong model (one pole, no slew)
is shown to miss. Settling is what calibrations feel: a sweep that samples too soon
shows hysteresis between up and down, of the size the delivered voltage predicts.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.signal import welch

from labstack.sim.dac import FILTER_TAU_S, DacLines, lsb, quantise
from labstack.sim.lab import VirtualLab


def _two_pole(t1: float, t2: float, u, t_end: float, times: np.ndarray, y0=(0.0, 0.0)) -> np.ndarray:
    """Independent reference: integrate dx1 = (u - x1)/t1, dx2 = (x1 - x2)/t2."""
    sol = solve_ivp(lambda t, y: [(u(t) - y[0]) / t1, (y[0] - y[1]) / t2], (0.0, t_end), list(y0),
                    rtol=1e-10, atol=1e-14, dense_output=True, max_step=min(t1, t2) / 2)
    return sol.sol(times)[1]


def test_outputs_step_in_units_of_the_25_bit_lsb():
    lines = DacLines(np.array([0.0]), bits=25, white_V_per_rtHz=0.0, flicker_corner_Hz=0.0, rng=np.random.default_rng(0))
    step = lsb(25)
    assert step == pytest.approx(20.0 / 2**25) and step == pytest.approx(0.596e-6, rel=1e-3)
    outputs = []
    for v in step * (167_772.0 + np.array([0.0, 0.3, 0.49, 0.51, 1.0, 2.7])):  # ~0.1 V, from a code
        lines.command(0, float(v), 0.0, slew_V_per_s=2e7, filter_tau_s=FILTER_TAU_S["high"])
        outputs.append(lines.output(1.0)[0])
    codes = np.array(outputs) / step
    np.testing.assert_allclose(codes, np.round(codes), atol=1e-6)  # every output is a code
    assert np.diff(np.round(codes)).tolist() == [0, 0, 1, 0, 2]  # the commanded steps, rounded
    assert outputs[1] == outputs[0] != step * 167_772.3  # an unquantised DAC would have moved


@pytest.mark.parametrize("filter_name", ["dc", "med"])
def test_a_step_settles_through_the_filter_the_driver_selects_and_the_line(virtual_station, filter_name):
    station, lab = virtual_station(seed=7, cells=4)
    channel = station.qdac1.ch02
    channel.output_filter(filter_name)
    line_tau = float(lab.truth.dac.bias_line_tau_s[1])
    t0 = lab.clock.now()
    channel.dc_constant_V(0.05)  # one step (the ramp's maximum), no ramp
    t1 = FILTER_TAU_S[filter_name]
    times = np.linspace(0.0, 8 * max(t1, line_tau), 40)
    target = quantise(0.05, 25)
    # the default slew (2e7 V/s) makes the step a 2.5 ns ramp: a step at its middle
    half = 0.5 * target / 2e7
    expected = _two_pole(t1, line_tau, lambda _t: target, times[-1] + half, np.maximum(times - half, 0.0))
    got = lab.dacs.deviation(t0 + times)[:, 1] + lab.dacs.target[1]
    np.testing.assert_allclose(got, expected, atol=1e-9)
    one_pole = target * (1 - np.exp(-times / line_tau))  # the line alone: the filter setting would not matter
    assert np.max(np.abs(got - one_pole)) > 1e-3 * target


def test_the_slew_rate_the_driver_sets_ramps_the_output():
    lab = VirtualLab.from_description("seed=7,cells=4")
    line_tau = float(lab.truth.dac.bias_line_tau_s[0])
    lab.set_dac(1, 1, 0.5, slew_V_per_s=1.0, filter_name="dc")  # a 0.5 s ramp
    times = np.linspace(0.0, 1.0, 60)
    target = quantise(0.5, 25)
    expected = _two_pole(FILTER_TAU_S["dc"], line_tau, lambda t: min(t, target), 1.0, times)
    got = lab.dacs.deviation(times)[:, 0] + target
    np.testing.assert_allclose(got, expected, atol=1e-8)
    assert abs(got[15] - target) > 0.2  # a step would have arrived long before


def test_output_noise_has_the_white_and_1_over_f_spectrum_of_the_model():
    lab = VirtualLab.from_description("seed=7,cells=4")
    dacs = lab.dacs
    tau = FILTER_TAU_S["dc"]
    period = tau / 20
    series = dacs.output_noise_series(2**19, period, tau, np.random.default_rng(1))
    f, psd = welch(series, fs=1 / period, nperseg=2**15)
    band = (f > 4 / (2**15 * period)) & (f < 0.3 / period)
    expected = dacs.output_psd(f[band], period, tau)
    ratio = psd[band] / expected
    assert np.median(ratio) == pytest.approx(1.0, abs=0.05)
    assert np.all(np.abs(np.log(ratio)) < 1.0)  # Welch estimates of 31 overlapping segments: ~25 % each
    white_only = dacs.white**2 / (4 * tau) * 2 * period  # the white level at low frequency, no 1/f
    low = band & (f < dacs.flicker_corner / 3)
    assert np.median(psd[low]) > 3 * white_only  # the 1/f part is there, and a white model misses it
    slope = np.polyfit(np.log(f[low]), np.log(psd[low] - white_only), 1)[0]
    assert slope == pytest.approx(-1.0, abs=0.25)
    # with the fast filter the output noise is microvolts, as a QDAC-II's: its white part
    fast = FILTER_TAU_S["high"]
    rms = float(np.std(dacs.output_noise_series(2**16, fast / 5, fast, np.random.default_rng(2))))
    assert rms == pytest.approx(dacs.white / np.sqrt(4 * fast), rel=0.05)
    assert 1e-6 < rms < 30e-6


def _sweep(lab: VirtualLab, cell: int, volts: np.ndarray, settle: float, n: int, period: float):
    """Readings ``(point, sample)`` of one cell, and its expected P(+1) at each point: the
    logistic of the delivered voltage at each sample's instant (the cells follow it within
    microseconds), from the DAC model the tests above check against an integration."""
    v0, width = lab.truth.cells.v0_V[cell], lab.truth.scurve_width_V()[cell]
    readings, expected = [], []
    for v in volts:
        lab.set_dac(1, cell + 1, float(v))
        if settle:
            lab.sleep(settle)
        times = lab.clock.now() + period * (np.arange(n) + 1)
        delivered = lab.dacs.deviation(times)[:, cell] + lab.dacs.target[cell]
        expected.append(float(np.mean(1 / (1 + np.exp(-(delivered - v0) / width)))))
        readings.append(lab.acquire(n, period)[:, cell])
    return np.array(readings), np.array(expected)


def _centre(volts: np.ndarray, p: np.ndarray) -> float:
    from scipy.optimize import curve_fit

    popt, _ = curve_fit(lambda v, c, w: 1 / (1 + np.exp(-(v - c) / w)), volts, p, p0=[volts.mean(), np.ptp(volts) / 10])
    return float(popt[0])


@pytest.mark.parametrize("settle_taus,expect_hysteresis", [(0.0, True), (12.0, False)])
def test_too_short_a_settle_shows_hysteresis_between_up_and_down_sweeps(settle_taus, expect_hysteresis):
    from labstack.fit import fit_scurve

    lab = VirtualLab.from_description("seed=7,cells=4,drift=off")
    cell = 0
    line_tau = float(lab.truth.dac.bias_line_tau_s[cell])
    width = float(lab.truth.scurve_width_V()[cell])
    volts = lab.truth.cells.v0_V[cell] + width * np.linspace(-4, 4, 33)
    found, predicted = {}, {}
    for name, order in (("up", volts), ("down", volts[::-1])):
        lab.set_dac(1, cell + 1, float(order[0]))
        lab.sleep(1.0)
        readings, expected = _sweep(lab, cell, order, settle_taus * line_tau, 400, 5e-6)
        idx = np.argsort(order)
        result = fit_scurve(order[idx], readings[idx])
        assert result.ok, result.fit.message
        found[name] = (result.fit["v0_V"], result.fit.error("v0_V"))
        predicted[name] = _centre(order[idx], expected[idx])
    hysteresis = found["up"][0] - found["down"][0]
    err = float(np.hypot(found["up"][1], found["down"][1]))
    expected = predicted["up"] - predicted["down"]
    # the measured hysteresis is the one the delivered voltages predict, within its error
    assert abs(hysteresis - expected) < 3 * err, (hysteresis, expected, err)
    if expect_hysteresis:  # an up-sweep lags below its commands: its V0 reads high
        assert expected > 0.1 * width and hysteresis > 5 * err, (hysteresis, err)
    else:
        assert abs(expected) < 1e-3 * width and abs(hysteresis) < 3 * err, (hysteresis, err)
