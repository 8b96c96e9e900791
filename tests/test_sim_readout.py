"""Readout chain: noise rms from the amplifier at any sample rate, low-pass, drift, dead cells."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import ndtr

from labstack.sim.readout import ReadoutChain
from labstack.sim.truth import Amplifier, GroundTruth


def chain(seed: int = 0, **amplifier: float) -> tuple[ReadoutChain, GroundTruth]:
    truth = GroundTruth.from_seed(seed, 8, "chain", dead_fraction=0.25)
    return ReadoutChain(truth.cells, Amplifier(**amplifier), np.random.default_rng(seed)), truth


@pytest.mark.parametrize("rate_hz", [50e3, 10e6])
def test_noise_rms_and_correlation_follow_the_amplifier(rate_hz: float) -> None:
    readout, truth = chain()
    period = 1.0 / rate_hz
    spins = np.ones((40_000, 8), np.int8)
    v = readout.voltages(spins, period).astype(float)
    noise = v - v.mean(axis=0)
    sigma = readout.amplifier.noise_rms_V
    assert noise.std(axis=0) == pytest.approx(np.full(8, sigma), rel=0.03)
    lag1 = np.mean(noise[1:] * noise[:-1]) / noise.var()
    expected = np.exp(-period / readout.amplifier.lowpass_tau_s)
    assert lag1 == pytest.approx(expected, abs=0.02)


def test_signal_low_pass_step_response_and_dead_cells() -> None:
    readout, truth = chain(1, noise_temperature_K=0.0)  # noiseless: see the filter alone
    period = readout.amplifier.lowpass_tau_s / 4
    spins = np.ones((40, 8), np.int8)
    spins[10:] = -1
    v = readout.voltages(spins, period).astype(float) - readout.offset
    amp = np.where(truth.cells.dead, 0.0, truth.cells.readout_amp_V)
    k = np.arange(30)
    expected = -amp + 2 * amp * np.exp(-(k[:, None] + 1) * period / readout.amplifier.lowpass_tau_s)
    assert np.allclose(v[:10], amp, rtol=1e-6, atol=1e-9)  # settled on the first state
    assert np.allclose(v[10:], expected, rtol=1e-5, atol=1e-8)
    assert np.all(np.abs(v[:, truth.cells.dead]) < 1e-9)  # float32 rounding of the offset


def test_offset_drift_is_a_random_walk_of_the_given_rate() -> None:
    readout, truth = chain(2)
    walks = []
    for _ in range(400):
        readout.drift[:] = 0
        readout.advance(100.0)
        walks.append(readout.drift.copy())
    expected = readout.amplifier.drift_V_per_sqrt_s * np.sqrt(100.0)
    assert np.std(walks) == pytest.approx(expected, rel=0.05)


# ------------------------------------------------------------ a realistic chain
def realistic_chain(seed: int = 3, n: int = 8) -> tuple[ReadoutChain, GroundTruth]:
    """The realistic readout chain of an ``n``-cell chip of ``seed``."""
    truth = GroundTruth.from_seed(seed, n, "chain")
    chain_ = ReadoutChain(truth.cells, truth.amplifier, np.random.default_rng(seed), realistic=True,
                          crosstalk=truth.readout_crosstalk)
    return chain_, truth


def test_amplifier_noise_has_its_white_plus_1_over_f_spectrum():
    from scipy.signal import welch

    readout, truth = realistic_chain(n=2)
    # sampled fast, so that the white noise (aliased into 0 .. 1/(2 period)) leaves the 1/f visible
    period, n, segment = 1e-6, 2**21, 2**18
    v = readout.voltages(np.ones((n, 2), np.int8), period).astype(float)[:, 0]
    f, psd = welch(v - v.mean(), fs=1 / period, nperseg=segment)
    band = (f > 4 / (segment * period)) & (f < 0.2 / period)
    a = np.exp(-period / truth.amplifier.lowpass_tau_s)
    sigma = truth.amplifier.noise_rms_V
    white = 2 * period * sigma**2 * (1 - a * a) / np.abs(1 - a * np.exp(-2j * np.pi * f[band] * period)) ** 2
    expected = white + readout.flicker.sampled_psd(f[band], period)
    ratio = psd[band] / expected
    assert np.median(ratio) == pytest.approx(1.0, abs=0.05)
    # in every one of 24 log-spaced stretches of the band, the spectrum is the model's
    edges = np.geomspace(f[band][0], f[band][-1] * 1.0001, 25)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (f[band] >= lo) & (f[band] < hi)
        if inside.sum() >= 4:
            assert np.mean(ratio[inside]) == pytest.approx(1.0, abs=4 * 0.35 / np.sqrt(inside.sum()) + 0.02)
    flicker = readout.flicker.sampled_psd(f[band], period)
    low = flicker > 3 * white  # where the model says 1/f dominates the (aliased) white floor
    assert low.sum() >= 5
    assert np.median(psd[band][low] / white[low]) > 2  # the 1/f part: a white model misses it
    slope = np.polyfit(np.log(f[band][low]), np.log(psd[band][low] - white[low]), 1)[0]
    assert slope == pytest.approx(-1.0, abs=0.25)


def test_a_channel_carries_a_fraction_of_its_neighbours_signal():
    readout, truth = realistic_chain()
    readout.amplifier.noise_temperature_K = 0.0  # see the signals alone
    readout.flicker = None
    spins = np.ones((2, 8), np.int8)
    spins[1, 4] = -1  # cell 4 flips: channels 3 and 5 move by their leak of its signal
    v = readout.voltages(spins, 1.0).astype(float)  # slow samples: the low-pass has settled
    delta = v[1] - v[0]
    amp = truth.readout_amp_out_V()
    c = truth.readout_crosstalk
    np.testing.assert_allclose(delta[[3, 5]], [-2 * c[3] * amp[4], -2 * c[4] * amp[4]], rtol=1e-5)
    assert delta[4] == pytest.approx(-2 * amp[4], rel=1e-5)
    np.testing.assert_allclose(delta[[0, 1, 2, 6, 7]], 0.0, atol=1e-9)
    assert np.all(np.abs(delta[[3, 5]]) > 1e-3 * amp[4])  # no crosstalk would leave them still


def test_gain_drifts_as_a_random_walk_of_its_rate():
    steps = []
    for k in range(300):
        readout, truth = realistic_chain(seed=3)
        readout.rng = np.random.default_rng(k)
        readout.advance(3600.0)
        steps.append(np.log(readout.gain_factor))
    assert np.std(steps) == pytest.approx(truth.amplifier.gain_drift_per_sqrt_s * 60.0, rel=0.15)


def test_the_fidelity_of_the_midpoint_is_the_gaussian_tail_of_the_level_separation():
    readout, truth = realistic_chain(seed=5)
    readout.flicker = None  # white noise and leaks: the closed form below is exact
    readout.crosstalk[:] = 0.0
    rng = np.random.default_rng(4)
    spins = rng.choice(np.array([-1, 1], np.int8), size=(200_000, 8))
    v = readout.voltages(spins, 1e-5).astype(float)
    amp, offset = readout.levels()
    right = (v > offset) == (spins > 0)
    fidelity = right.mean(axis=0)
    expected = ndtr(amp / truth.amplifier.noise_rms_V)
    tolerance = 4 * np.sqrt(expected * (1 - expected) / 2e5) + 1e-6
    assert np.all(np.abs(fidelity - expected) < tolerance), (fidelity, expected)
    assert fidelity.min() < 0.999  # a realistic readout misreads


def test_flicker_series_is_one_ar1_filter_per_component_bit_for_bit():
    """The compiled series is the per-component AR(1) recursion (lfilter) summed in
    component order, on the same normal draws: the same numbers to the last bit, and
    the state carried over between series (frozen slow components included)."""
    from scipy.signal import lfilter

    from labstack.sim.flicker import Flicker

    def reference(f: Flicker, n: int, period: float) -> np.ndarray:
        out = np.zeros((n, f.n_channels))
        duration = n * period
        for k, (g, v, a) in enumerate(zip(f.rates, f.variance, np.exp(-f.rates * period), strict=True)):
            if g * duration < 1e-3:
                out += f.state[k]
                continue
            xi = f.rng.standard_normal((n, f.n_channels)) * np.sqrt(v * (1 - a * a))
            x = lfilter([1.0], [1.0, -a], xi, axis=0, zi=a * f.state[k][None, :])[0]
            out += x
            f.state[k] = x[-1]
        frozen = f.rates * duration < 1e-3
        a = np.exp(-f.rates[frozen] * duration)[:, None]
        kick = np.sqrt(f.variance[frozen] * (1 - a[:, 0] ** 2))[:, None]
        f.state[frozen] = f.state[frozen] * a + kick * f.rng.standard_normal((int(frozen.sum()), f.n_channels))
        return out

    for channels, n, period in ((16, 3000, 1e-2), (3, 2000, 1e-5), (1, 7, 1e-6)):
        ours = Flicker(channels, 1e-12, 1e-4, 1e4, np.random.default_rng(5))
        ref = Flicker(channels, 1e-12, 1e-4, 1e4, np.random.default_rng(5))
        for _ in range(2):
            assert np.array_equal(ours.series(n, period), reference(ref, n, period))
            assert np.array_equal(ours.state, ref.state)
            ours.advance(0.3)
            ref.advance(0.3)
