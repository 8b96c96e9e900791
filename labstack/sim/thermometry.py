"""Resistance thermometers and a Lake Shore 372's scanner: what a reading really reports.

**A sensor** on a stage at temperature ``T`` reads

    T_read = T_s (1 + eps(T_s)) (1 + sigma xi),   T_s = (T^5 + T_sh^5)^(1/5)

* ``T_s``: the sensor's own temperature. Its excitation heats it, and below
  ~50 mK the electron-phonon coupling of a RuOx film, ``P = Sigma V (T_s^5 - T^5)``,
  is what carries the heat away, so it reads warm only at the lowest
  temperatures. ``T_sh`` (per sensor, per seed) is the temperature it would
  settle at on a stage at 0 K with the default excitation (range 7, 1 nA);
  ``P`` grows as the current squared, so ``T_sh`` scales as ``I^(2/5)``, and the
  driver's ``excitation_range_number`` (``INTYPE``) changes it: current range
  ``k`` is ``1 pA * 10^((k - 1) / 2)``.
* ``eps(T) = e10 sqrt(10 mK / T)``: the calibration curve's error, ``e10`` per
  sensor per seed (a few % at 10 mK, shrinking at higher temperatures, as
  calibration certificates state).
* ``sigma``: the bridge's relative reading noise, fresh at every query.

**The scanner** (one measurement input switched between 16 channels; ``SCAN``,
``INSET``'s enabled / dwell / pause). The channel being measured reads live once
its *pause* (3-200 s after switching to it) is over; every other channel reports
the reading it had when the scanner last left it (a held value: its temperature
then, not now), and a channel never measured reads 0 with the "invalid reading"
status. With autoscan on, the scanner moves to the next enabled channel after
pause + dwell. The instrument powers up scanning the mixing-chamber (6) and chip
(8) channels, dwell 10 s, pause 3 s.

Readings of earlier times come from the cryostat's recorded history
(:meth:`labstack.sim.cryostat.Cryostat.history_at`). Pure physics and timing: the
SCPI adapter is :mod:`labstack.sim.instruments.ls372`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from labstack.sim.truth import Sensor

DEFAULT_EXCITATION_RANGE = 7
REFERENCE_K = 0.010


def excitation_current_A(range_number: int) -> float:
    """Current of the 372's excitation range ``range_number`` (1 pA at range 1, half decades)."""
    return 1e-12 * 10 ** ((int(range_number) - 1) / 2)


def sensor_reading(
    sensor: Sensor, temperature_K: float, excitation_range: int, noise: float = 0.0
) -> float:
    """What ``sensor`` reads on a stage at ``temperature_K`` (``noise``: a standard normal draw)."""
    t = max(float(temperature_K), 0.0)
    scale = (excitation_current_A(excitation_range) / excitation_current_A(DEFAULT_EXCITATION_RANGE)) ** 0.4
    t_sh = sensor.self_heating_K * scale
    t_s = (t**5 + t_sh**5) ** 0.2
    if t_s <= 0:
        return 0.0
    eps = sensor.calibration_error_10mK * np.sqrt(REFERENCE_K / t_s)
    eps = float(np.clip(eps, -0.5, 0.5))
    return float(t_s * (1.0 + eps) * (1.0 + sensor.noise_rel * noise))


@dataclass
class _Held:
    time: float  # lab time the reading was taken
    value: float


class Scanner:
    """Which channel is measured when, and the reading each channel holds.

    Every method takes the lab time it acts at (the heater loop asks while the fridge
    is being integrated, ahead of the lab clock); times never go back.
    """

    def __init__(
        self,
        read: Callable[[int, float], float],
        enabled: dict[int, bool],
        pause_s: dict[int, float],
        dwell_s: dict[int, float],
        *,
        channel: int = 6,
        autoscan: bool = True,
    ) -> None:
        self.read = read  # (channel, lab time) -> a reading of that time
        self.enabled = dict(enabled)
        self.pause = dict(pause_s)
        self.dwell = dict(dwell_s)
        self.channel = channel
        self.autoscan = autoscan
        self.since = -1e9  # the power-up channel has long been measured
        self.held: dict[int, _Held] = {}

    # ----------------------------------------------------------- schedule
    def _next_enabled(self, after: int) -> int:
        order = sorted(self.enabled)
        start = order.index(after) if after in order else -1
        for k in range(1, len(order) + 1):
            ch = order[(start + k) % len(order)]
            if self.enabled[ch]:
                return ch
        return after

    def _leave(self, t: float) -> None:
        """The scanner leaves its channel at ``t``: the channel holds its reading of then."""
        if t >= self.since + self.pause[self.channel]:
            self.held[self.channel] = _Held(t, self.read(self.channel, t))

    def update(self, t: float) -> None:
        """Walk the autoscan schedule up to ``t``."""
        if not self.autoscan:
            return
        while True:
            end = max(self.since, 0.0) + self.pause[self.channel] + self.dwell[self.channel]
            nxt = self._next_enabled(self.channel)
            if t < end or nxt == self.channel:
                return
            self._leave(end)
            self.channel, self.since = nxt, end

    def select(self, channel: int, autoscan: bool, t: float) -> None:
        """``SCAN channel,autoscan``: measure ``channel`` from ``t`` (its pause starts again)."""
        self.update(t)
        if channel != self.channel:
            self._leave(t)
            self.channel, self.since = channel, t
        self.autoscan = autoscan

    def configure(self, channel: int, enabled: bool, pause_s: float, dwell_s: float, t: float) -> None:
        """``INSET``: a channel's scan settings; disabling the measured one moves the scanner on."""
        self.update(t)
        self.enabled[channel] = enabled
        self.pause[channel], self.dwell[channel] = pause_s, dwell_s
        if channel == self.channel and not enabled and any(self.enabled.values()):
            self._leave(t)
            self.channel, self.since = self._next_enabled(channel), t

    # ----------------------------------------------------------- readings
    def live(self, channel: int, t: float) -> bool:
        """Whether ``channel`` is being measured at ``t`` with its pause over."""
        self.update(t)
        return channel == self.channel and t >= self.since + self.pause[channel]

    def reading(self, channel: int, t: float) -> tuple[float, bool]:
        """(value, valid) that ``KRDG? channel`` reports at ``t``."""
        if self.live(channel, t):
            return self.read(channel, t), True
        held = self.held.get(channel)
        if held is None:
            return 0.0, False
        return held.value, True

    def age(self, channel: int, t: float) -> float | None:
        """How old the reported reading of ``channel`` is at ``t`` (0 while live; None if none)."""
        if self.live(channel, t):
            return 0.0
        held = self.held.get(channel)
        return None if held is None else t - held.time
