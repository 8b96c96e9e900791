"""A virtual Oxford Instruments Triton dilution-fridge controller.

Speaks the text protocol QCoDeS's unmodified ``OxfordTriton`` driver uses over its
raw TCP socket (an ``IPInstrument``, not PyVISA): every message is one command
line ended by ``\\r\\n`` and is answered with exactly one line, reads as
``READ:<path>`` -> ``STAT:<path>:<value>``, writes as ``SET:<path>:<value>`` ->
``STAT:SET:<path>:<value>:VALID``; a path it does not know is answered
``...:INVALID`` (the error is also queued), never left unanswered, because the
driver reads a reply after every write.

What it answers from the fridge physics (:mod:`labstack.sim.cryostat`):

* thermometry channels ``T1``..``T16`` (``READ:DEV:T<n>:TEMP:SIG:TEMP``): the stages
  of :data:`THERMOMETERS`, each read by its sensor of the lab's ground truth
  (:func:`labstack.sim.thermometry.sensor_reading`: calibration-curve error,
  self-heating, reading noise), continuously measured (the Triton's bridge
  channels are not multiplexed here: no scanner, no held readings); unwired
  channels answer ``NOT_FOUND``; ``READ:SYS:DR:CHAN`` lists the aliases
  (``PT1 PT2 STIL CP MC CHIP``) the driver turns into parameters;
* the mixing-chamber heater ``H1``: manual power in microwatts
  (``SET:DEV:H1:HTR:SIG:POWR:<uW>``) while the loop is off;
* the closed temperature loop on the mixing-chamber channel (``T8``):
  ``MODE`` ON/OFF, ``TSET`` (K), ``P``/``I``/``D``, ``RANGE`` (mA full scale),
  ``RAMP:ENAB``/``RAMP:RATE`` (K/min). It acts on the same fridge as every other
  instrument and advances with the lab clock (sampled every
  :data:`~labstack.sim.cryostat.CONTROL_PERIOD_S`).

PID law (documented because units differ between controllers): the heater power
is ``I_range^2 R clip(u, 0, 1)`` with ``u = P (e + integral(e dt) / I + D de/dt)``,
the error ``e`` in kelvin of the loop channel's *reading*, ``I`` and ``D`` in
seconds (integration stops while the output is saturated). The defaults hold
any temperature the 1 mA range reaches within a few per cent in about a minute.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from labstack.sim.instruments.scpi import (
    ScpiDevice,
    ScpiError,
    bad_parameter,
    out_of_range,
    parse_float,
    scpi,
)
from labstack.sim.lab import VirtualLab
from labstack.sim.thermometry import DEFAULT_EXCITATION_RANGE, sensor_reading

#: Triton channel -> (alias the fridge software gives it, stage it measures)
THERMOMETERS = {
    1: ("PT1", "50K"),
    2: ("PT2", "4K"),
    3: ("STIL", "still"),
    4: ("CP", "cold_plate"),
    8: ("MC", "mixing_chamber"),
    9: ("CHIP", "chip"),
}
LOOP_CHANNEL = 8
#: the heater ranges the driver offers, in mA of full-scale current
HEATER_RANGES_MA = (0.316, 1.0, 3.16, 10.0, 31.6, 100.0)
PRESSURES_MBAR = {1: 1.2e-3, 2: 2.5e-1, 3: 4.1e-3, 4: 9.8e1, 5: 5.6e2, 6: 1.1e1}


@dataclass
class _Loop:
    mode: bool = False
    setpoint: float = 0.0
    target: float | None = None  # ramping towards this set-point
    P: float = 40.0
    I: float = 60.0  # noqa: E741 - the Triton's own name
    D: float = 0.0
    range_mA: float = 1.0
    ramp: bool = False
    rate_K_per_min: float = 0.1
    integral: float = 0.0
    last_error: float | None = None
    last_time: float | None = None
    fraction: float = 0.0


class VirtualTriton(ScpiDevice):
    idn = "IDN:OXFORD INSTRUMENTS:TRITON:VIRT-0001:2.4.16"
    read_termination = "\r\n"
    write_termination = "\r\n"

    def __init__(self, lab: VirtualLab) -> None:
        super().__init__()
        self.lab = lab
        self.cryostat = lab.cryostat
        self.cryostat.controller = self._heater_power
        self.reset()

    def reset(self) -> None:
        self.loop = _Loop()
        self.manual_uW = 0.0
        self.enabled = {ch: True for ch in range(1, 17)}
        self.pumps = {"TURB1": "ON", "COMP": "ON"}

    # ------------------------------------------------------------ the protocol
    def handle(self, message: str) -> bytes | None:
        """One command, one reply line (the driver reads an answer after every write)."""
        command = message.strip()
        if self.log is not None:
            self.log.append(command)
        if not command:
            return None
        try:
            answer = self._dispatch(command)
        except ScpiError as err:
            self.errors.append(err)
            answer = _invalid(command)
        except (ValueError, OverflowError, IndexError, KeyError, TypeError) as exc:
            self.errors.append(bad_parameter(f"{type(exc).__name__}: {exc}"))
            answer = _invalid(command)
        if answer is None:
            answer = f"STAT:{command}:VALID"
        return (answer if isinstance(answer, str) else answer.decode()).encode() + self.read_termination.encode()

    # ------------------------------------------------------------- physics hook
    def _reading(self, stage: str, t: float) -> float:
        """What the sensor on ``stage`` reads at lab time ``t``."""
        t_mc, t_chip = self.cryostat.history_at(t)
        temperature = {"mixing_chamber": t_mc, "chip": t_chip}.get(stage)
        if temperature is None:
            temperature = self.cryostat.truth.stage_temperatures_K[stage]
        sensor = self.lab.truth.thermometry.sensors[stage]
        noise = float(self.lab.thermometer_rng.standard_normal())
        return sensor_reading(sensor, temperature, DEFAULT_EXCITATION_RANGE, noise)

    def _heater_power(self, now: float, t_measured: float) -> float:
        loop = self.loop
        if not loop.mode:
            loop.fraction = 0.0
            return self.manual_uW * 1e-6
        if loop.target is not None and loop.last_time is not None:
            step = loop.rate_K_per_min / 60.0 * (now - loop.last_time)
            delta = loop.target - loop.setpoint
            loop.setpoint = loop.target if abs(delta) <= step else loop.setpoint + float(np.sign(delta)) * step
            if loop.setpoint == loop.target:
                loop.target = None
        error = loop.setpoint - self._reading("mixing_chamber", now)
        dt = 0.0 if loop.last_time is None else now - loop.last_time
        derivative = 0.0 if loop.last_error is None or dt <= 0 else (error - loop.last_error) / dt
        loop.integral += error * dt
        loop.last_error, loop.last_time = error, now
        integral = loop.integral / loop.I if loop.I > 0 else 0.0
        raw = loop.P * (error + integral + loop.D * derivative)
        if raw > 1.0 or raw < 0.0:  # anti-windup: stop integrating while saturated
            loop.integral -= error * dt
        loop.fraction = float(np.clip(raw, 0.0, 1.0))
        return self.heater_power_W()

    def heater_power_W(self) -> float:
        """The power the heater dissipates now."""
        if not self.loop.mode:
            return self.manual_uW * 1e-6
        amps = self.loop.range_mA * 1e-3
        return amps**2 * self.cryostat.truth.heater_resistance_ohm * self.loop.fraction

    # ------------------------------------------------------------------ system
    @scpi(r"READ:SYS:TIME")
    def sys_time(self) -> str:
        return f"STAT:SYS:TIME:{self.lab.clock.utcnow():%H:%M:%S}"

    @scpi(r"READ:SYS:DR:ACTN")
    def action(self) -> str:
        return "STAT:SYS:DR:ACTN:NONE"

    @scpi(r"READ:SYS:DR:STATUS")
    def status(self) -> str:
        return "STAT:SYS:DR:STATUS:Condensing and circulating"

    @scpi(r"READ:SYS:VRM:(.+)")
    def magnet(self, path: str) -> str:
        return f"STAT:SYS:VRM:{path}:INVALID"  # no magnet behind this fridge

    @scpi(r"READ:SYS:DR:CHAN")
    def channels(self) -> str:
        return "STAT:SYS:DR:CHAN:" + ":".join(alias for alias, _ in THERMOMETERS.values())

    @scpi(r"READ:SYS:DR:CHAN:(\w+)")
    def channel_of(self, alias: str) -> str:
        for ch, (name, _) in THERMOMETERS.items():
            if name == alias.upper():
                return f"STAT:SYS:DR:CHAN:{name}:T{ch}"
        return f"STAT:SYS:DR:CHAN:{alias}:NONE"

    # ------------------------------------------------------------- thermometry
    @scpi(r"READ:DEV:T(\d+):TEMP:SIG:TEMP")
    def temperature(self, ch: str) -> str:
        c = _channel(ch)
        if c not in THERMOMETERS or not self.enabled[c]:
            return f"STAT:DEV:T{c}:TEMP:SIG:TEMP:NOT_FOUND"
        value = self._reading(THERMOMETERS[c][1], self.lab.clock.now())
        return f"STAT:DEV:T{c}:TEMP:SIG:TEMP:{value:.7f}K"

    @scpi(r"READ:DEV:T(\d+):TEMP:MEAS:ENAB")
    def get_enabled(self, ch: str) -> str:
        c = _channel(ch)  # every bridge channel has the setting, wired or not
        return f"STAT:DEV:T{c}:TEMP:MEAS:ENAB:{'ON' if self.enabled[c] else 'OFF'}"

    @scpi(r"SET:DEV:T(\d+):TEMP:MEAS:ENAB:(ON|OFF)")
    def set_enabled(self, ch: str, state: str) -> None:
        self.enabled[_channel(ch)] = state.upper() == "ON"

    @scpi(r"READ:DEV:P(\d):PRES:SIG:PRES")
    def pressure(self, ch: str) -> str:
        c = int(ch)
        if c not in PRESSURES_MBAR:
            return f"STAT:DEV:P{c}:PRES:SIG:PRES:NOT_FOUND"
        return f"STAT:DEV:P{c}:PRES:SIG:PRES:{PRESSURES_MBAR[c]:.6f}mB"

    @scpi(r"READ:DEV:TURB1:PUMP:SIG:SPD")
    def turbo_speed(self) -> str:
        return f"STAT:DEV:TURB1:PUMP:SIG:SPD:{820.0 if self.pumps['TURB1'] == 'ON' else 0.0:.1f}Hz"

    @scpi(r"READ:DEV:(TURB1|COMP):PUMP:SIG:STATE")
    def get_pump(self, pump: str) -> str:
        return f"STAT:DEV:{pump.upper()}:PUMP:SIG:STATE:{self.pumps[pump.upper()]}"

    @scpi(r"SET:DEV:(TURB1|COMP):PUMP:SIG:STATE:(ON|OFF)")
    def set_pump(self, pump: str, state: str) -> None:
        self.pumps[pump.upper()] = state.upper()

    # ------------------------------------------------------------------ heater
    @scpi(r"READ:DEV:H1:HTR:SIG:POWR")
    def get_power(self) -> str:
        return f"STAT:DEV:H1:HTR:SIG:POWR:{self.heater_power_W() * 1e6:.4f}uW"

    @scpi(r"SET:DEV:H1:HTR:SIG:POWR:(.+)")
    def set_power(self, value: str) -> None:
        power = parse_float(value)
        if power < 0:
            raise out_of_range(f"heater power {power} uW")
        self.manual_uW = power

    # -------------------------------------------------------------------- loop
    @scpi(r"READ:DEV:T(\d+):TEMP:LOOP:(MODE|TSET|P|I|D|RANGE|RAMP:ENAB|RAMP:RATE)")
    def get_loop(self, ch: str, key: str) -> str:
        c = _channel(ch)
        prefix = f"STAT:DEV:T{c}:TEMP:LOOP:{key.upper()}"
        if c != LOOP_CHANNEL:
            return f"{prefix}:NOT_FOUND"
        loop = self.loop
        value = {
            "MODE": "ON" if loop.mode else "OFF",
            "TSET": f"{loop.setpoint if loop.target is None else loop.target:.6f}K",
            "P": f"{loop.P:.3f}",
            "I": f"{loop.I:.3f}",
            "D": f"{loop.D:.3f}",
            "RANGE": f"{loop.range_mA:.3f}mA",
            "RAMP:ENAB": "ON" if loop.ramp else "OFF",
            "RAMP:RATE": f"{loop.rate_K_per_min:.4f}K/m",
        }[key.upper()]
        return f"{prefix}:{value}"

    @scpi(r"SET:DEV:T(\d+):TEMP:LOOP:(MODE|TSET|P|I|D|RANGE|RAMP:ENAB|RAMP:RATE):([^:]+)")
    def set_loop(self, ch: str, key: str, text: str) -> None:
        if _channel(ch) != LOOP_CHANNEL:
            raise bad_parameter(f"T{ch} has no temperature loop (T{LOOP_CHANNEL} has)")
        loop, key = self.loop, key.upper()
        if key in ("MODE", "RAMP:ENAB"):
            if text.upper() not in ("ON", "OFF"):
                raise bad_parameter(f"{key} {text!r}")
            on = text.upper() == "ON"
            if key == "RAMP:ENAB":
                loop.ramp = on
            elif on != loop.mode:
                loop.mode = on
                loop.integral, loop.last_error, loop.last_time = 0.0, None, None
            return
        value = parse_float(text)
        if key == "TSET":
            if not 0.0 <= value <= 2.0:
                raise out_of_range(f"set-point {value} K")
            if loop.ramp and loop.rate_K_per_min > 0 and loop.mode:
                loop.target = value
            else:
                loop.setpoint, loop.target = value, None
        elif key == "RANGE":
            match = [r for r in HEATER_RANGES_MA if abs(r - value) <= 1e-6 * r]
            if not match:
                raise out_of_range(f"heater range {value} mA")
            loop.range_mA = match[0]
        elif key == "RAMP:RATE":
            if value < 0:
                raise out_of_range(f"ramp rate {value} K/min")
            loop.rate_K_per_min = value
        else:
            if not 0.0 <= value <= 1e3:
                raise out_of_range(f"{key} {value}")
            setattr(loop, key, value)

    @scpi(r"SET:DEV:T(\d+):TEMP:LOOP:HTR:H1")
    def set_loop_heater(self, ch: str) -> None:
        if _channel(ch) != LOOP_CHANNEL:
            raise bad_parameter(f"T{ch} has no temperature loop")


def _channel(ch: str) -> int:
    c = int(ch)
    if not 1 <= c <= 16:
        raise bad_parameter(f"no channel T{c}")
    return c


def _invalid(command: str) -> str:
    """The Triton's reply to a command it cannot carry out."""
    path = re.sub(r"^(READ|SET):", lambda m: "" if m.group(1) == "READ" else "SET:", command)
    return f"STAT:{path}:INVALID"
