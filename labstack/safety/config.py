"""The safety sections of a station file, checked with file, line and key before anything opens.

::

    labstack:
      ramps:                         # per DAC parameter: largest jump and average rate
        qdac1.ch01-ch16.dc_constant_V: {max_step: 0.05, rate_V_per_s: 1.0}
      # ramps: off                   # the only way to run real DAC lines unramped
      safe_state:
        dac_V: 0.0                   # where ramped DACs go on abort
        heater_off: true             # heater range 0 on abort
      interlocks:
        heater_max_range: 5          # Lake Shore range index (5 = 3.16 mA)
        heater_max_power_W: 1.0e-4   # full-scale power of a range, needs the resistance
        heater_resistance_ohm: 120
        max_temperature_K: 0.5       # closed-loop set-points above are refused; a run trips above
      suspenders:                    # a run pauses while a signal is out of band
        - {signal: ls372.ch06.temperature, high: 0.05, settle_s: 30, poll_s: 1}
      retry: {attempts: 6, backoff_s: 0.05, factor: 2.0, max_backoff_s: 5.0}

Every section is optional. Unknown keys inside these sections are refused (a typo
in a safety setting must not silently mean "no limit").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Fail = Callable[[tuple[str, ...], str], Exception]


@dataclass(frozen=True)
class RampSpec:
    """Largest single jump (V) and average rate (V/s) of one DAC parameter."""

    max_step: float
    rate: float


@dataclass(frozen=True)
class Interlocks:
    heater_max_range: int | None = None
    heater_max_power_W: float | None = None
    heater_resistance_ohm: float | None = None
    max_temperature_K: float | None = None


@dataclass(frozen=True)
class SuspenderSpec:
    """Pause while ``signal`` (a parameter name) is outside [low, high]; resume after settle_s in band."""

    signal: str
    low: float = -math.inf
    high: float = math.inf
    settle_s: float = 0.0
    poll_s: float = 1.0
    timeout_s: float = math.inf


@dataclass(frozen=True)
class RetrySpec:
    attempts: int = 6
    backoff_s: float = 0.05
    factor: float = 2.0
    max_backoff_s: float = 5.0


@dataclass(frozen=True)
class SafeState:
    dac_V: float = 0.0
    heater_off: bool = True


@dataclass
class SafetyConfig:
    ramps: dict[str, RampSpec] = field(default_factory=dict)
    #: the file says ``ramps: off``: real DAC lines may run without ramps (otherwise refused)
    ramps_off: bool = False
    interlocks: Interlocks = field(default_factory=Interlocks)
    suspenders: list[SuspenderSpec] = field(default_factory=list)
    safe_state: SafeState = field(default_factory=SafeState)
    retry: RetrySpec = field(default_factory=RetrySpec)


def _number(value: Any, key: tuple[str, ...], fail: Fail, *, positive: bool = False) -> float:
    if isinstance(value, bool):
        raise fail(key, f"{value!r} is not a number")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise fail(key, f"{value!r} is not a number") from None
    if math.isnan(x):
        raise fail(key, "must not be NaN")
    if positive and not x > 0:
        raise fail(key, f"must be > 0, got {x:g}")
    return x


def _mapping(section: Any, key: tuple[str, ...], fail: Fail) -> Mapping[str, Any]:
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise fail(key, "must be a mapping of key: value")
    return section


def _only(mapping: Mapping[str, Any], allowed: set[str], key: tuple[str, ...], fail: Fail) -> None:
    for k in mapping:
        if k not in allowed:
            raise fail((*key, str(k)), f"unknown key; use {sorted(allowed)}")


def parse_safety(
    section: Mapping[str, Any], fail: Fail, expand: Callable[[str], list[str]]
) -> SafetyConfig:
    """Read the safety sections of ``labstack:``; ``fail(key, message)`` builds the error."""
    config = SafetyConfig()
    root = ("labstack",)

    config.ramps_off = section.get("ramps") is False  # YAML ``ramps: off``
    ramps = _mapping(None if config.ramps_off else section.get("ramps"), (*root, "ramps"), fail)
    for name, spec in ramps.items():
        key = (*root, "ramps", str(name))
        spec = _mapping(spec, key, fail)
        _only(spec, {"max_step", "rate_V_per_s"}, key, fail)
        if "max_step" not in spec or "rate_V_per_s" not in spec:
            raise fail(key, "needs max_step and rate_V_per_s")
        ramp = RampSpec(
            _number(spec["max_step"], (*key, "max_step"), fail, positive=True),
            _number(spec["rate_V_per_s"], (*key, "rate_V_per_s"), fail, positive=True),
        )
        if not math.isfinite(ramp.max_step) or not math.isfinite(ramp.rate):
            raise fail(key, "max_step and rate_V_per_s must be finite")
        try:
            names = expand(str(name))
        except ValueError as exc:
            raise fail(key, str(exc)) from None
        for n in names:
            config.ramps[n] = ramp

    key = (*root, "interlocks")
    il = _mapping(section.get("interlocks"), key, fail)
    _only(il, {"heater_max_range", "heater_max_power_W", "heater_resistance_ohm", "max_temperature_K"}, key, fail)
    max_range = il.get("heater_max_range")
    if max_range is not None:
        r = _number(max_range, (*key, "heater_max_range"), fail)
        if r != int(r) or not 0 <= r <= 8:
            raise fail((*key, "heater_max_range"), f"must be a range index 0..8, got {max_range!r}")
        max_range = int(r)
    power = il.get("heater_max_power_W")
    resistance = il.get("heater_resistance_ohm")
    if power is not None:
        power = _number(power, (*key, "heater_max_power_W"), fail, positive=True)
        if resistance is None:
            raise fail((*key, "heater_max_power_W"), "needs heater_resistance_ohm to turn power into a range")
    if resistance is not None:
        resistance = _number(resistance, (*key, "heater_resistance_ohm"), fail, positive=True)
    t_max = il.get("max_temperature_K")
    if t_max is not None:
        t_max = _number(t_max, (*key, "max_temperature_K"), fail, positive=True)
    config.interlocks = Interlocks(max_range, power, resistance, t_max)

    key = (*root, "safe_state")
    safe = _mapping(section.get("safe_state"), key, fail)
    _only(safe, {"dac_V", "heater_off"}, key, fail)
    heater_off = safe.get("heater_off", True)
    if not isinstance(heater_off, bool):
        raise fail((*key, "heater_off"), f"must be true or false, got {heater_off!r}")
    config.safe_state = SafeState(_number(safe.get("dac_V", 0.0), (*key, "dac_V"), fail), heater_off)

    suspenders = section.get("suspenders") or []
    if not isinstance(suspenders, list):
        raise fail((*root, "suspenders"), "must be a list of {signal, low, high, settle_s}")
    for i, spec in enumerate(suspenders):
        key = (*root, "suspenders", str(i))
        spec = _mapping(spec, key, fail)
        where = ""
        _only(spec, {"signal", "low", "high", "settle_s", "poll_s", "timeout_s"}, key, fail)
        if not isinstance(spec.get("signal"), str):
            raise fail(key, where + "needs signal: <parameter name>")
        values = {
            k: _number(spec[k], (*key, k), fail) for k in ("low", "high", "settle_s", "poll_s", "timeout_s") if k in spec
        }
        if "low" not in values and "high" not in values:
            raise fail(key, where + f"{spec['signal']} needs low and/or high")
        s = SuspenderSpec(spec["signal"], **values)
        if not s.low < s.high:
            raise fail(key, where + f"low {s.low:g} must be below high {s.high:g}")
        if s.settle_s < 0 or not s.poll_s > 0 or not s.timeout_s > 0:
            raise fail(key, where + "settle_s must be >= 0, poll_s and timeout_s > 0")
        config.suspenders.append(s)

    key = (*root, "retry")
    retry = _mapping(section.get("retry"), key, fail)
    _only(retry, {"attempts", "backoff_s", "factor", "max_backoff_s"}, key, fail)
    attempts = _number(retry.get("attempts", 6), (*key, "attempts"), fail, positive=True)
    if attempts != int(attempts):
        raise fail((*key, "attempts"), f"must be a whole number, got {attempts:g}")
    config.retry = RetrySpec(
        int(attempts),
        _number(retry.get("backoff_s", 0.05), (*key, "backoff_s"), fail),
        _number(retry.get("factor", 2.0), (*key, "factor"), fail, positive=True),
        _number(retry.get("max_backoff_s", 5.0), (*key, "max_backoff_s"), fail),
    )
    return config
