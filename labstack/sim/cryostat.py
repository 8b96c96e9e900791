"""Dilution refrigerator: lumped stages, mixing chamber with heater, chip on the mixing chamber.

Mixing chamber: ``C dT/dt = P_heater + P_load - a T^2`` (dilution cooling power
grows as T^2), integrated exactly enough with sub-steps of at most 0.5 s or a
tenth of the local time constant. The chip follows the mixing chamber as a
first-order lag with its own time constant. Upper stages are held at their
nominal temperatures with a little sensor noise. Pure numpy, no instruments.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from labstack.sim.truth import CryostatTruth

HeaterPower = Callable[[float, float], float]
"""Heater law: (time s, measured mixing-chamber temperature K) -> heater power W."""


class Cryostat:
    def __init__(self, truth: CryostatTruth, rng: np.random.Generator) -> None:
        self.truth = truth
        self.rng = rng
        self.t_mc = truth.mc_base_K
        self.t_chip = truth.mc_base_K
        self.heater_power_W = 0.0
        self.controller: HeaterPower | None = None

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
        tr = self.truth
        t = 0.0
        while t < duration:
            tau_local = tr.mc_heat_capacity_J_per_K / (2 * tr.mc_cooling_W_per_K2 * self.t_mc)
            dt = min(duration - t, 0.5, 0.1 * tau_local, 0.1 * tr.chip_tau_s)
            if self.controller is not None:
                self.heater_power_W = max(0.0, self.controller(now + t, self.t_mc))
            dT = (
                self.heater_power_W + tr.mc_load_W - tr.mc_cooling_W_per_K2 * self.t_mc**2
            ) / tr.mc_heat_capacity_J_per_K
            self.t_mc = max(1e-4, self.t_mc + dT * dt)
            self.t_chip += (self.t_mc - self.t_chip) * (1 - np.exp(-dt / tr.chip_tau_s))
            t += dt
