"""A virtual Stanford Research SR860 lock-in amplifier reading one preamp channel.

Speaks the command set QCoDeS's unmodified ``SR860`` driver uses (``FREQ``, ``SLVL``,
``SOFF``, ``PHAS``, ``HARM``, ``SCAL``, ``OFLT``, ``OFSL``, ``SYNC``, ``ENBW?``,
``IVMD``, ``IRNG``, ``ISRC``, ``IGND``, ``ICUR``, ``ICPL``, ``ADVFILT``, ``RSRC``,
``RTRG``, ``REFZ``, ``OUTP?``, ``SNAP?``, ``CDSP``, ``COFP``, ``CEXP``, ``AUXV``,
``OAUX?``, ``OVRM``) plus ``CUROVLDSTAT?``. The physics is
:mod:`labstack.sim.lockin`: the sine output excites the cell lines behind preamp
channel ``k`` (this lock-in's number), the reading is the demodulated average
over the output filter's window.

Ranges and overloads, as on the instrument: the input range (``IRNG``, 1 V .. 10 mV)
clips the input (``CUROVLDSTAT?`` bit 4); the sensitivity (``SCAL``, 1 V .. 1 nV
full scale) clips ``X``, ``Y`` and ``R`` at full scale (bits 0 and 1: ``X``/``R``
and ``Y`` output overload) as the analog outputs do. Capture buffers are not
implemented and answer ``-113``.
"""

from __future__ import annotations

import math

import numpy as np

from labstack.sim.instruments.scpi import (
    ScpiDevice,
    ScpiError,
    bad_parameter,
    out_of_range,
    parse_float,
    scpi,
)
from labstack.sim.lockin import LockinFrontEnd

#: sensitivity index -> full scale (V), SR86x ``SCAL``
SENSITIVITIES_V = [
    1.0, 500e-3, 200e-3, 100e-3, 50e-3, 20e-3, 10e-3, 5e-3, 2e-3, 1e-3,
    500e-6, 200e-6, 100e-6, 50e-6, 20e-6, 10e-6, 5e-6, 2e-6, 1e-6,
    500e-9, 200e-9, 100e-9, 50e-9, 20e-9, 10e-9, 5e-9, 2e-9, 1e-9,
]
#: time-constant index -> seconds, SR86x ``OFLT``
TIME_CONSTANTS_S = [
    1e-6, 3e-6, 10e-6, 30e-6, 100e-6, 300e-6, 1e-3, 3e-3, 10e-3, 30e-3, 100e-3, 300e-3,
    1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1e3, 3e3, 10e3, 30e3,
]
SLOPES_DB = [6, 12, 18, 24]
INPUT_RANGES_V = [1.0, 300e-3, 100e-3, 30e-3, 10e-3]
MAX_FREQUENCY_HZ = 500e3
MAX_AMPLITUDE_V = 2.0
#: what ``SNAP?`` / ``OUTP?`` index which quantity (the driver's PARAMETER_NAMES)
OUTPUTS = {0: "X", 1: "Y", 2: "R", 3: "P"}

SETTINGS = {  # simple integer settings: command -> (default, largest index)
    "HARM": (1, 99), "OFSL": (3, 3), "SYNC": (0, 1), "IVMD": (0, 1), "ISRC": (0, 1),
    "IGND": (1, 1), "ICUR": (0, 1), "ICPL": (0, 1), "ADVFILT": (0, 1), "RSRC": (0, 3),
    "RTRG": (0, 2), "REFZ": (0, 1), "IRNG": (0, 4), "SCAL": (0, 27), "OFLT": (10, 21),
}


class VirtualSR860(ScpiDevice):
    """Lock-in ``number`` (from 1) reads preamp channel ``number`` of ``frontend``."""

    def __init__(self, frontend: LockinFrontEnd, number: int) -> None:
        super().__init__()
        self.idn = f"Stanford_Research_Systems,SR860,{number:06d},1.55"
        self.frontend = frontend
        self.number = number
        self.reset()

    def reset(self) -> None:
        self.settings = {k: v[0] for k, v in SETTINGS.items()}
        self.frequency = 1000.0
        self.amplitude = 1e-6
        self.offset = 0.0
        self.phase = 0.0
        self.cdsp = [0, 1, 2, 3]
        self.cofp = [0.0, 0.0, 0.0]
        self.cexp = [0, 0, 0]
        self.aux_out = [0.0] * 4
        self.overload = 0

    # ------------------------------------------------------------- physics
    def _reading(self) -> dict[str, float]:
        tau = TIME_CONSTANTS_S[self.settings["OFLT"]]
        slope = SLOPES_DB[self.settings["OFSL"]]
        value, clipped = self.frontend.demodulate(
            self.number, self.amplitude, self.frequency, self.phase, tau, slope
        )
        overload = 0
        input_range = INPUT_RANGES_V[self.settings["IRNG"]]
        if clipped or abs(value) * math.sqrt(2) > input_range:
            overload |= 1 << 4
            scale = min(1.0, input_range / max(abs(value) * math.sqrt(2), 1e-300))
            value *= scale
        full = SENSITIVITIES_V[self.settings["SCAL"]]
        x, y = value.real, value.imag
        if abs(x) > full:
            overload |= 1 << 0
            x = math.copysign(full, x)
        if abs(y) > full:
            overload |= 1 << 1
            y = math.copysign(full, y)
        r = min(abs(value), full)
        self.overload = overload
        return {"X": x, "Y": y, "R": r, "P": float(np.degrees(np.arctan2(value.imag, value.real)))}

    @scpi(r"OUTP\?\s*(\w+)")
    def output(self, which: str) -> str:
        name = _output_name(which)
        return f"{self._reading()[name]:.9e}"

    @scpi(r"SNAP\?\s*(.+)")
    def snap(self, which: str) -> str:
        names = [_output_name(w) for w in which.split(",")]
        if not 2 <= len(names) <= 3:
            raise bad_parameter("SNAP? takes 2 or 3 outputs")
        reading = self._reading()
        return ",".join(f"{reading[n]:.9e}" for n in names)

    @scpi(r"CUROVLDSTAT\?")
    def overload_status(self) -> str:
        self._reading()
        return str(self.overload)

    @scpi(r"ENBW\?")
    def enbw(self) -> str:
        tau = TIME_CONSTANTS_S[self.settings["OFLT"]]
        factor = {6: 1 / 4, 12: 1 / 8, 18: 3 / 32, 24: 5 / 64}[SLOPES_DB[self.settings["OFSL"]]]
        return f"{factor / tau:.6e}"

    @scpi(r"ILVL\?")
    def input_level(self) -> str:
        reading = self._reading()
        fraction = reading["R"] * math.sqrt(2) / INPUT_RANGES_V[self.settings["IRNG"]]
        return str(int(np.clip(np.floor(fraction * 5), 0, 4)))

    # ----------------------------------------------------------- reference
    @scpi(r"FREQ\s+(\S+)")
    def set_frequency(self, value: str) -> None:
        f = parse_float(value)
        if not 1e-3 <= f <= MAX_FREQUENCY_HZ:
            raise out_of_range(f"frequency {f} Hz")
        self.frequency = f

    @scpi(r"FREQ\?")
    def get_frequency(self) -> str:
        return f"{self.frequency:.9g}"

    @scpi(r"SLVL\s+(\S+)")
    def set_amplitude(self, value: str) -> None:
        v = parse_float(value)
        if not 1e-9 <= v <= MAX_AMPLITUDE_V:
            raise out_of_range(f"sine amplitude {v} V")
        self.amplitude = v

    @scpi(r"SLVL\?")
    def get_amplitude(self) -> str:
        return f"{self.amplitude:.9g}"

    @scpi(r"SOFF\s+(\S+)")
    def set_offset(self, value: str) -> None:
        v = parse_float(value)
        if not -5.0 <= v <= 5.0:
            raise out_of_range(f"sine offset {v} V")
        self.offset = v

    @scpi(r"SOFF\?")
    def get_offset(self) -> str:
        return f"{self.offset:.9g}"

    @scpi(r"PHAS\s+(\S+)")
    def set_phase(self, value: str) -> None:
        p = parse_float(value)
        self.phase = (p + 180.0) % 360.0 - 180.0

    @scpi(r"PHAS\?")
    def get_phase(self) -> str:
        return f"{self.phase:.9g}"

    # ------------------------------------------------------ integer settings
    @scpi(r"(HARM|OFSL|SYNC|IVMD|ISRC|IGND|ICUR|ICPL|ADVFILT|RSRC|RTRG|REFZ|IRNG|SCAL|OFLT)\s+(\S+)")
    def set_setting(self, name: str, value: str) -> None:
        key = name.upper()
        number = parse_float(value)
        if number != int(number) or not 0 <= number <= SETTINGS[key][1]:
            raise out_of_range(f"{key} {value}")
        if key == "HARM" and number < 1:
            raise out_of_range("harmonic starts at 1")
        self.settings[key] = int(number)

    @scpi(r"(HARM|OFSL|SYNC|IVMD|ISRC|IGND|ICUR|ICPL|ADVFILT|RSRC|RTRG|REFZ|IRNG|SCAL|OFLT)\?")
    def get_setting(self, name: str) -> str:
        return str(self.settings[name.upper()])

    # ------------------------------------------------ display, expand, aux
    @scpi(r"CDSP\s*(\d)\s*,\s*(\d+)")
    def set_cdsp(self, k: str, value: str) -> None:
        self.cdsp[_index(k, 4)] = int(value)

    @scpi(r"CDSP\?\s*(\d)")
    def get_cdsp(self, k: str) -> str:
        return str(self.cdsp[_index(k, 4)])

    @scpi(r"COFP\s*(\d)\s*,\s*(\S+)")
    def set_cofp(self, k: str, value: str) -> None:
        self.cofp[_index(k, 3)] = parse_float(value)

    @scpi(r"COFP\?\s*(\d)")
    def get_cofp(self, k: str) -> str:
        return f"{self.cofp[_index(k, 3)]:.6g}"

    @scpi(r"CEXP\s*(\d)\s*,\s*(\d)")
    def set_cexp(self, k: str, value: str) -> None:
        self.cexp[_index(k, 3)] = int(value)

    @scpi(r"CEXP\?\s*(\d)")
    def get_cexp(self, k: str) -> str:
        return str(self.cexp[_index(k, 3)])

    @scpi(r"AUXV\s*(\d)\s*,\s*(\S+)")
    def set_aux(self, k: str, value: str) -> None:
        v = parse_float(value)
        if not -10.5 <= v <= 10.5:
            raise out_of_range(f"aux output {v} V")
        self.aux_out[_index(k, 4)] = v

    @scpi(r"AUXV\?\s*(\d)")
    def get_aux(self, k: str) -> str:
        return f"{self.aux_out[_index(k, 4)]:.6g}"

    @scpi(r"OAUX\?\s*(\d)")
    def aux_in(self, k: str) -> str:
        _index(k, 4)
        return "0.0"

    @scpi(r"OVRM\s*(\d)")
    def front_panel(self, value: str) -> None:
        return None

    @scpi(r"CAPTURERATEMAX\?")
    def capture_rate_max(self) -> str:
        # the SR86x's fastest capture rate follows the time constant: 1.25 MHz / 2^n
        tau = TIME_CONSTANTS_S[self.settings["OFLT"]]
        n = int(np.clip(np.ceil(np.log2(max(1.25e6 * tau / 8, 1.0))), 0, 20))
        return f"{1.25e6 / 2**n:.6e}"

    @scpi(r"CAPTURESTAT\?")
    def capture_status(self) -> str:
        return "0"

    @scpi(r"CAPTURE(?:LEN|CFG|RATE|BYTES|PROG|START|STOP|GET)\w*(?:\?)?(?:\s.*)?")
    def capture(self) -> None:
        raise ScpiError(-113, "Undefined header; capture buffers are not simulated")


def _index(text: str, count: int) -> int:
    k = int(text)
    if not 0 <= k < count:
        raise bad_parameter(f"index {k}")
    return k


def _output_name(text: str) -> str:
    key = text.strip().upper()
    names = {"X": "X", "Y": "Y", "R": "R", "THETA": "P", "THE": "P", "TH": "P"}
    if key in names:
        return names[key]
    if key.isdigit() and int(key) in OUTPUTS:
        return OUTPUTS[int(key)]
    raise bad_parameter(f"output {text!r}")
