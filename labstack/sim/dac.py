"""DAC outputs as the chip sees them: quantised, slewed, filtered twice, with white and 1/f noise.

A QDAC-II channel commanded to ``V`` at time ``t0``:

1. **Quantisation.** The output is ``round(V / lsb) lsb``, ``lsb = 20 V / 2**bits``
   (25 bits: 0.596 uV), the QDAC-II's resolution over its +-10 V span.
2. **Slew.** The output ramps from where it is to the new value at the channel's
   programmed slew rate (``sour:volt:slew``, driver ``dc_slew_rate_V_per_s``; the
   instrument's default 2e7 V/s is a step in all but name).
3. **Output filter.** A first-order low-pass selected by ``sour:filt`` (driver
   ``output_filter``): ``dc`` 10 Hz, ``med`` 10 kHz, ``high`` 300 kHz (datasheet
   corners; :data:`FILTER_TAU_S`).
4. **Line filter.** The bias line's cryogenic RC / copper-powder filter, a second
   first-order pole of time constant ``line_tau`` (per line, per seed).

The ramp through the two poles has a closed form: a ramp of slope ``s`` from rest
gives ``s y(t)`` with ``y(t) = t - (t1 + t2) + (t1^2 e^{-t/t1} - t2^2 e^{-t/t2}) / (t1 - t2)``,
and a command is a ramp that starts at ``t0`` minus one that starts where it ends.
Responses add, so the output is the last commanded value plus the decaying
deviation of each command still settling (:meth:`DacLines.deviation`); a command
is forgotten once settled (below). A ramp shorter than 1e-3 of the
slower pole is a step at its middle (an error of order 1e-6 of the step), ``h(t) = (t1 e^{-t/t1} - t2 e^{-t/t2}) / (t1 - t2)``
of its size still to come, which avoids the cancellation of two nearly equal ramps.
A command during a ramp starts from where the ramp had got to; one is forgotten once
what is left of it is below 1e-12 V.

Noise at the chip (:meth:`DacLines.noise`): the QDAC's white density ``S_w``
(V/sqrt(Hz)) and a 1/f part with corner ``f_c`` (:mod:`labstack.sim.flicker`), both
through the line filter: the white part is an OU process of variance
``S_w^2 / (4 line_tau)``, the 1/f part keeps its components below the line's corner.
At the chip this is well under a microvolt, 1e-5 of an S-curve width, so the lab
adds its value at the start of each stretch of constant fields rather than per
sample. :meth:`DacLines.output_noise_series` gives the instrument-side noise
(before the line filter, after the QDAC filter) for spectrum tests.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import lfilter

from labstack.sim.flicker import Flicker

FULL_SCALE_V = 10.0
#: QDAC-II output filter time constants, 1 / (2 pi f_corner), by ``sour:filt`` setting
FILTER_TAU_S = {"dc": 1.0 / (2 * np.pi * 10.0), "med": 1.0 / (2 * np.pi * 10e3), "high": 1.0 / (2 * np.pi * 300e3)}
#: a command is forgotten once what is left of it is below this (V): far under the 0.6 uV step
FORGET_V = 1e-12
_TINY_TAU = 1e-15


_EVENT_KEYS = ("t0", "t1", "slope", "size", "tq", "tl", "mid", "short")


def lsb(bits: int) -> float:
    """The output step of a ``bits``-bit DAC over +-10 V."""
    return 2 * FULL_SCALE_V / 2**bits


def quantise(volts: float, bits: int) -> float:
    """The voltage a ``bits``-bit DAC really outputs for ``volts`` (0 bits: exact)."""
    if bits <= 0:
        return float(volts)
    step = lsb(bits)
    return float(np.round(volts / step) * step)


def ramp_response(t: np.ndarray, t1: np.ndarray, t2: np.ndarray) -> np.ndarray:
    """``y(t)``: output of the two poles for a unit-slope ramp that starts at 0 (0 before)."""
    t = np.maximum(t, 0.0)
    t1 = np.maximum(t1, _TINY_TAU)
    t2 = np.maximum(t2, _TINY_TAU)
    close = np.abs(t1 - t2) <= 1e-6 * np.maximum(t1, t2)
    diff = np.where(close, 1.0, t1 - t2)
    with np.errstate(over="ignore", under="ignore"):
        distinct = t - (t1 + t2) + (t1**2 * np.exp(-t / t1) - t2**2 * np.exp(-t / t2)) / diff
        same = t - 2 * t1 + (t + 2 * t1) * np.exp(-t / t1)
    return np.where(close, same, distinct)


def step_remainder(t: np.ndarray, t1: np.ndarray, t2: np.ndarray) -> np.ndarray:
    """``h(t)``: fraction of a step at 0 still to come at ``t`` (1 before it)."""
    tt = np.maximum(t, 0.0)
    t1 = np.maximum(t1, _TINY_TAU)
    t2 = np.maximum(t2, _TINY_TAU)
    close = np.abs(t1 - t2) <= 1e-6 * np.maximum(t1, t2)
    diff = np.where(close, 1.0, t1 - t2)
    with np.errstate(over="ignore", under="ignore"):
        distinct = (t1 * np.exp(-tt / t1) - t2 * np.exp(-tt / t2)) / diff
        same = (1 + tt / t1) * np.exp(-tt / t1)
    return np.where(t < 0, 1.0, np.where(close, same, distinct))


class DacLines:
    """Every wired line (bias lines, then couplers): commanded values and settling transients."""

    def __init__(
        self,
        line_tau_s: np.ndarray,
        *,
        bits: int,
        white_V_per_rtHz: float,
        flicker_corner_Hz: float,
        rng: np.random.Generator,
    ) -> None:
        self.line_tau = np.asarray(line_tau_s, dtype=float)
        n = self.line_tau.size
        self.bits = int(bits)
        self.target = np.zeros(n)  # last commanded (quantised) value
        self.ramp_from = np.zeros(n)  # where the current ramp started
        self.ramp_t0 = np.zeros(n)
        self.ramp_t1 = np.zeros(n)  # when it reaches the target
        self.rng = rng
        self.white = float(white_V_per_rtHz)
        self.flicker_corner = float(flicker_corner_Hz)
        # settling commands: line, start, end, slope (V/s), size, filter and line taus
        self._ev = {k: np.zeros(0) for k in _EVENT_KEYS}
        self._ev_line = np.zeros(0, dtype=np.int64)
        self._forget_at = np.zeros(0)
        self._queued: list[tuple[float, ...]] = []  # commands not yet in the arrays (_gather)
        self._noise_time = 0.0
        tau_min = float(self.line_tau[self.line_tau > 0].min()) if np.any(self.line_tau > 0) else 1e-3
        self._sd = self._white_sd()
        self._white_state = rng.standard_normal(n) * self._sd
        self.flicker = None
        if self.white > 0 and flicker_corner_Hz > 0:
            f_line = 1.0 / (2 * np.pi * tau_min)
            self.flicker = Flicker(n, self.white**2 * flicker_corner_Hz, 1e-4, max(f_line, 2e-4), rng)

    @property
    def n(self) -> int:
        return self.target.size

    def _white_sd(self) -> np.ndarray:
        """Rms of the line-filtered white noise, S_w / sqrt(4 tau) (0 on unfiltered lines)."""
        with np.errstate(divide="ignore"):
            return np.where(self.line_tau > 0, self.white / np.sqrt(4 * np.maximum(self.line_tau, 1e-30)), 0.0)

    # ------------------------------------------------------------- commands
    def position(self, line: int, t: float) -> float:
        """Where the slewing output (before the filters) is at ``t``."""
        if t >= self.ramp_t1[line]:
            return float(self.target[line])
        frac = (t - self.ramp_t0[line]) / (self.ramp_t1[line] - self.ramp_t0[line])
        return float(self.ramp_from[line] + frac * (self.target[line] - self.ramp_from[line]))

    def command(self, line: int, volts: float, t: float, *, slew_V_per_s: float, filter_tau_s: float) -> float:
        """Command ``line`` to ``volts`` at ``t``; returns the quantised target."""
        target = quantise(volts, self.bits)
        start = self.position(line, t)
        if t < self.ramp_t1[line]:  # cut the running ramp where it has got to
            self._gather()
            mine = np.flatnonzero((self._ev_line == line) & (self._ev["t1"] > t))
            for k in mine:
                self._ev["t1"][k] = t
                self._ev["size"][k] = self._ev["slope"][k] * (t - self._ev["t0"][k])
        size = target - start
        if size != 0.0:
            duration = abs(size) / slew_V_per_s
            slope = size / duration
            self._append(line, t, t + duration, slope, size, filter_tau_s, float(self.line_tau[line]))
            self.ramp_from[line], self.ramp_t0[line], self.ramp_t1[line] = start, t, t + duration
        self.target[line] = target
        return target

    def _append(self, line: int, t0: float, t1: float, slope: float, size: float, tq: float, tl: float) -> None:
        """Queue a settling command; :meth:`_gather` adds the queue to the event arrays.

        A 64-line row ramped in 0.05 V steps is thousands of commands between two reads
        of the outputs: appended one by one to nine arrays they cost more than the physics."""
        short = float((t1 - t0) < 1e-3 * max(tq, tl, _TINY_TAU))
        # what is left decays no slower than exp(-t / slowest pole) times (1 + t / tau) at worst
        slow = max(tq, tl, _TINY_TAU)
        forget = t1 + slow * (math.log(max(abs(size), FORGET_V) / FORGET_V) + 10.0)
        self._queued.append((t0, t1, slope, size, tq, tl, 0.5 * (t0 + t1), short, line, forget))

    def _gather(self) -> None:
        """Move queued commands into the event arrays (in order, after the earlier ones)."""
        if not self._queued:
            return
        columns = np.array(self._queued, dtype=float).T
        self._queued = []
        for key, column in zip(_EVENT_KEYS, columns, strict=False):
            self._ev[key] = np.concatenate([self._ev[key], column])
        self._ev_line = np.concatenate([self._ev_line, columns[len(_EVENT_KEYS)].astype(np.int64)])
        self._forget_at = np.concatenate([self._forget_at, columns[len(_EVENT_KEYS) + 1]])

    def _prune(self, t: float) -> None:
        """Forget events whose transients have decayed by ``t`` (the caller has gathered the queue)."""
        keep = self._forget_at > t
        if not keep.all():
            self._ev = {k: v[keep] for k, v in self._ev.items()}
            self._ev_line = self._ev_line[keep]
            self._forget_at = self._forget_at[keep]

    # --------------------------------------------------------------- outputs
    def deviation(self, times: np.ndarray | float) -> np.ndarray:
        """Output minus commanded value, ``(len(times), n)`` (or ``(n,)`` for a scalar time)."""
        scalar = np.ndim(times) == 0
        t = np.atleast_1d(np.asarray(times, dtype=float))
        self._gather()
        if not self._ev_line.size:
            return np.zeros(self.n) if scalar else np.zeros((t.size, self.n))
        self._prune(float(t.min()))
        e, line = self._ev, self._ev_line
        dev = np.zeros((t.size, line.size))
        step = e["short"] > 0
        if step.any():
            tq, tl = e["tq"][step], e["tl"][step]
            dev[:, step] = -e["size"][step] * step_remainder(t[:, None] - e["mid"][step], tq, tl)
        ramp = ~step
        if ramp.any():
            tq, tl = e["tq"][ramp], e["tl"][ramp]
            y0 = ramp_response(t[:, None] - e["t0"][ramp], tq, tl)
            y1 = ramp_response(t[:, None] - e["t1"][ramp], tq, tl)
            dev[:, ramp] = e["slope"][ramp] * (y0 - y1) - e["size"][ramp]
        # each line's events summed in event order, as np.bincount would per time, bit for bit;
        # a loop over the few events instead of over the (often thousands of) times
        out = np.zeros((t.size, self.n))
        for j in range(line.size):
            out[:, line[j]] += dev[:, j]
        return out[0] if scalar else out

    def output(self, t: float) -> np.ndarray:
        """Every line's voltage at the chip at ``t`` (noise not included)."""
        return self.target + self.deviation(t)

    def settling(self) -> bool:
        """Whether any command is still being tracked (possibly still settling)."""
        return bool(self._ev_line.size or self._queued)

    def noise(self, t: float) -> np.ndarray:
        """The noise at the chip at ``t`` (times must not go back)."""
        if self.white == 0:
            return np.zeros(self.n)
        dt = max(t - self._noise_time, 0.0)
        self._noise_time = max(t, self._noise_time)
        sd = self._sd
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.where(self.line_tau > 0, np.exp(-dt / np.maximum(self.line_tau, 1e-30)), 0.0)
        self._white_state = self._white_state * a + sd * np.sqrt(1 - a * a) * self.rng.standard_normal(self.n)
        value = self._white_state.copy()
        if self.flicker is not None:
            self.flicker.advance(dt)
            value += self.flicker.value()
        return value

    def output_noise_series(
        self, n: int, period: float, filter_tau_s: float, rng: np.random.Generator
    ) -> np.ndarray:
        """``n`` samples of one output's noise at the QDAC's terminals (after its filter, before
        the line filter), ``period`` apart: white (through the QDAC filter) plus 1/f.

        Independent of the lab's own noise state; for spectrum tests of the model.
        """
        a = float(np.exp(-period / filter_tau_s))
        sd = self.white / np.sqrt(4 * filter_tau_s)
        xi = rng.standard_normal(n) * sd * np.sqrt(1 - a * a)
        # an AR(1) from a stationary start: the exactly sampled OU of the filtered white noise
        x = lfilter([1.0], [1.0, -a], xi, zi=[a * rng.standard_normal() * sd])[0]
        if self.flicker_corner <= 0:
            return x
        return x + self._output_flicker(filter_tau_s, rng).series(n, period)[:, 0]

    def _output_flicker(self, filter_tau_s: float, rng: np.random.Generator) -> Flicker:
        """The 1/f part at the QDAC's terminals: up to its filter's corner."""
        return Flicker(1, self.white**2 * self.flicker_corner, 1e-2, 1.0 / (2 * np.pi * filter_tau_s), rng)

    def output_psd(self, f: np.ndarray, period: float, filter_tau_s: float) -> np.ndarray:
        """Closed-form spectrum of :meth:`output_noise_series` (one-sided, V^2/Hz, aliasing included)."""
        f = np.asarray(f, dtype=float)
        a = np.exp(-period / filter_tau_s)
        var = self.white**2 / (4 * filter_tau_s)
        w = 2 * np.pi * f
        white = 2 * period * var * (1 - a * a) / np.abs(1 - a * np.exp(-1j * w * period)) ** 2
        if self.flicker_corner <= 0:
            return white
        return white + self._output_flicker(filter_tau_s, np.random.default_rng(0)).sampled_psd(f, period)
