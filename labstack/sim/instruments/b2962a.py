"""A virtual Keysight B2962A two-channel low-noise power source driving coupler lines.

Speaks what QCoDeS's unmodified ``KeysightB2962A`` driver sends: ``SOURce<n>:VOLT``,
``SOURce<n>:CURR``, ``:SOURce<n>:FUNCtion:MODE``, ``OUTPut<n>``, ``SENSe<n>:VOLT:PROTection``,
``SENSe<n>:CURR:PROTection``, ``:SENSe<n>:REMote`` and ``MEASure:VOLT|CURR|RES? (@n)``.
An output reaches its line only while it is on (``OUTP<n> 1``) and in voltage mode;
off, the line sits at 0 V. A set-point beyond the 42 V range, or a voltage whose
current into the line would exceed the compliance, is refused with ``-222``.

Source ``k`` (``smu<k>``) drives coupler lines ``2(k-1)`` and ``2(k-1)+1`` through its
channels 1 and 2 (:meth:`labstack.sim.lab.VirtualLab.set_coupler`).
"""

from __future__ import annotations

from collections.abc import Callable

from labstack.sim.instruments.scpi import ScpiDevice, bad_parameter, out_of_range, parse_float, scpi

MAX_V = 42.0
#: a cold coupler line: a high-impedance load (ohm), so the measured current is tiny
LINE_RESISTANCE_OHM = 1e9
CH = r"(\d)"


class VirtualB2962A(ScpiDevice):
    """``on_voltage(channel, volts)`` is called whenever what a line sees changes."""

    def __init__(self, on_voltage: Callable[[int, float], None], serial: int = 0) -> None:
        super().__init__()
        self.idn = f"Keysight Technologies,B2962A,MY{serial:08d},3.4.2011.5100"
        self._on_voltage = on_voltage
        self.reset()

    def reset(self) -> None:
        self.volts = {1: 0.0, 2: 0.0}
        self.amps = {1: 0.0, 2: 0.0}
        self.output = {1: 0, 2: 0}
        self.mode = {1: "VOLT", 2: "VOLT"}
        self.volt_prot = {1: 42.0, 2: 42.0}
        self.curr_prot = {1: 1e-4, 2: 1e-4}
        self.remote = {1: 0, 2: 0}
        for ch in (1, 2):
            self._apply(ch)

    def _channel(self, text: str) -> int:
        ch = int(text)
        if ch not in (1, 2):
            raise bad_parameter(f"no channel {ch}")
        return ch

    def _line_voltage(self, ch: int) -> float:
        return self.volts[ch] if self.output[ch] and self.mode[ch] == "VOLT" else 0.0

    def _apply(self, ch: int) -> None:
        self._on_voltage(ch, self._line_voltage(ch))

    # ---------------------------------------------------------------- source
    @scpi(r":?SOUR(?:CE)?" + CH + r":VOLT(?:AGE)?(?::LEV(?:EL)?)?(?::IMM(?:EDIATE)?)?\s+(\S+)")
    def set_voltage(self, ch: str, value: str) -> None:
        c = self._channel(ch)
        v = parse_float(value)
        if not -MAX_V <= v <= MAX_V:
            raise out_of_range(f"ch{c} {v} V outside +-{MAX_V} V")
        if abs(v) / LINE_RESISTANCE_OHM > self.curr_prot[c]:
            raise out_of_range(f"ch{c} {v} V would exceed the {self.curr_prot[c]:g} A compliance")
        self.volts[c] = v
        self._apply(c)

    @scpi(r":?SOUR(?:CE)?" + CH + r":VOLT(?:AGE)?\?")
    def get_voltage(self, ch: str) -> str:
        return f"{self.volts[self._channel(ch)]:+.8E}"

    @scpi(r":?SOUR(?:CE)?" + CH + r":CURR(?:ENT)?\s+(\S+)")
    def set_current(self, ch: str, value: str) -> None:
        self.amps[self._channel(ch)] = parse_float(value)

    @scpi(r":?SOUR(?:CE)?" + CH + r":CURR(?:ENT)?\?")
    def get_current(self, ch: str) -> str:
        return f"{self.amps[self._channel(ch)]:+.8E}"

    @scpi(r":?SOUR(?:CE)?" + CH + r":FUNC(?:TION)?:MODE\s+(\S+)")
    def set_mode(self, ch: str, value: str) -> None:
        mode = value.upper()[:4]
        if mode not in ("VOLT", "CURR"):
            raise bad_parameter(value)
        c = self._channel(ch)
        self.mode[c] = mode
        self._apply(c)

    @scpi(r":?SOUR(?:CE)?" + CH + r":FUNC(?:TION)?:MODE\?")
    def get_mode(self, ch: str) -> str:
        return self.mode[self._channel(ch)]

    @scpi(r":?OUTP(?:UT)?" + CH + r"(?::STAT(?:E)?)?\s+(\S+)")
    def set_output(self, ch: str, value: str) -> None:
        state = {"1": 1, "ON": 1, "0": 0, "OFF": 0}.get(value.upper())
        if state is None:
            raise bad_parameter(value)
        c = self._channel(ch)
        self.output[c] = state
        self._apply(c)

    @scpi(r":?OUTP(?:UT)?" + CH + r"(?::STAT(?:E)?)?\?")
    def get_output(self, ch: str) -> str:
        return str(self.output[self._channel(ch)])

    # ---------------------------------------------------------------- sense
    @scpi(r":?SENS(?:E)?" + CH + r":VOLT(?:AGE)?:PROT(?:ECTION)?\s+(\S+)")
    def set_volt_prot(self, ch: str, value: str) -> None:
        self.volt_prot[self._channel(ch)] = parse_float(value)

    @scpi(r":?SENS(?:E)?" + CH + r":VOLT(?:AGE)?:PROT(?:ECTION)?\?")
    def get_volt_prot(self, ch: str) -> str:
        return f"{self.volt_prot[self._channel(ch)]:+.8E}"

    @scpi(r":?SENS(?:E)?" + CH + r":CURR(?:ENT)?:PROT(?:ECTION)?\s+(\S+)")
    def set_curr_prot(self, ch: str, value: str) -> None:
        a = parse_float(value)
        if not 1e-9 <= a <= 3.03:
            raise out_of_range(f"compliance {a} A")
        self.curr_prot[self._channel(ch)] = a

    @scpi(r":?SENS(?:E)?" + CH + r":CURR(?:ENT)?:PROT(?:ECTION)?\?")
    def get_curr_prot(self, ch: str) -> str:
        return f"{self.curr_prot[self._channel(ch)]:+.8E}"

    @scpi(r":?SENS(?:E)?" + CH + r":REM(?:OTE)?\s+(\S+)")
    def set_remote(self, ch: str, value: str) -> None:
        self.remote[self._channel(ch)] = 1 if value.upper() in ("1", "ON") else 0

    @scpi(r":?SENS(?:E)?" + CH + r":REM(?:OTE)?\?")
    def get_remote(self, ch: str) -> str:
        return str(self.remote[self._channel(ch)])

    @scpi(r":?MEAS(?:URE)?:(VOLT|CURR|RES)\?\s*\(@" + CH + r"\)")
    def measure(self, what: str, ch: str) -> str:
        c = self._channel(ch)
        v = self._line_voltage(c)
        value = {"VOLT": v, "CURR": v / LINE_RESISTANCE_OHM, "RES": LINE_RESISTANCE_OHM}[what.upper()]
        return f"{value:+.8E}"
