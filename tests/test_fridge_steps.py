"""Shaped heater steps (:func:`labstack.calibrations.fridge.heat_to` with a boost).

The boost's duration comes from the calibrated mixing-chamber model; here it is
checked against the simulator's exact mixing chamber, a wrong time constant is
shown to miss the plateau, and on a virtual station a boosted step reaches a chip
temperature as steady as a plain step's in less lab time.
"""

from __future__ import annotations

import math

import pytest

from labstack.calibrate import CalibrationGraph, Context
from labstack.calibrations import fridge
from labstack.session import routines
from labstack.sim.cryostat import mc_temperature
from labstack.sim.truth import CryostatTruth


def _model(c: CryostatTruth) -> dict[str, float]:
    """What the cryostat node calibrates, exactly: base, time constant at base, heating."""
    base = c.mc_base_K
    return {"base": base, "tau_base": c.mc_tau_s(base), "k": c.heater_resistance_ohm / c.mc_cooling_W_per_K2}


def _hold(m: dict[str, float], target: float) -> float:
    return math.sqrt((target**2 - m["base"] ** 2) / m["k"])


def _reached(c: CryostatTruth, start: float, current: float, seconds: float) -> float:
    power = c.mc_load_W + c.heater_resistance_ohm * current**2
    return mc_temperature(start, power, seconds, c.mc_cooling_W_per_K2, c.mc_heat_capacity_J_per_K)


@pytest.mark.parametrize("target", [0.025, 0.035, 0.05, 0.08])
def test_the_boost_lands_on_the_plateau_of_the_exact_mixing_chamber(target):
    c = CryostatTruth()
    m = _model(c)
    hold = _hold(m, target)
    current, seconds = fridge.boost_plan(m["base"], target, m["base"], m["tau_base"], m["k"], hold)
    assert _reached(c, m["base"], current, seconds) == pytest.approx(target, rel=1e-9)
    # within the range the hold needs, and at most twice the plateau's temperature
    _, full = fridge.heater_range(hold)
    assert hold < current <= 0.95 * full
    assert math.sqrt(m["base"] ** 2 + m["k"] * current**2) <= fridge.BOOST_MAX_FACTOR * target * (1 + 1e-12)
    # shorter than the time constants at the plateau it saves waiting
    assert seconds < math.log(1 / fridge.BOOST_RESIDUAL) * c.mc_tau_s(target)


def test_a_wrong_time_constant_misses_the_plateau():
    """The model matters: with the time constant at base taken 30 % long the boost
    overshoots by more than the residual the wait allows for."""
    c = CryostatTruth()
    m = _model(c)
    target = 0.035
    current, seconds = fridge.boost_plan(m["base"], target, m["base"], 1.3 * m["tau_base"], m["k"], _hold(m, target))
    reached = _reached(c, m["base"], current, seconds)
    assert (reached - target) / (target - m["base"]) > fridge.BOOST_RESIDUAL


def test_no_boost_near_the_plateau():
    m = _model(CryostatTruth())
    hold = _hold(m, 0.035)
    assert fridge.boost_plan(0.034, 0.035, m["base"], m["tau_base"], m["k"], hold) is None
    assert fridge.boost_plan(0.037, 0.035, m["base"], m["tau_base"], m["k"], hold) is None
    assert fridge.boost_plan(float("nan"), 0.035, m["base"], m["tau_base"], m["k"], hold) is None


@pytest.mark.parametrize(("start", "target"), [(0.08, 0.0225), (0.0225, 0.0175), (0.05, 0.035)])
def test_a_dive_lands_on_the_plateau_of_the_exact_mixing_chamber(start, target):
    """Well above the plateau the step is a dive: heater off for the model's cooling time,
    which lands the exact mixing chamber on the plateau, in less time than the ln(1 /
    residual) time constants at the plateau a plain step down would need."""
    c = CryostatTruth()
    m = _model(c)
    current, seconds = fridge.boost_plan(start, target, m["base"], m["tau_base"], m["k"], _hold(m, target))
    assert current == 0.0
    assert _reached(c, start, 0.0, seconds) == pytest.approx(target, rel=1e-9)
    assert seconds < math.log(1 / fridge.BOOST_RESIDUAL) * c.mc_tau_s(target)


def test_a_dive_on_a_wrong_time_constant_misses_the_plateau():
    c = CryostatTruth()
    m = _model(c)
    start, target = 0.08, 0.0225
    _, seconds = fridge.boost_plan(start, target, m["base"], 0.7 * m["tau_base"], m["k"], _hold(m, target))
    reached = _reached(c, start, 0.0, seconds)
    assert (reached - target) / (start - target) > fridge.BOOST_RESIDUAL


def test_a_boosted_step_is_as_steady_as_a_plain_one_in_less_lab_time(virtual_station, tmp_path):
    """On the realistic fridge, through the instruments: the cryostat node calibrates the
    model, then each step warms the chip from base to 35 mK; when the wait ends the chip
    must be steady (it moves less than 0.1 mK over the next two minutes) and near the plateau."""
    station, lab = virtual_station(seed=3, cells=16)
    ctx = Context.create(tmp_path, station)
    graph = CalibrationGraph(ctx)
    graph.add_module(routines()["cryostat"])
    graph.calibrate_all()
    taken, drift, off = {}, {}, {}
    for boost in (False, True):
        fridge.cool_down(ctx)
        start = ctx.clock.now()
        fridge.heat_to(ctx, 0.035, boost=boost)
        taken[boost] = ctx.clock.now() - start
        at_end = lab.truth_at(ctx.clock.now()).t_chip_K
        ctx.clock.sleep(120.0)
        drift[boost] = abs(lab.truth_at(ctx.clock.now()).t_chip_K - at_end)
        off[boost] = abs(at_end - 0.035)
    fridge.cool_down(ctx)
    assert taken[True] < 0.8 * taken[False], taken
    assert drift[True] < 1e-4 and drift[False] < 1e-4, drift
    assert off[True] < 1.5e-3 and off[False] < 1.5e-3, off
