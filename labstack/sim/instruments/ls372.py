"""A virtual Lake Shore Model 372 AC resistance bridge and temperature controller.

Speaks the command set that QCoDeS's unmodified ``LakeshoreModel372`` driver uses
(``KRDG?``, ``SRDG?``, ``RDGST?``, ``INSET``, ``INTYPE``, ``OUTMODE``, ``PID``,
``RANGE``, ``SETP``, ``HTR?``, ``RAMP``, ``HTRSET``, ``TLIMIT``, ``INNAME``) plus
``MOUT`` for open-loop heater output. Thermometers on its channels read the
cryostat's stages; the sample heater (output 0) heats the mixing chamber, in open
loop (mode 2, ``MOUT`` percent) or closed loop (mode 5, PID on the control
input with a setpoint, optionally ramped).

PID law (documented because real units differ between Lake Shore models):
``output % = clip(100 * P * (e + I * integral(e dt) + D * de/dt), 0, 100)`` with
the error ``e`` in kelvin and time in seconds.

On a realistic lab the readings are those of :mod:`labstack.sim.thermometry`: one
scanned channel measured at a time (``SCAN <ch>,<autoscan>`` / ``SCAN?``, and
``INSET``'s enabled / dwell / pause, which the driver's ``enabled``, ``dwell`` and
``pause`` parameters set), each sensor with its calibration-curve error,
self-heating (which ``INTYPE``'s excitation range, the driver's
``excitation_range_number``, changes) and noise; a channel never measured reads 0
with status 128 (T. UNDER). The closed loop acts on its input channel's *reading*
(held while the scanner is elsewhere), as the instrument's does. At power-up the
scanner autoscans the mixing-chamber and chip channels, dwell 10 s, pause 3 s.
"""

from __future__ import annotations

import numpy as np

from labstack.sim.instruments.scpi import (
    ScpiDevice,
    bad_parameter,
    out_of_range,
    parse_float,
    scpi,
)
from labstack.sim.lab import VirtualLab
from labstack.sim.thermometry import Scanner, sensor_reading

N_INPUTS = 16
#: which stage each bridge channel measures; the rest are not wired
THERMOMETERS = {1: "50K", 2: "4K", 3: "still", 5: "cold_plate", 6: "mixing_chamber", 8: "chip"}
#: sample-heater range currents in amperes, by RANGE index
HEATER_RANGES_A = {0: 0.0, 1: 31.6e-6, 2: 100e-6, 3: 316e-6, 4: 1e-3, 5: 3.16e-3, 6: 10e-3, 7: 31.6e-3, 8: 100e-3}
MODES = {0: "off", 1: "monitor_out", 2: "open_loop", 3: "zone", 4: "still", 5: "closed_loop", 6: "warm_up"}

N = r"\s*(\d+)"
SEP = r"\s*,\s*"
NUM = r"([-+0-9.eE]+)"


def ruox_resistance(temperature_K: float) -> float:
    """A RuOx-like calibration curve: R = R0 exp(sqrt(T0 / T)), 1 kOhm at a few kelvin."""
    return float(1000.0 * np.exp(np.sqrt(0.5 / max(temperature_K, 1e-4))) / np.exp(np.sqrt(0.5 / 4.0)))


class _Output:
    def __init__(self) -> None:
        self.mode = 0
        self.input = 6
        self.powerup = 0
        self.polarity = 0
        self.use_filter = 0
        self.delay = 1
        self.P, self.I, self.D = 10.0, 20.0, 0.0
        self.range = 0
        self.setpoint = 0.0
        self.ramp_enabled = 0
        self.ramp_rate = 0.0  # K/min
        self.manual = 0.0
        self.htrset = [0, 2, 0, 0.1, 1]  # current output, 50 ohm setting, user max 0.1 A, show current
        self.integral = 0.0
        self.last_error: float | None = None
        self.last_time: float | None = None
        self.ramp_target: float | None = None
        self.percent = 0.0


class VirtualLakeshore372(ScpiDevice):
    idn = "LSCI,MODEL372,LSA0001,1.4"
    read_termination = "\r\n"
    write_termination = "\r\n"

    def __init__(self, lab: VirtualLab) -> None:
        super().__init__()
        self.lab = lab
        self.cryostat = lab.cryostat
        self.realistic = lab.truth.thermometry.scanner
        self.cryostat.controller = self._heater_power
        self.reset()

    def reset(self) -> None:
        self.outputs = {i: _Output() for i in range(3)}
        self.names = {ch: THERMOMETERS.get(ch, f"Channel {ch}") for ch in range(1, N_INPUTS + 1)}
        scanned = {6, 8} if self.realistic else set(THERMOMETERS)
        self.inset = {ch: [1 if ch in scanned else 0, 10, 3, 1, 1] for ch in range(1, N_INPUTS + 1)}
        self.intype = {ch: [1, 7, 0, 15, 0, 1] for ch in range(1, N_INPUTS + 1)}
        self.tlimit = {ch: 0.0 for ch in range(1, N_INPUTS + 1)}
        self.scanner: Scanner | None = None
        if self.realistic:
            self.scanner = Scanner(
                self._sensor_at,
                {ch: bool(v[0]) for ch, v in self.inset.items()},
                {ch: float(v[2]) for ch, v in self.inset.items()},
                {ch: float(v[1]) for ch, v in self.inset.items()},
                channel=6,
                autoscan=True,
            )

    def _sensor_at(self, ch: int, t: float) -> float:
        """A realistic sensor's reading of its stage at lab time ``t``."""
        stage = THERMOMETERS.get(ch)
        if stage is None:
            return 0.0
        t_mc, t_chip = self.cryostat.history_at(t)
        temperature = {"mixing_chamber": t_mc, "chip": t_chip}.get(stage)
        if temperature is None:
            temperature = self.cryostat.truth.stage_temperatures_K[stage]
        sensor = self.lab.truth.thermometry.sensors[stage]
        return sensor_reading(sensor, temperature, self.intype[ch][1], float(self.lab.thermometer_rng.standard_normal()))

    # ------------------------------------------------------------- physics hook
    def _heater_power(self, now: float, t_measured: float) -> float:
        out = self.outputs[0]
        out.percent = self._output_percent(out, now, t_measured)
        current = HEATER_RANGES_A[out.range] * out.percent / 100.0
        return current**2 * self.cryostat.truth.heater_resistance_ohm

    def _output_percent(self, out: _Output, now: float, t_measured: float) -> float:
        if out.range == 0 or out.mode == 0:
            return 0.0
        if out.mode == 2:
            return out.manual
        if out.mode != 5:
            return 0.0
        if out.ramp_target is not None and out.last_time is not None:
            step = out.ramp_rate / 60.0 * (now - out.last_time)
            delta = out.ramp_target - out.setpoint
            out.setpoint = out.ramp_target if abs(delta) <= step else out.setpoint + np.sign(delta) * step
            if out.setpoint == out.ramp_target:
                out.ramp_target = None
        if self.scanner is not None:  # the loop sees its input's reading, held or live
            t_input = self.scanner.reading(out.input, now)[0] if 1 <= out.input <= N_INPUTS else 0.0
        else:
            t_input = t_measured if out.input == 6 else self._temperature(out.input)
        error = out.setpoint - t_input
        dt = 0.0 if out.last_time is None else now - out.last_time
        derivative = 0.0 if out.last_error is None or dt <= 0 else (error - out.last_error) / dt
        out.integral += error * dt
        out.last_error, out.last_time = error, now
        raw = 100.0 * out.P * (error + out.I * out.integral + out.D * derivative)
        if raw > 100.0 or raw < 0.0:  # anti-windup: stop integrating when saturated
            out.integral -= error * dt
        return float(np.clip(raw, 0.0, 100.0))

    def _temperature(self, ch: int) -> float:
        if self.scanner is not None:
            return self.scanner.reading(ch, self.lab.clock.now())[0]
        stage = THERMOMETERS.get(ch)
        if stage is None or not self.inset[ch][0]:
            return 0.0
        return self.cryostat.thermometer(stage)

    def _status(self, ch: int) -> int:
        """RDGST? bits: 128 (T. UNDER) for a channel with no valid reading."""
        if self.scanner is not None:
            return 0 if self.scanner.reading(ch, self.lab.clock.now())[1] else 128
        return 0

    @staticmethod
    def _input(ch: str) -> int:
        text = ch.strip().upper()
        if text != "A" and not text.isdigit():
            raise bad_parameter(f"input {ch!r}")
        c = 6 if text == "A" else int(text)
        if not 1 <= c <= N_INPUTS:
            raise bad_parameter(f"no input channel {c}")
        return c

    def _output(self, o: str) -> _Output:
        index = int(o)
        if index not in self.outputs:
            raise bad_parameter(f"no output {index}")
        return self.outputs[index]

    # ---------------------------------------------------------------- readings
    @scpi(r"KRDG\?\s*([A\d]+)")
    def kelvin(self, ch: str) -> str:
        return f"{self._temperature(self._input(ch)):+.6E}"

    @scpi(r"SRDG\?\s*([A\d]+)")
    def sensor(self, ch: str) -> str:
        t = self._temperature(self._input(ch))
        return f"{ruox_resistance(t) if t > 0 else 0.0:+.6E}"

    @scpi(r"RDGST\?\s*([A\d]+)")
    def status(self, ch: str) -> str:
        return f"{self._status(self._input(ch)):03d}"

    @scpi(r"SCAN\?")
    def get_scan(self) -> str:
        if self.scanner is None:
            return "06,0"
        self.scanner.update(self.lab.clock.now())
        return f"{self.scanner.channel:02d},{int(self.scanner.autoscan)}"

    @scpi(r"SCAN" + N + SEP + r"([01])")
    def set_scan(self, ch: str, autoscan: str) -> None:
        c = self._input(ch)
        if self.scanner is not None:
            self.scanner.select(c, autoscan == "1", self.lab.clock.now())

    @scpi(r"INNAME\?\s*(\d+)")
    def get_name(self, ch: str) -> str:
        return self.names[self._input(ch)]

    @scpi(r"INNAME" + N + SEP + r"\"?([^\"]*)\"?")
    def set_name(self, ch: str, name: str) -> None:
        self.names[self._input(ch)] = name[:15]

    @scpi(r"TLIMIT\?\s*(\d+)")
    def get_tlimit(self, ch: str) -> str:
        return f"{self.tlimit[self._input(ch)]:+.4E}"

    @scpi(r"TLIMIT" + N + SEP + NUM)
    def set_tlimit(self, ch: str, value: str) -> None:
        self.tlimit[self._input(ch)] = parse_float(value)

    @scpi(r"INSET\?\s*(\d+)")
    def get_inset(self, ch: str) -> str:
        return ",".join(str(v) for v in self.inset[self._input(ch)])

    @scpi(r"INSET" + N + SEP + r"(.+)")
    def set_inset(self, ch: str, values: str) -> None:
        c = self._input(ch)
        v = _ints(values, 5)
        if not (1 <= v[1] <= 200 and 3 <= v[2] <= 200):
            raise out_of_range(f"dwell {v[1]} s (1..200) or pause {v[2]} s (3..200)")
        self.inset[c] = v
        if self.scanner is not None:
            self.scanner.configure(c, bool(v[0]), float(v[2]), float(v[1]), self.lab.clock.now())

    @scpi(r"INTYPE\?\s*(\d+)")
    def get_intype(self, ch: str) -> str:
        return ",".join(str(v) for v in self.intype[self._input(ch)])

    @scpi(r"INTYPE" + N + SEP + r"(.+)")
    def set_intype(self, ch: str, values: str) -> None:
        self.intype[self._input(ch)] = _ints(values, 6)

    # ------------------------------------------------------------------ heaters
    @scpi(r"OUTMODE\?\s*(\d+)")
    def get_outmode(self, o: str) -> str:
        out = self._output(o)
        return f"{out.mode},{out.input},{out.powerup},{out.polarity},{out.use_filter},{out.delay}"

    @scpi(r"OUTMODE" + N + SEP + r"(.+)")
    def set_outmode(self, o: str, values: str) -> None:
        out = self._output(o)
        v = _ints(values, 6)
        if v[0] not in MODES:
            raise bad_parameter(f"mode {v[0]}")
        out.mode, out.input, out.powerup, out.polarity, out.use_filter, out.delay = v
        out.integral, out.last_error = 0.0, None

    @scpi(r"PID\?\s*(\d+)")
    def get_pid(self, o: str) -> str:
        out = self._output(o)
        return f"{out.P:+.1f},{out.I:+.1f},{out.D:+.0f}"

    @scpi(r"PID" + N + SEP + NUM + SEP + NUM + SEP + NUM)
    def set_pid(self, o: str, p: str, i: str, d: str) -> None:
        out = self._output(o)
        values = parse_float(p), parse_float(i), parse_float(d)
        if not (0 <= values[0] <= 1000 and 0 <= values[1] <= 10000 and 0 <= values[2] <= 2500):
            raise out_of_range("PID")
        out.P, out.I, out.D = values

    @scpi(r"RANGE\?\s*(\d+)")
    def get_range(self, o: str) -> str:
        return str(self._output(o).range)

    @scpi(r"RANGE" + N + SEP + r"(\d+)")
    def set_range(self, o: str, r: str) -> None:
        index = int(r)
        if index not in HEATER_RANGES_A:
            raise out_of_range(f"heater range {index}")
        self._output(o).range = index

    @scpi(r"HTR\?\s*(\d+)")
    def get_heater(self, o: str) -> str:
        out = self._output(o)
        return f"{out.percent if out.range and out.mode else 0.005:+.4E}"

    @scpi(r"HTRSET\?\s*(\d+)")
    def get_htrset(self, o: str) -> str:
        h = self._output(o).htrset
        return f"{h[0]},{int(h[1])},{h[2]},{h[3]:g},{h[4]}"

    @scpi(r"HTRSET" + N + SEP + r"(.+)")
    def set_htrset(self, o: str, values: str) -> None:
        parts = [p.strip() for p in values.split(",")]
        if len(parts) != 5:
            raise bad_parameter("HTRSET needs 5 values")
        self._output(o).htrset = [int(parts[0]), parse_float(parts[1]), int(parts[2]), parse_float(parts[3]), int(parts[4])]

    @scpi(r"MOUT\?\s*(\d+)")
    def get_manual(self, o: str) -> str:
        return f"{self._output(o).manual:+.4E}"

    @scpi(r"MOUT" + N + SEP + NUM)
    def set_manual(self, o: str, value: str) -> None:
        v = parse_float(value)
        if not 0 <= v <= 100:
            raise out_of_range(f"manual output {v} %")
        self._output(o).manual = v

    @scpi(r"SETP\?\s*(\d+)")
    def get_setpoint(self, o: str) -> str:
        return f"{self._output(o).setpoint:+.6E}"

    @scpi(r"SETP" + N + SEP + NUM)
    def set_setpoint(self, o: str, value: str) -> None:
        out = self._output(o)
        v = parse_float(value)
        if not 0 <= v <= 400:
            raise out_of_range(f"setpoint {v} K")
        if out.ramp_enabled and out.ramp_rate > 0:
            out.ramp_target = v
        else:
            out.setpoint = v

    @scpi(r"RAMP\?\s*(\d+)")
    def get_ramp(self, o: str) -> str:
        out = self._output(o)
        return f"{out.ramp_enabled},{out.ramp_rate:g}"

    @scpi(r"RAMP" + N + SEP + r"(\d)" + SEP + NUM)
    def set_ramp(self, o: str, enabled: str, rate: str) -> None:
        out = self._output(o)
        out.ramp_enabled, out.ramp_rate = int(enabled), parse_float(rate)

    @scpi(r"RAMPST\?\s*(\d+)")
    def get_ramp_status(self, o: str) -> str:
        return "1" if self._output(o).ramp_target is not None else "0"


def _ints(text: str, count: int) -> list[int]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != count:
        raise bad_parameter(f"expected {count} values, got {len(parts)}")
    try:
        return [int(float(p)) for p in parts]
    except ValueError:
        raise bad_parameter(text) from None
