"""Apply a station file's safety sections to a station's instruments.

Order matters and is fixed here: every VISA instrument is hardened (retries,
reconnects); guarded DAC channels and the heater get an SCPI guard on their
PyVISA resource (re-applied after a reconnect); ramped parameters get a ramped
``set``; heater range and set-point get extra validators, so a sequence that
would break an interlock fails its dry run before anything moves. Every method
replaced on a driver goes through one :class:`~labstack.safety.intercept.Interceptors`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from qcodes.instrument import IPInstrument, VisaInstrument
from qcodes.parameters import Parameter
from qcodes.validators import Enum, Numbers

from labstack.clock import Clock
from labstack.safety.array_dialect import ArrayDacDialect
from labstack.safety.array_ramp import ArrayRamp, install_array_ramp
from labstack.safety.config import SafetyConfig
from labstack.safety.guard import (
    Channel,
    Dialect,
    KeysightB2962ADialect,
    Lakeshore372Dialect,
    QDac2Dialect,
    ScpiGuard,
    SR86xDialect,
    TritonDialect,
    max_heater_range,
)
from labstack.safety.intercept import Interceptors
from labstack.safety.locks import install_locks
from labstack.safety.ramp import install_ramp
from labstack.safety.retry import Hardener, no_delay

Find = Callable[[str], Any]


@dataclass
class StationSafety:
    """Everything the safety layer installed on one station (``LabStation.safety``)."""

    config: SafetyConfig
    clock: Clock
    interceptors: Interceptors = field(default_factory=Interceptors)
    channels: dict[str, Channel] = field(default_factory=dict)
    guards: dict[str, ScpiGuard] = field(default_factory=dict)
    hardener: Hardener | None = None
    unguarded: list[str] = field(default_factory=list)  # ramped in software only (unknown dialect)
    locks: dict[str, threading.RLock] = field(default_factory=dict)  # one exchange at a time
    #: DAC arrays whose block writes are ramped element-wise (the safe state moves them as blocks)
    arrays: dict[str, ArrayRamp] = field(default_factory=dict)


def _dialect_channel(parameter: Parameter) -> tuple[str, int, type[Dialect]] | None:
    """(instrument name, channel number, dialect) if labstack knows the parameter's SCPI dialect."""
    root = parameter.root_instrument
    models = {type(root).__name__, *(k.__name__ for k in type(root).__mro__)}
    if "QDac2" in models and parameter.name == "dc_constant_V":
        number = getattr(parameter.instrument, "_channum", None)
        if isinstance(number, int):
            return root.name, number, QDac2Dialect
    if "KeysightB2962A" in models and parameter.name == "source_voltage":
        number = getattr(parameter.instrument, "channel", None)
        if isinstance(number, int):
            return root.name, number, KeysightB2962ADialect
    if "SR86x" in models and parameter.name in ("amplitude", "sine_outdc"):
        return root.name, 1 if parameter.name == "amplitude" else 2, SR86xDialect
    if "LabstackArrayDac" in models and parameter.name == "volt":
        number = getattr(parameter.instrument, "element", None)
        if isinstance(number, int):
            return root.name, number, ArrayDacDialect
    if "OxfordTriton" in models and parameter.name == "pid_setpoint":
        return root.name, TritonDialect.SETPOINT, TritonDialect
    return None


def _is_triton(component: Any) -> bool:
    return any(k.__name__ == "OxfordTriton" for k in type(component).__mro__)


def _guard(guard: ScpiGuard, component: Any) -> None:
    """Put ``guard`` on the wire of ``component``: its PyVISA resource, or its raw socket."""
    if isinstance(component, IPInstrument):
        guard.install_socket(component)
    else:
        guard.install(component.visa_handle)


def install_safety(
    components: Mapping[str, Any],
    config: SafetyConfig,
    limits: Mapping[str, tuple[float, float]],
    heater: str | None,
    clock: Clock,
    find: Find,
) -> StationSafety:
    """Harden, guard and ramp the instruments in ``components`` as ``config`` says.

    ``find(name)`` resolves a dotted parameter name (the station's one resolver).
    """
    safety = StationSafety(config, clock)
    interceptors = safety.interceptors

    def reguard(instrument: VisaInstrument) -> None:
        guard = safety.guards.get(instrument.name)
        if guard is not None:
            guard.install(instrument.visa_handle)

    hardener = Hardener(config.retry, clock, interceptors, on_reconnect=reguard)
    safety.hardener = hardener
    for component in components.values():
        if isinstance(component, VisaInstrument | IPInstrument):
            no_delay(component)  # a message on a raw socket goes out at once
            if component is not clock:
                hardener.harden(component)

    by_instrument: dict[str, dict[int, Channel]] = {}
    dialects: dict[str, type[Dialect]] = {}
    for name in sorted(set(limits) | set(config.ramps)):
        parameter = find(name)
        low, high = limits.get(name, (-math.inf, math.inf))
        channel = Channel(name, low, high, config.ramps.get(name))
        safety.channels[name] = channel
        where = _dialect_channel(parameter)
        if where is None:
            safety.unguarded.append(name)
        else:
            by_instrument.setdefault(where[0], {})[where[1]] = channel
            dialects[where[0]] = where[2]
        if channel.ramp is not None:
            install_ramp(parameter, channel, clock, interceptors)
    for instrument_name, channels in by_instrument.items():
        dialect_of = dialects[instrument_name].for_instrument(components[instrument_name])
        guard = ScpiGuard(instrument_name, dialect_of, clock, interceptors, channels)
        safety.guards[instrument_name] = guard
        _guard(guard, components[instrument_name])
        if dialects[instrument_name] is ArrayDacDialect and any(c.ramp for c in channels.values()):
            dac = components[instrument_name]
            array = ArrayRamp(dac.voltages, int(dac.n_elements), channels)
            safety.arrays[instrument_name] = array
            install_array_ramp(array, clock, interceptors)

    interlocks = config.interlocks
    has_interlocks = any(v is not None for v in vars(interlocks).values())
    if heater and has_interlocks:
        instrument_name = heater.split(".")[0]
        component = components[instrument_name]
        triton = _is_triton(component)
        dialect: Dialect = TritonDialect(interlocks) if triton else Lakeshore372Dialect(interlocks)
        existing = safety.guards.get(instrument_name)  # one guard per wire: keep its channels
        guard = ScpiGuard(instrument_name, dialect, clock, interceptors, existing.channels if existing else None)
        safety.guards[instrument_name] = guard
        _guard(guard, component)
        if triton:
            _loop_validators(instrument_name, interlocks, find)
        else:
            _heater_validators(heater, interlocks, find)
    safety.locks = install_locks(components.values(), interceptors)
    return safety


def _loop_validators(instrument: str, interlocks: Any, find: Find) -> None:
    """Narrow a Triton's heater range and set-point so plans are refused in dry runs."""
    if interlocks.heater_max_power_W is not None and interlocks.heater_resistance_ohm is not None:
        pid_range = find(f"{instrument}.pid_range")
        ranges = getattr(pid_range.vals, "valid_values", ()) or ()
        allowed = [r for r in ranges if (r * 1e-3) ** 2 * interlocks.heater_resistance_ohm <= interlocks.heater_max_power_W]
        if allowed:
            pid_range.add_validator(Enum(*allowed))
    if interlocks.max_temperature_K is not None:
        find(f"{instrument}.pid_setpoint").add_validator(Numbers(0.0, interlocks.max_temperature_K))


def _heater_validators(heater: str, interlocks: Any, find: Find) -> None:
    """Narrow the heater's range and set-point parameters so plans are refused in dry runs."""
    top = max_heater_range(interlocks)
    if top is not None:
        output_range = find(f"{heater}.output_range")
        mapping = getattr(output_range, "val_mapping", None) or {}
        allowed = [label for label, index in mapping.items() if int(index) <= top]
        if allowed:
            output_range.add_validator(Enum(*allowed))
    if interlocks.max_temperature_K is not None:
        find(f"{heater}.setpoint").add_validator(Numbers(0.0, interlocks.max_temperature_K))
