"""A virtual QDevil QDAC-II: 24 DC channels speaking its SCPI dialect.

Enough of the command set for the unmodified ``QDac2`` driver of
qcodes_contrib_drivers to connect, set and read DC voltages, slew rates, ranges
and filters. Sweeps, lists, AWG and triggers are not implemented here and answer
``-113,"Undefined header"``, as a real instrument does for a command it lacks.
A voltage outside the output range is refused with ``-222`` and never reaches
the chip.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from labstack.sim.instruments.scpi import (
    ScpiDevice,
    bad_parameter,
    out_of_range,
    parse_float,
    scpi,
)

N_CHANNELS = 24
RANGES = {"low": 2.0, "high": 10.0}
FILTERS = ("dc", "med", "high")

CH = r"(\d+)"
SOUR = r"SOUR(?:CE)?" + CH


OnVoltage = Callable[[int, float, float, str], None]
"""(channel, volts, slew V/s, filter name): called whenever an output is commanded."""


class VirtualQDac2(ScpiDevice):
    """``on_voltage(channel, volts, slew, filter)`` is called whenever an output is commanded.

    The output itself (quantisation, slew, filter, the bias line) is the lab's physics,
    :mod:`labstack.sim.dac`; this adapter keeps each channel's settings and reports the
    commanded value, as the instrument does.
    """

    idn = "QDevil, QDAC-II, 0, 13-1.21"

    def __init__(self, on_voltage: OnVoltage, serial: int = 0) -> None:
        super().__init__()
        self.idn = f"QDevil, QDAC-II, {serial:05d}, 13-1.21"
        self._on_voltage = on_voltage
        self.reset()

    def reset(self) -> None:
        self.volts = np.zeros(N_CHANNELS + 1)
        self.last_volts = np.zeros(N_CHANNELS + 1)
        self.slew = np.full(N_CHANNELS + 1, 2e7)
        self.range = ["high"] * (N_CHANNELS + 1)
        self.filter = ["high"] * (N_CHANNELS + 1)
        self.mode = ["FIX"] * (N_CHANNELS + 1)
        self.trig_volts = np.zeros(N_CHANNELS + 1)
        self.sense = {
            k: np.full(N_CHANNELS + 1, v)
            for k, v in {"aper": 1e-3, "nplc": 1.0, "del": 0.0, "coun": 1.0}.items()
        }
        self.sense_range = ["low"] * (N_CHANNELS + 1)
        self.triggers = {k: {"widt": 1e-6, "pol": "norm", "del": 0.0} for k in range(1, 6)}
        for ch in range(1, N_CHANNELS + 1):
            self._on_voltage(ch, 0.0, self.slew[ch], self.filter[ch])

    @staticmethod
    def _channel(text: str) -> int:
        ch = int(text)
        if not 1 <= ch <= N_CHANNELS:
            raise bad_parameter(f"no channel {ch}")
        return ch

    # ----------------------------------------------------------------- voltage
    @scpi(SOUR + r":VOLT(?:AGE)? (\S+)")
    def set_voltage(self, ch: str, value: str) -> None:
        c = self._channel(ch)
        v = parse_float(value)
        limit = RANGES[self.range[c]]
        if not -limit <= v <= limit:
            raise out_of_range(f"ch{c} {v} V outside +-{limit} V ({self.range[c]} range)")
        self.last_volts[c] = self.volts[c]
        self.volts[c] = v
        self._on_voltage(c, v, self.slew[c], self.filter[c])

    @scpi(SOUR + r":VOLT(?:AGE)?\?")
    def get_voltage(self, ch: str) -> str:
        return f"{self.volts[self._channel(ch)]:.9g}"

    @scpi(SOUR + r":VOLT(?:AGE)?:LAST\?")
    def get_last_voltage(self, ch: str) -> str:
        return f"{self.last_volts[self._channel(ch)]:.9g}"

    @scpi(SOUR + r":VOLT(?:AGE)?:TRIG(?:GERED)? (\S+)")
    def set_trig_voltage(self, ch: str, value: str) -> None:
        self.trig_volts[self._channel(ch)] = parse_float(value)

    @scpi(SOUR + r":VOLT(?:AGE)?:TRIG(?:GERED)?\?")
    def get_trig_voltage(self, ch: str) -> str:
        return f"{self.trig_volts[self._channel(ch)]:.9g}"

    @scpi(SOUR + r":VOLT(?:AGE)?:SLEW (\S+)")
    def set_slew(self, ch: str, value: str) -> None:
        v = parse_float(value)
        if not 0.01 <= v <= 2e7:
            raise out_of_range(f"slew {v} V/s")
        self.slew[self._channel(ch)] = v

    @scpi(SOUR + r":VOLT(?:AGE)?:SLEW\?")
    def get_slew(self, ch: str) -> str:
        return f"{self.slew[self._channel(ch)]:.9g}"

    @scpi(SOUR + r":VOLT(?:AGE)?:MODE (\S+)")
    def set_mode(self, ch: str, value: str) -> None:
        mode = value.upper()[:3]
        if mode not in ("FIX", "LIS", "SWE"):
            raise bad_parameter(value)
        if mode != "FIX":
            raise out_of_range(f"{value} mode is not available on the virtual QDAC-II")
        self.mode[self._channel(ch)] = "FIX"

    @scpi(SOUR + r":VOLT(?:AGE)?:MODE\?")
    def get_mode(self, ch: str) -> str:
        return self.mode[self._channel(ch)]

    # ------------------------------------------------------- range and filter
    @scpi(SOUR + r":RANG(?:E)? (\S+)")
    def set_range(self, ch: str, value: str) -> None:
        c = self._channel(ch)
        name = value.lower()
        if name not in RANGES:
            raise bad_parameter(value)
        if abs(self.volts[c]) > RANGES[name]:
            raise out_of_range(f"ch{c} at {self.volts[c]} V does not fit the {name} range")
        self.range[c] = name

    @scpi(SOUR + r":RANG(?:E)?\?")
    def get_range(self, ch: str) -> str:
        return self.range[self._channel(ch)]

    @scpi(SOUR + r":RANG(?:E)?:(LOW|HIGH):(MIN|MAX)\?")
    def get_range_limit(self, ch: str, which: str, end: str) -> str:
        self._channel(ch)
        limit = RANGES[which.lower()]
        return f"{-limit if end.upper() == 'MIN' else limit:.9g}"

    @scpi(SOUR + r":FILT(?:ER)? (\S+)")
    def set_filter(self, ch: str, value: str) -> None:
        if value.lower() not in FILTERS:
            raise bad_parameter(value)
        self.filter[self._channel(ch)] = value.lower()

    @scpi(SOUR + r":FILT(?:ER)?\?")
    def get_filter(self, ch: str) -> str:
        return self.filter[self._channel(ch)]

    # --------------------------------------------------------- aborts, sense
    @scpi(SOUR + r":(?:DC|ALL):(?:INIT|ABOR)")
    def channel_abort(self, ch: str) -> None:
        self._channel(ch)

    @scpi(r"ABOR(?:T)?")
    def abort(self) -> None:
        return None

    @scpi(r"SENS(?:E)?" + CH + r":(APER|NPLC|DEL|COUN) (\S+)")
    def set_sense(self, ch: str, what: str, value: str) -> None:
        v = parse_float(value)
        if not np.isfinite(v) or v < 0 or (what.upper() == "COUN" and v != int(v)):
            raise out_of_range(f"sense {what} {value}")
        self.sense[what.lower()][self._channel(ch)] = v

    @scpi(r"SENS(?:E)?" + CH + r":(APER|NPLC|DEL|COUN)\?")
    def get_sense(self, ch: str, what: str) -> str:
        value = self.sense[what.lower()][self._channel(ch)]
        return f"{int(value)}" if what.upper() == "COUN" else f"{value:.9g}"

    @scpi(r"SENS(?:E)?" + CH + r":RANG (\S+)")
    def set_sense_range(self, ch: str, value: str) -> None:
        if value.lower() not in ("low", "high"):
            raise bad_parameter(value)
        self.sense_range[self._channel(ch)] = value.lower()

    @scpi(r"SENS(?:E)?" + CH + r":RANG\?")
    def get_sense_range(self, ch: str) -> str:
        return self.sense_range[self._channel(ch)]

    @scpi(r"SENS(?:E)?" + CH + r":(NCL|DATA:POIN)\?")
    def get_sense_counts(self, ch: str, what: str) -> str:
        self._channel(ch)
        return "0"

    @scpi(r"SENS(?:E)?" + CH + r":DATA:LAST\?")
    def get_sense_last(self, ch: str) -> str:
        self._channel(ch)
        return "1.2e-11"

    @scpi(r"OUTP(?:UT)?:TRIG(\d):(WIDT|POL|DEL)\?")
    def get_trigger(self, k: str, what: str) -> str:
        value = self._trigger(k)[what.lower()]
        return value if isinstance(value, str) else f"{value:.9g}"

    @scpi(r"OUTP(?:UT)?:TRIG(\d):(WIDT|POL|DEL) (\S+)")
    def set_trigger(self, k: str, what: str, value: str) -> None:
        key = what.lower()
        self._trigger(k)[key] = value.lower() if key == "pol" else parse_float(value)

    def _trigger(self, k: str) -> dict[str, float | str]:
        if int(k) not in self.triggers:
            raise bad_parameter(f"no external trigger {k}")
        return self.triggers[int(k)]

    @scpi(r"(?:READ|FETC)" + CH + r"\?")
    def read_current(self, ch: str) -> str:
        self._channel(ch)
        return "1.2e-11"  # leakage into a cold, high-impedance bias line

    @scpi(r"READ\? \(@([\d,:]+)\)")
    def read_currents(self, channels: str) -> str:
        return ",".join("1.2e-11" for _ in _channel_list(channels))

    @scpi(r"TRAC(?:E)?:CAT(?:ALOG)?\?")
    def trace_catalog(self) -> str:
        return ""

    @scpi(r"SYST(?:EM)?:COMM(?:UNICATE)?:LAN:MAC\?")
    def mac(self) -> str:
        return '"00-00-00-00-00-00"'


def _channel_list(text: str) -> list[int]:
    out: list[int] = []
    try:
        for part in text.split(","):
            if ":" in part:
                a, b = part.split(":")
                out.extend(range(int(a), int(b) + 1))
            elif part:
                out.append(int(part))
    except ValueError:
        raise bad_parameter(f"channel list {text!r}") from None
    if any(not 1 <= c <= N_CHANNELS for c in out):
        raise bad_parameter(f"channel list {text!r} names a channel outside 1..{N_CHANNELS}")
    return out
