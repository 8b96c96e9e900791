"""Lock-in readout of the cells: AC excitation, room-temperature preamplifier, demodulation.

A lab without a fast sampler reads its cells with lock-in amplifiers. The
arrangement simulated here (and described in the README):

* each readout line is excited by the sine output of the lock-in that reads it
  (``SLVL``, V rms, at ``FREQ``); the cell modulates the line's transmission, so
  the cryogenic amplifier's output carries ``excitation * (offset_i + amp_i s_i)``
  at the reference frequency (the truth's readout levels are those at 1 V rms);
* a room-temperature low-noise preamplifier (:class:`PreampChannel`, one channel
  per lock-in) selects one of :data:`LINES_PER_CHANNEL` readout lines with its input
  relay, multiplies by its gain and filters with a single-pole low-pass, whose
  attenuation and phase lag at the reference frequency the readout calibration
  must take into account;
* the lock-in demodulates: ``X + iY = G H(f) e^{-i 2 pi f tau_line} e^{-i phase}
  * excitation * <level>`` averaged over its output filter's window, plus the
  preamplifier's input noise and the cryogenic amplifier's noise at ``f`` (white
  plus 1/f) in the filter's equivalent noise bandwidth. The amplifier's output
  offset drift and its 1/f noise below a hertz are at DC, which demodulation at a kHz
  rejects (:meth:`labstack.sim.readout.ReadoutChain.carrier`); readout crosstalk and
  gain drift multiply the carrier and stay.

Cell ``c`` is read by lock-in ``c // LINES_PER_CHANNEL + 1`` on input
``c % LINES_PER_CHANNEL + 1`` of preamp channel ``c // LINES_PER_CHANNEL + 1``.

Averaging. The output filter (time constant tau, slope 6..24 dB/oct) averages over
``T_w = 1 / (2 ENBW)``; the cells are sampled :func:`draws` times in that window
(at most :data:`MAX_DRAWS`, spaced far beyond the cells' correlation times, so
each is an independent state) and the reading is their mean. A real lock-in
averages ``T_w / tau_c`` ~ 10^5 flips and is quieter; the twin's flip noise is
that of ``MAX_DRAWS`` states, which routines measure, not assume. All lock-ins of
a lab share one window: read at the same station-clock instant, they see the same
stretch of the cells' history, as lock-ins running side by side do. Reading a
window takes ``T_w`` of station time; a second query at the same instant (``Y``
after ``X``, another lock-in) answers from the same window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from labstack.sim.lab import VirtualLab

LINES_PER_CHANNEL = 4
MAX_DRAWS = 2000
#: shortest spacing of the draws in a window (s): far beyond any cell's correlation time
MIN_DRAW_PERIOD_S = 2e-3
#: preamplifier input voltage noise (V/sqrt(Hz)), a typical low-noise bipolar front end
PREAMP_NOISE_V_PER_RTHZ = 4e-9
#: preamplifier output swing before it clips (V)
PREAMP_MAX_OUTPUT_V = 10.0
#: cable and cryogenic-amplifier delay of a readout line (s): a phase that grows with frequency
LINE_DELAY_S = 0.4e-6
#: equivalent noise bandwidth x time constant by filter slope (dB/oct), SR86x manual
ENBW_TIMES_TAU = {6: 1 / 4, 12: 1 / 8, 18: 3 / 32, 24: 5 / 64}


@dataclass
class PreampChannel:
    """One preamplifier channel: input relay, gain, low-pass cutoff (``inf``: no filter)."""

    input: int = 1
    gain: float = 1.0
    lowpass_Hz: float = math.inf
    coupling: str = "AC"
    #: the output clipped since the preamp was last asked (``CHANnel<n>:OVERload?``)
    overloaded: bool = False

    def response(self, frequency_Hz: float) -> complex:
        """Complex gain at ``frequency_Hz``: ``G / (1 + i f / f_c)``."""
        if not math.isfinite(self.lowpass_Hz):
            return complex(self.gain)
        return self.gain / (1 + 1j * frequency_Hz / self.lowpass_Hz)


def enbw_Hz(time_constant_s: float, slope_dB: int) -> float:
    return ENBW_TIMES_TAU[slope_dB] / time_constant_s


def draws(window_s: float) -> int:
    """How many independent cell states the twin averages in a window of ``window_s``."""
    return int(np.clip(window_s / MIN_DRAW_PERIOD_S, 16, MAX_DRAWS))


class LockinFrontEnd:
    """The lab's lock-in readout chain: preamp channels and the shared averaging window."""

    def __init__(self, lab: VirtualLab, n_channels: int) -> None:
        self.lab = lab
        self.channels = {k: PreampChannel() for k in range(1, n_channels + 1)}
        # (t_end, length, bias and coupler voltages it saw, mean level per line)
        self._window: tuple[float, float, np.ndarray, np.ndarray] | None = None

    def cell_of(self, channel: int) -> int | None:
        """The cell whose line preamp ``channel`` now selects (None: no cell on that input)."""
        cell = (channel - 1) * LINES_PER_CHANNEL + self.channels[channel].input - 1
        return cell if cell < self.lab.truth.n_cells else None

    def mean_levels(self, window_s: float) -> np.ndarray:
        """Every line's mean readout level over the window ending now (shared by all lock-ins)."""
        now = self.lab.clock.now()
        lines = np.concatenate([self.lab.bias_V, self.lab.coupler_V])
        w = self._window
        if w is not None and w[0] == now and w[1] == window_s and np.array_equal(w[2], lines):
            return w[3]
        n = draws(window_s)
        volts = self.lab.acquire(n, window_s / n, carrier=True)
        levels = volts.mean(axis=0)
        self._window = (self.lab.clock.now(), window_s, lines, levels)
        return levels

    def demodulate(
        self,
        channel: int,
        excitation_V: float,
        frequency_Hz: float,
        phase_deg: float,
        time_constant_s: float,
        slope_dB: int,
    ) -> tuple[complex, bool]:
        """``X + iY`` at the lock-in input (V rms) and whether the preamp output clipped."""
        preamp = self.channels[channel]
        cell = self.cell_of(channel)
        enbw = enbw_Hz(time_constant_s, slope_dB)
        window = 1.0 / (2.0 * enbw)
        level = 0.0 if cell is None else float(self.mean_levels(window)[cell])
        line = complex(np.exp(-2j * np.pi * frequency_Hz * LINE_DELAY_S))
        signal = excitation_V * level * preamp.response(frequency_Hz) * line
        clipped = abs(signal) * math.sqrt(2) > PREAMP_MAX_OUTPUT_V
        if clipped:
            preamp.overloaded = True
            signal *= PREAMP_MAX_OUTPUT_V / (abs(signal) * math.sqrt(2))
        rng = self.lab.instrument_rng
        # the preamp's input noise and the cryogenic amplifier's noise at the reference
        density = math.hypot(PREAMP_NOISE_V_PER_RTHZ, self.lab.readout.noise_density_at(frequency_Hz))
        noise_rms = density * abs(preamp.response(frequency_Hz)) * math.sqrt(enbw)
        noise = complex(*(rng.normal(0.0, noise_rms, 2)))
        demodulated = (signal + noise) * complex(np.exp(-1j * np.deg2rad(phase_deg)))
        return demodulated, clipped
