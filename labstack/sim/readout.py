"""Readout chain: cell states to amplifier-output voltages.

Each cell's signal is ``offset_i + amp_i * s_i`` at the amplifier output, passed
through a first-order low-pass of time constant ``tau = 1 / (2 pi bandwidth)``,
plus amplifier noise, plus a slow random-walk drift of the offsets. Dead cells
carry no signal, only noise. Pure numpy, no instruments.

Noise: the amplifier's noise in its bandwidth has rms ``Amplifier.noise_rms_V``
(from its noise temperature). Band-limited by the first-order low-pass, it is an
Ornstein-Uhlenbeck process of that rms and correlation time ``tau``; sampled every
``period`` it is exactly ``n_k = a n_(k-1) + sqrt(1 - a^2) sigma xi_k`` with
``a = exp(-period / tau)``. So the rms a calibration measures is ``sigma`` at any
sample rate, and successive samples are correlated when ``period`` is not >> tau.
The signal is held constant between samples (the cell state is sampled once per
period), so the filtered signal is exactly ``y_k = a y_(k-1) + (1 - a) x_k``; before
the first sample of an acquisition the filter has settled on the first state.

A realistic chain (``realistic=True``) adds what a cryogenic amplifier does:

* **gain.** ``amp_i`` is given at the nominal gain 1e4; the output signal is
  ``amp_i * gain / 1e4`` and the gain random-walks multiplicatively,
  ``G -> G exp(g sqrt(dt) xi)`` (``gain_drift_per_sqrt_s``), scaling signal and noise;
* **1/f noise** per channel, ``S(f) = S_w f_c / f`` with ``S_w = 2 sigma^2 / (pi B)``
  the white level and ``f_c`` the corner (:mod:`labstack.sim.flicker`);
* **crosstalk.** A fraction ``c_(i,i+1)`` of each channel's signal leaks into its
  neighbours' (``readout_crosstalk``), before the low-pass;

which makes each cell's assignment fidelity a calibrated quantity rather than 1.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from labstack.sim.flicker import Flicker
from labstack.sim.truth import NOMINAL_GAIN, Amplifier, Cells


class ReadoutChain:
    """Amplifier chain shared by all cells (one channel per cell, FPGA-style)."""

    def __init__(
        self,
        cells: Cells,
        amplifier: Amplifier,
        rng: np.random.Generator,
        *,
        realistic: bool = False,
        crosstalk: np.ndarray | None = None,
    ) -> None:
        self.amp = np.where(cells.dead, 0.0, cells.readout_amp_V)
        self.offset = np.asarray(cells.readout_offset_V, dtype=float)
        self.amplifier = amplifier
        self.rng = rng
        self.drift = np.zeros_like(self.offset)
        self.realistic = realistic
        self.gain_factor = 1.0  # the gain's drift, relative to its value at lab time 0
        self._flicker_pending = 0.0  # lab time the 1/f state has yet to be advanced by
        self.crosstalk = np.zeros(max(self.amp.size - 1, 0))
        self.flicker: Flicker | None = None
        if realistic:
            self.amp = self.amp * (amplifier.gain / NOMINAL_GAIN)
            if crosstalk is not None and np.size(crosstalk):
                self.crosstalk = np.asarray(crosstalk, dtype=float)
            if amplifier.flicker_corner_Hz > 0:
                white = 2 * amplifier.noise_rms_V**2 / (np.pi * amplifier.bandwidth_Hz)
                top = min(amplifier.bandwidth_Hz, 10 * amplifier.flicker_corner_Hz)
                self.flicker = Flicker(self.amp.size, white * amplifier.flicker_corner_Hz, 1e-4, top, rng)

    def advance(self, duration: float, *, flicker: bool = True) -> None:
        """Let the offsets (and, if realistic, the gain and 1/f noise) drift for ``duration`` s."""
        if duration > 0 and self.amplifier.drift_V_per_sqrt_s > 0:
            step = self.amplifier.drift_V_per_sqrt_s * np.sqrt(duration)
            self.drift += self.rng.normal(0.0, step, self.drift.shape)
        if duration > 0 and self.realistic:
            g = self.amplifier.gain_drift_per_sqrt_s
            if g > 0:
                self.gain_factor *= float(np.exp(g * np.sqrt(duration) * self.rng.standard_normal()))
            if flicker and self.flicker is not None:
                self._flicker_pending += duration  # exact: OU steps compose (applied when read)

    def levels(self) -> tuple[np.ndarray, np.ndarray]:
        """(amplitude, offset) each channel reads now: what a readout calibration should find."""
        return self.amp * self.gain_factor, self.offset + self.drift

    def voltages(self, spins: np.ndarray, period: float) -> np.ndarray:
        """Voltages (n_samples, n_cells) float32 for sampled ``spins`` taken every ``period`` s."""
        signal = self.amp * spins.astype(np.float64)
        if self.realistic and self.crosstalk.size and np.any(self.crosstalk):
            leak = np.zeros_like(signal)
            leak[:, 1:] += self.crosstalk * signal[:, :-1]
            leak[:, :-1] += self.crosstalk * signal[:, 1:]
            signal = signal + leak
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
        if not self.realistic:
            out = self.offset + self.drift + signal + white
            return out.astype(np.float32)
        noise = white
        if self.flicker is not None:
            self.flicker.advance(self._flicker_pending)
            self._flicker_pending = 0.0
            noise = noise + self.flicker.series(len(signal), period)
        out = self.offset + self.drift + self.gain_factor * (signal + noise)
        return out.astype(np.float32)
