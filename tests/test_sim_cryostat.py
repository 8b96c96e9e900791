"""Cryostat: heater steps settle exponentially with the time constants the model was given."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.optimize import curve_fit

from labstack.sim.cryostat import Cryostat, mc_temperature
from labstack.sim.truth import CryostatTruth


def exponential(t, t_inf, t0, tau):
    return t_inf + (t0 - t_inf) * np.exp(-t / tau)


def record(cryo: Cryostat, stage: str, total: float, every: float) -> tuple[np.ndarray, np.ndarray]:
    times = np.arange(0.0, total + every / 2, every)
    values = [cryo.stage_temperature(stage)]
    for k in range(1, len(times)):
        cryo.advance(every, times[k - 1])
        values.append(cryo.stage_temperature(stage))
    return times, np.array(values)


def test_heater_step_fits_the_given_mixing_chamber_time_constant() -> None:
    truth = CryostatTruth()
    cryo = Cryostat(truth, np.random.default_rng(0))
    t_target = 1.02 * truth.mc_base_K  # a small step: the small-signal regime
    cryo.heater_power_W = truth.mc_cooling_W_per_K2 * t_target**2 - truth.mc_load_W
    tau_model = truth.mc_tau_s(t_target)
    times, temps = record(cryo, "mixing_chamber", 8 * tau_model, tau_model / 40)
    (t_inf, t0, tau), _ = curve_fit(exponential, times, temps, p0=(temps[-1], temps[0], 500.0))
    assert tau == pytest.approx(tau_model, rel=0.02)
    assert t_inf == pytest.approx(t_target, rel=1e-4)
    assert t0 == pytest.approx(truth.mc_base_K, rel=1e-3)


def test_chip_follows_the_mixing_chamber_with_its_own_time_constant() -> None:
    """A mixing chamber too heavy to move in a minute, suddenly warmer: the chip lags by chip_tau."""
    truth = CryostatTruth(mc_heat_capacity_J_per_K=1e4, chip_tau_s=30.0)
    cryo = Cryostat(truth, np.random.default_rng(0))
    cryo.t_mc = 0.050
    cryo.heater_power_W = truth.mc_cooling_W_per_K2 * 0.050**2 - truth.mc_load_W  # hold 50 mK
    times, temps = record(cryo, "chip", 240.0, 2.0)
    (t_inf, t0, tau), _ = curve_fit(exponential, times, temps, p0=(0.05, 0.01, 10.0))
    assert tau == pytest.approx(truth.chip_tau_s, rel=0.01)
    assert t_inf == pytest.approx(0.050, rel=1e-3)


def test_large_step_matches_an_independent_ode_solution() -> None:
    """10 mK -> ~32 mK and back: closed form against scipy's adaptive integrator."""
    truth = CryostatTruth()
    a, c, load = truth.mc_cooling_W_per_K2, truth.mc_heat_capacity_J_per_K, truth.mc_load_W
    for t0, heater in ((0.010, 1e-5), (0.032, 0.0)):
        sol = solve_ivp(lambda _t, y, p=heater: [(p + load - a * y[0] ** 2) / c], (0, 2000.0),
                        [t0], rtol=1e-10, atol=1e-14, dense_output=True)
        for t in (10.0, 300.0, 2000.0):
            assert mc_temperature(t0, heater + load, t, a, c) == pytest.approx(
                sol.sol(t)[0], rel=1e-7)


def test_closed_loop_controller_settles_on_its_setpoint() -> None:
    """A PI law sampled every CONTROL_PERIOD_S (as the Lake Shore does) holds 40 mK."""
    truth = CryostatTruth()
    cryo = Cryostat(truth, np.random.default_rng(0))
    state = {"integral": 0.0, "last": None}

    def pi(now: float, measured: float) -> float:
        dt = 0.0 if state["last"] is None else now - state["last"]
        state["last"] = now
        error = 0.040 - measured
        state["integral"] += error * dt
        return 2e-3 * error + 2e-5 * state["integral"]

    cryo.controller = pi
    cryo.advance(20_000.0, 0.0)
    assert cryo.t_mc == pytest.approx(0.040, rel=1e-3)
    assert cryo.t_chip == pytest.approx(0.040, rel=2e-3)
