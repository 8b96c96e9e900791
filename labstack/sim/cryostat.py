"""Dilution refrigerator: lumped stages, mixing chamber with heater, chip on the mixing chamber.

Mixing chamber: ``C dT/dt = P - a T^2`` with ``P = P_heater + P_load`` (dilution
cooling power grows as T^2). For constant ``P`` this has a closed form
(:func:`mc_temperature`): with ``T_inf = sqrt(P / a)`` and ``k = a T_inf / C``,
``T(t) = T_inf tanh(k t + artanh(T0 / T_inf))`` when warming and ``coth`` in place of
``tanh`` when cooling. Near ``T_inf`` it is the exponential
``T_inf + (T0 - T_inf) exp(-t / tau)`` with ``tau = C / (2 a T_inf)``
(:meth:`CryostatTruth.mc_tau_s`), which is what a heater-step calibration measures.
So an open-loop heater step is integrated exactly in one step; a temperature
controller (PID, in the virtual Lake Shore 372) is sampled every
``CONTROL_PERIOD_S`` with its power held in between, as a real controller's output is.

The chip follows the mixing chamber as a first-order lag with its own time constant,
integrated in sub-steps of at most a tenth of it (exact for a mixing chamber that
is linear over the sub-step). Upper stages (50 K, 4 K, still, cold plate) are held at
their nominal temperatures by the pulse tube and still; their thermometers read them
with a little noise. Pure numpy, no instruments.

A realistic lab adds the power its bias lines dissipate (``bias_power_W``, set by the
lab from the DAC outputs, :attr:`CryostatTruth.bias_heating_W_per_V2`) to the load, and
records the temperatures after every control step (:meth:`Cryostat.history_at`), which
is what a scanned thermometer's held reading of an earlier time reports.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Callable

import numpy as np

from labstack.sim.truth import CryostatTruth

HeaterPower = Callable[[float, float], float]
"""Heater law: (time s, measured mixing-chamber temperature K) -> heater power W."""

CONTROL_PERIOD_S = 0.5
"""How often a temperature controller updates its heater output (Lake Shore: ~0.1-1 s)."""


def mc_temperature(
    t0: float, power_W: float, duration: float, cooling_W_per_K2: float, heat_capacity_J_per_K: float
) -> float:
    """Exact mixing-chamber temperature after ``duration`` s at constant total power."""
    if duration <= 0:
        return t0
    a, c = cooling_W_per_K2, heat_capacity_J_per_K
    if power_W <= 0:  # pure cooling: dT/dt = -a T^2 / C
        return t0 / (1.0 + a * t0 * duration / c)
    t_inf = np.sqrt(power_W / a)
    k = a * t_inf / c
    x = t0 / t_inf
    if x == 1.0:
        return t0
    if x < 1.0:
        return float(t_inf * np.tanh(k * duration + np.arctanh(x)))
    return float(t_inf / np.tanh(k * duration + np.arctanh(1.0 / x)))


class Cryostat:
    def __init__(self, truth: CryostatTruth, rng: np.random.Generator) -> None:
        self.truth = truth
        self.rng = rng
        self.t_mc = truth.mc_base_K
        self.t_chip = truth.mc_base_K
        self.heater_power_W = 0.0
        self.bias_power_W = 0.0
        self.controller: HeaterPower | None = None
        self._history: tuple[array, array, array] | None = None

    def record_history(self, now: float = 0.0) -> None:
        """Keep (time, T_mc, T_chip) after every control step from now on."""
        self._history = (array("d", [now]), array("d", [self.t_mc]), array("d", [self.t_chip]))

    def history_at(self, t: float) -> tuple[float, float]:
        """(T_mc, T_chip) at lab time ``t`` from the history (linear between control steps)."""
        if self._history is None:
            return self.t_mc, self.t_chip
        times, mc, chip = self._history
        k = bisect.bisect_right(times, t)
        if k == 0:
            return mc[0], chip[0]
        if k >= len(times):
            return mc[-1], chip[-1]
        w = (t - times[k - 1]) / (times[k] - times[k - 1])
        return mc[k - 1] + w * (mc[k] - mc[k - 1]), chip[k - 1] + w * (chip[k] - chip[k - 1])

    def stage_temperature(self, stage: str) -> float:
        if stage == "mixing_chamber":
            return self.t_mc
        if stage == "chip":
            return self.t_chip
        return self.truth.stage_temperatures_K[stage]

    def thermometer(self, stage: str, relative_noise: float = 1e-3) -> float:
        """A resistance-thermometer reading of ``stage`` with relative noise."""
        true_t = self.stage_temperature(stage)
        return float(true_t * (1.0 + relative_noise * self.rng.standard_normal()))

    def advance(self, duration: float, now: float) -> None:
        """Integrate ``duration`` seconds starting at clock time ``now``."""
        t = 0.0
        while t < duration:
            if self.controller is not None:
                step = min(duration - t, CONTROL_PERIOD_S)
                self.heater_power_W = max(0.0, self.controller(now + t, self.t_mc))
            else:
                step = duration - t
            self._hold_power(step)
            t += step
            if self._history is not None:
                times, mc, chip = self._history
                times.append(now + t)
                mc.append(self.t_mc)
                chip.append(self.t_chip)

    def _hold_power(self, duration: float) -> None:
        """Exact mixing chamber over ``duration`` at the present heater power; chip in sub-steps."""
        tr = self.truth
        power = self.heater_power_W + tr.mc_load_W + self.bias_power_W
        n_sub = max(1, int(np.ceil(duration / (0.1 * tr.chip_tau_s))))
        h = duration / n_sub
        lag = np.exp(-h / tr.chip_tau_s)
        for _ in range(n_sub):
            t_next = mc_temperature(
                self.t_mc, power, h, tr.mc_cooling_W_per_K2, tr.mc_heat_capacity_J_per_K
            )
            # chip: dT/dt = (T_mc - T) / tau, T_mc linear over the sub-step -> exact update
            slope = (t_next - self.t_mc) / h
            drive = self.t_mc - slope * tr.chip_tau_s
            self.t_chip = drive + slope * h + (self.t_chip - drive) * lag
            self.t_mc = t_next
