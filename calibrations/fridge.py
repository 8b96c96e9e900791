"""Fridge procedures: the building blocks nodes use to drive the cryostat.

Not a node (no ``NAME``): nodes import these instead of each other, the way
bluesky's plans are built from ``plan_stubs``. The cryostat node calibrates the
heater (``cryostat.*`` in the state); :func:`heat_to` uses that calibration to
hold the mixing chamber at a temperature by an open-loop current, which is all
the effective-temperature and thermalization nodes need: they read the chip
thermometer after each wait and use that reading, so the wait only has to make
the temperature steady during a measurement, not exact.

Thermometers sit on a scanner (a Lake Shore 372 measures one channel at a time; the
others report the reading they had when it left them). A fresh reading therefore
means: enable the channel, disable the other thermometers, wait the channel's
*pause* (the driver's ``pause`` parameter), then read (:func:`fresh_read_steps`,
:func:`read_fresh`); afterwards the scan is restored (:func:`scan_all`). Every
reading a routine uses is one it knows the age of.

Two ways to heat (the thermometry role says which, ``layout.heater_control``): a Lake
Shore 372 offers an open-loop heater current (:func:`set_heater_current`, calibrated
by the cryostat node as a heating coefficient); an Oxford Triton offers closed-loop
set-points only (:func:`set_loop`: its PID holds the mixing-chamber reading). A
Triton's channels are read continuously (no scanner): no switching, no pause.

Thermometer calibration: a RuOx sensor's calibration curve is uncertain by a few
per cent at 10 mK, less when warmer (:data:`CALIBRATION_REL_10MK`, from the sensor's
certificate; ``sqrt(10 mK / T)``). No measurement on the chip can remove it, so a
routine adds it to the error of whatever it derives from a temperature
(:func:`calibration_rel`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from labstack.calibrate import Context
from labstack.measure import Read, Set, Step, Wait

#: 1-sigma relative error of a RuOx calibration curve at 10 mK (the sensor's certificate)
CALIBRATION_REL_10MK = 0.015
#: margin after a scanner's pause before a reading counts as fresh (s)
SCAN_MARGIN_S = 0.5

#: the closed loop's heater range (Triton, mA full scale): 120 uW into 120 Ohm, ~90 mK at most
LOOP_RANGE_MA = 1.0

#: Lake Shore 372 sample-heater ranges: QCoDeS range name -> full-scale current (A)
HEATER_RANGES_A = {
    "31.6μA": 31.6e-6,
    "100μA": 100e-6,
    "316μA": 316e-6,
    "1mA": 1e-3,
    "3.16mA": 3.16e-3,
    "10mA": 10e-3,
    "31.6mA": 31.6e-3,
    "100mA": 100e-3,
}


def heater(ctx: Context) -> Any:
    """The sample heater's QCoDeS channel, named in the station's thermometry section."""
    layout = ctx.station.layout
    if layout.heater is None:
        raise RuntimeError("station has no heater in its labstack.thermometry section")
    return ctx.station.parameter(str(layout.heater_mode)).instrument


def closed_loop(ctx: Context) -> bool:
    """Whether the station's heater is driven by set-points (Triton) rather than a current."""
    return ctx.station.layout.heater_control == "closed_loop"


def set_loop(ctx: Context, temperature_K: float) -> None:
    """Closed loop holding the mixing-chamber reading at ``temperature_K`` (0: loop off)."""
    layout = ctx.station.layout
    if layout.heater_mode is None or layout.heater_setpoint is None or layout.heater_range is None:
        raise RuntimeError("station has no heater in its labstack.thermometry section")
    if temperature_K <= 0:
        ctx.station.parameter(layout.heater_mode).set("off")
        return
    ctx.station.parameter(layout.heater_range).set(LOOP_RANGE_MA)
    ctx.station.parameter(layout.heater_setpoint).set(float(temperature_K))
    ctx.station.parameter(layout.heater_mode).set("on")


def output_index(channel: Any) -> int:
    """The heater output's index in ``MOUT`` commands (0: the sample heater)."""
    return int(getattr(channel, "_output_index", 0))


def heater_range(current_A: float) -> tuple[str, float] | None:
    """(QCoDeS name, full-scale A) of the smallest range that holds ``current_A`` with 5 %
    to spare; None if none does."""
    return next(((n, a) for n, a in HEATER_RANGES_A.items() if current_A <= 0.95 * a), None)


def warming_time(t_from: float, t_to: float, t_inf: float, base: float, tau_base: float) -> float:
    """Seconds the mixing chamber takes from ``t_from`` to ``t_to`` while heated towards ``t_inf``.

    ``C dT/dt = P - a T^2`` warms as ``T_inf tanh(t T_inf / (2 tau_base base) + artanh(T0 /
    T_inf))``, ``C / a = 2 tau_base base`` from the time constant at base.
    """
    return 2.0 * tau_base * base / t_inf * (math.atanh(t_to / t_inf) - math.atanh(min(t_from / t_inf, 0.999)))


def cooling_time(t_from: float, t_to: float, base: float, tau_base: float) -> float:
    """Seconds the mixing chamber takes from ``t_from`` down to ``t_to`` with the heater off.

    ``C dT/dt = -a (T^2 - base^2)``: ``u = (T - base) / (T + base)`` decays as
    ``exp(-t / tau_base)`` exactly (``C / a = 2 tau_base base``).
    """
    def u(t: float) -> float:
        return (t - base) / (t + base)

    return tau_base * math.log(u(t_from) / u(t_to)) if t_to > base else math.inf


def set_heater_current(ctx: Context, current_A: float) -> None:
    """Open-loop heater at ``current_A`` (0: off), on the smallest range that holds it."""
    if closed_loop(ctx):
        if current_A <= 0:
            set_loop(ctx, 0.0)
            return
        raise RuntimeError(
            f"the thermometry role ({ctx.station.layout.thermometry}) offers closed-loop set-points "
            "only, not an open-loop heater current: use set_loop"
        )
    channel = heater(ctx)
    if current_A <= 0:
        channel.mode("off")
        return
    found = heater_range(current_A)
    if found is None:
        raise ValueError(f"heater current {current_A:.3g} A exceeds the largest range")
    name, full = found
    channel.output_range(name)
    channel.write(f"MOUT {output_index(channel)},{100 * current_A / full:.4f}")
    channel.mode("open_loop")


def heater_is_off(ctx: Context) -> bool:
    """Whether the sample heater is off (a station without one never heats)."""
    layout = ctx.station.layout
    return ctx.station.parameter(str(layout.heater_mode)).get() == "off" if layout.heater else True


def heat_to(
    ctx: Context, temperature_K: float, *, settle_taus: float = 5.0, boost: bool = True, chip_taus: float | None = None
) -> float:
    """Hold the mixing chamber at ``temperature_K`` by the calibrated open-loop current,
    wait until fridge and chip have settled, and return the waiting time (s).

    Needs a calibrated cryostat (``cryostat.*`` in the state). Temperatures at or below
    base switch the heater off and wait for the cool-down instead. A closed-loop
    controller (Triton) is given the set-point instead of a current. Callers read the
    chip thermometer after the wait and use that reading, so the wait only has to
    make the temperature steady during a measurement, not exact.

    Warming with ``boost`` (open loop, mixing-chamber thermometer on the station): a
    plain step approaches the plateau as ``exp(-t / tau(T))`` and needs ``settle_taus``
    of those time constants; a shaped step first drives the heater harder (at most the
    full scale of the range the hold current needs, so no range the station has not
    already been asked for, and at most twice the plateau's temperature) for the time
    the calibrated model gives to reach the plateau (:func:`boost_plan`), then holds. What
    is left to settle is the model's error (:data:`BOOST_RESIDUAL`, a fraction of the
    step) and the chip's lag behind the mixing chamber: ``chip_taus`` of the chip's time
    constant (default ``settle_taus``). Going down by more than a few per cent, the step is a
    dive instead (:func:`boost_plan`): heater off until the model has the mixing chamber
    at the plateau, then the hold, and the same residual to settle.
    """
    state = ctx.state
    base = float(state.value("cryostat.mc_base_K"))
    tau_base = float(state.value("cryostat.mc_tau_base_s"))
    tau_chip = float(state.value("cryostat.chip_tau_s"))
    target = max(float(temperature_K), base)
    tau_mc = tau_base * base / target
    chip_taus = settle_taus if chip_taus is None else chip_taus
    if closed_loop(ctx):
        set_loop(ctx, target if float(temperature_K) > base else 0.0)
        wait = settle_taus * tau_mc + chip_taus * tau_chip
        ctx.clock.sleep(wait)
        return wait
    k = float(state.value("cryostat.heating_K2_per_A2"))
    hold = math.sqrt(max(target**2 - base**2, 0.0) / k)
    plan = None
    mc = ctx.station.layout.thermometer_mc
    if boost and hold > 0 and mc:
        plan = boost_plan(read_fresh(ctx, mc), target, base, tau_base, k, hold)
    waited = 0.0
    if plan is not None:
        current, duration = plan
        set_heater_current(ctx, current)
        ctx.clock.sleep(duration)
        waited = duration
    set_heater_current(ctx, hold)
    # the approach is fastest near the hot end: tau(T) = tau_base * base / T; going
    # down, the slowest part is the last stretch near the target
    mc_taus = settle_taus if plan is None else max(settle_taus - math.log(1.0 / BOOST_RESIDUAL), 0.0)
    wait = mc_taus * tau_mc + chip_taus * tau_chip
    ctx.clock.sleep(wait)
    return waited + wait


#: what a shaped heater step leaves of the step to settle: the calibrated model's error
#: in the time to reach the plateau (heating coefficient, base, time constant: a few
#: per cent each), taken generously
BOOST_RESIDUAL = 0.05
#: a shaped step is worth its thermometer reading only below this fraction of the plateau
BOOST_BELOW = 0.9
#: the boost's equilibrium temperature at most this multiple of the plateau's
BOOST_MAX_FACTOR = 2.0


def boost_plan(
    t_now: float, target: float, base: float, tau_base: float, k: float, hold_A: float
) -> tuple[float, float] | None:
    """(current A, seconds) of the boost that takes the mixing chamber from ``t_now`` to
    ``target``, or None when a plain step will do (already near the plateau).

    At a constant current ``I`` the mixing chamber warms towards ``T_inf = sqrt(base^2 +
    k I^2)``; the time to the plateau follows in closed form (:func:`warming_time`). None too when the boost would take
    longer than the ``ln(1 / BOOST_RESIDUAL)`` time constants at the plateau it saves
    (a plateau near the top of its heater range leaves little to boost with).

    Well above the plateau (by more than ``1 / BOOST_BELOW``) the step is shaped the other
    way, a *dive*: heater off (current 0) for the time the model gives to cool to the
    plateau (:func:`cooling_time`), then the hold. A plain step down approaches the plateau
    with the time constant there, slowest at the end; heater off, the mixing chamber
    cools at its fastest all the way.
    """
    if np.isfinite(t_now) and t_now * BOOST_BELOW > target > base:
        duration = cooling_time(t_now, target, base, tau_base)
        saves = math.log(1.0 / BOOST_RESIDUAL) * tau_base * base / target
        return (0.0, duration) if 0 < duration < saves else None
    if not (np.isfinite(t_now) and t_now < BOOST_BELOW * target):
        return None
    found = heater_range(hold_A)
    if found is None:
        return None
    full = found[1]
    cap = math.sqrt(max((BOOST_MAX_FACTOR * target) ** 2 - base**2, 0.0) / k)
    current = min(0.95 * full, cap)
    t_inf = math.sqrt(base**2 + k * current**2)
    if t_inf <= target * 1.01:
        return None
    duration = warming_time(max(t_now, base), target, t_inf, base, tau_base)
    # worth it only if shorter than the time constants at the plateau it saves waiting
    saves = math.log(1.0 / BOOST_RESIDUAL) * tau_base * base / target
    return (current, duration) if 0 < duration < saves else None


def cool_down(ctx: Context, *, settle_taus: float = 3.0) -> float:
    """Heater off and wait until fridge and chip are near base; the waiting time (s).

    Three time constants at base leave the chip within ~1 mK of base and settling
    at < 1 mK per time constant: steady enough, and the next node reads it anyway.
    """
    return heat_to(ctx, 0.0, settle_taus=settle_taus)


def calibration_rel(temperature_K: float | np.ndarray, rel_10mK: float = CALIBRATION_REL_10MK) -> np.ndarray:
    """Relative 1-sigma calibration error of a RuOx reading at ``temperature_K``."""
    return rel_10mK * np.sqrt(0.010 / np.maximum(np.asarray(temperature_K, dtype=float), 1e-6))


def thermometers(ctx: Context) -> list[str]:
    """The station's thermometer parameters (mixing chamber, chip), dotted names."""
    layout = ctx.station.layout
    return [name for name in (layout.thermometer_mc, layout.thermometer_chip) if name]


def channel_of(thermometer: str) -> str:
    """``ls372.ch06`` of ``ls372.ch06.temperature``."""
    return thermometer.rsplit(".", 1)[0]


def scan_pause(ctx: Context, thermometer: str) -> float:
    """Seconds a scanned channel needs after switching before its reading is valid (0 if none)."""
    if not ctx.station.layout.thermometers_scanned:
        return 0.0
    try:
        return float(ctx.station.parameter(f"{channel_of(thermometer)}.pause").get())
    except LookupError:
        return 0.0


def scan_only(ctx: Context, thermometer: str) -> list[Step]:
    """Steps that make ``thermometer``'s channel the only one scanned among the station's
    (none when the thermometers are not on a scanner)."""
    if not ctx.station.layout.thermometers_scanned:
        return []
    others = [t for t in thermometers(ctx) if channel_of(t) != channel_of(thermometer)]
    steps: list[Step] = [Set(f"{channel_of(thermometer)}.enabled", True)]
    return steps + [Set(f"{channel_of(t)}.enabled", False) for t in others]


def fresh_read_steps(ctx: Context, thermometer: str, name: str) -> tuple[list[Step], float]:
    """Steps that read ``thermometer`` freshly (scan to it, wait its pause), and their duration."""
    wait = scan_pause(ctx, thermometer) + SCAN_MARGIN_S
    return [*scan_only(ctx, thermometer), Wait(wait), Read(thermometer, name=name)], wait


def scan_all(ctx: Context) -> None:
    """Every station thermometer's channel scanned again (after :func:`read_fresh`)."""
    if not ctx.station.layout.thermometers_scanned:
        return
    for t in thermometers(ctx):
        ctx.station.parameter(f"{channel_of(t)}.enabled").set(True)


def read_fresh(ctx: Context, thermometer: str, n: int = 1) -> float:
    """Mean of ``n`` fresh readings of ``thermometer``: scanned alone, after its pause."""
    for step in scan_only(ctx, thermometer):
        assert isinstance(step, Set)
        ctx.station.parameter(str(step.param)).set(step.value)
    ctx.clock.sleep(scan_pause(ctx, thermometer) + SCAN_MARGIN_S)
    param = ctx.station.parameter(thermometer)
    value = float(np.mean([param.get() for _ in range(n)]))
    scan_all(ctx)
    return value


def chip_temperature(ctx: Context, n: int = 5) -> float:
    """Mean of ``n`` fresh chip-thermometer readings (MC thermometer if the chip has none)."""
    layout = ctx.station.layout
    name = layout.thermometer_chip or layout.thermometer_mc
    if name is None:
        raise RuntimeError("station has no thermometer in its labstack.thermometry section")
    return read_fresh(ctx, name, n)


def plateaus(
    ctx: Context,
    temperatures_K: Iterable[float],
    *,
    settle_taus: float = 5.0,
    boost: bool = True,
    chip_taus: float | None = None,
    cool: bool = True,
) -> Iterator[float]:
    """Hold each temperature in turn, coldest first, yielding it once fridge and chip settled.

    0 (or anything at or below base) means base: the heater stays off if it already
    is, so a run that starts cold does not wait for a cool-down it does not need.
    Ascending order warms step by step (fast: the fridge's time constant shrinks
    as it warms) and cools down once, after the last plateau has been used. A caller
    that stops early or raises gets no cool-down here: the heater stays as it is for
    whoever handles the failure (an abort puts the station in its safe state).
    ``boost``: shaped heater steps up to each plateau, ``chip_taus``: the chip's settling
    there (:func:`heat_to`; the cool-down waits ``settle_taus`` whatever it is).
    ``cool=False``: no cool-down after the last plateau (the caller goes on from there,
    and cools down itself).
    """
    off = heater_is_off(ctx)
    for t_set in sorted(temperatures_K):
        if t_set > 0 or not off:
            heat_to(ctx, t_set, settle_taus=settle_taus, boost=boost, chip_taus=chip_taus)
            off = t_set <= 0
        yield t_set
    if cool and not off:
        cool_down(ctx)
