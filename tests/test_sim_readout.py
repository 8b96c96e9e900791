"""Readout chain: noise rms from the amplifier at any sample rate, low-pass, drift, dead cells."""

from __future__ import annotations

import numpy as np
import pytest

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
