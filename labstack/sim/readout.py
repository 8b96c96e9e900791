"""Readout chain: cell states to amplifier-output voltages.

Each cell's signal is ``offset_i + amp_i * s_i`` at the amplifier output, plus
white amplifier noise whose rms follows from its noise temperature and bandwidth
(``Amplifier.noise_rms_V``), a first-order low-pass of time constant
``1 / (2 pi bandwidth)`` and a slow random-walk drift of the offsets. Dead cells
carry no signal, only noise. Pure numpy, no instruments.
"""

from __future__ import annotations

import numpy as np

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
        signal = self.offset + self.drift + self.amp * spins.astype(np.float64)
        noise = self.rng.normal(0.0, self.amplifier.noise_rms_V, spins.shape)
        out = signal + noise
        tau = self.amplifier.lowpass_tau_s
        if tau > 0 and period < 20 * tau and len(out) > 1:
            # first-order IIR low-pass sampled at `period`: y_k = a y_{k-1} + (1 - a) x_k
            a = np.exp(-period / tau)
            for k in range(1, len(out)):
                out[k] = a * out[k - 1] + (1 - a) * out[k]
        return out.astype(np.float32)
