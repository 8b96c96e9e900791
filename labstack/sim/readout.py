"""Readout chain: cell states to amplifier-output voltages.

Each cell's signal is ``offset_i + amp_i * s_i`` at the amplifier output (the gain
is in ``amp_i``), passed through a first-order low-pass of time constant
``tau = 1 / (2 pi bandwidth)``, plus amplifier noise, plus a slow random-walk drift
of the offsets. Dead cells carry no signal, only noise. Pure numpy, no instruments.

Noise: the amplifier's noise in its bandwidth has rms ``Amplifier.noise_rms_V``
(from its noise temperature). Band-limited by the first-order low-pass, it is an
Ornstein-Uhlenbeck process of that rms and correlation time ``tau``; sampled every
``period`` it is exactly ``n_k = a n_(k-1) + sqrt(1 - a^2) sigma xi_k`` with
``a = exp(-period / tau)``. So the rms a calibration measures is ``sigma`` at any
sample rate, and successive samples are correlated when ``period`` is not >> tau.
The signal is held constant between samples (the cell state is sampled once per
period), so the filtered signal is exactly ``y_k = a y_(k-1) + (1 - a) x_k``; before
the first sample of an acquisition the filter has settled on the first state.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from labstack.sim.truth import Amplifier, Cells


class ReadoutChain:
    """Amplifier chain shared by all cells (one channel per cell, FPGA-style)."""

    def __init__(self, cells: Cells, amplifier: Amplifier, rng: np.random.Generator) -> None:
        self.amp = np.where(cells.dead, 0.0, cells.readout_amp_V)
        self.offset = np.asarray(cells.readout_offset_V, dtype=float)
        self.amplifier = amplifier
        self.rng = rng
        self.drift = np.zeros_like(self.offset)

    def advance(self, duration: float) -> None:
        """Let the offsets drift for ``duration`` seconds (random walk)."""
        if duration > 0 and self.amplifier.drift_V_per_sqrt_s > 0:
            step = self.amplifier.drift_V_per_sqrt_s * np.sqrt(duration)
            self.drift += self.rng.normal(0.0, step, self.drift.shape)

    def voltages(self, spins: np.ndarray, period: float) -> np.ndarray:
        """Voltages (n_samples, n_cells) float32 for sampled ``spins`` taken every ``period`` s."""
        signal = self.amp * spins.astype(np.float64)
        sigma = self.amplifier.noise_rms_V
        white = self.rng.normal(0.0, sigma, spins.shape)
        tau = self.amplifier.lowpass_tau_s
        a = float(np.exp(-period / tau)) if tau > 0 else 0.0
        if a > 1e-12 and len(signal) > 1:
            signal = lfilter([1.0 - a], [1.0, -a], signal, axis=0, zi=a * signal[:1])[0]
            # exact OU noise: stationary first sample, then AR(1) with innovations sqrt(1 - a^2)
            innovations = white * np.sqrt(1.0 - a * a)
            innovations[0] = white[0]
            white = lfilter([1.0], [1.0, -a], innovations, axis=0, zi=a * np.zeros_like(white[:1]))[0]
        out = self.offset + self.drift + signal + white
        return out.astype(np.float32)
