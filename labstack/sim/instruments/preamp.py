"""A virtual remote-controlled low-noise voltage preamplifier with input relays.

SCPI (our own instrument; its QCoDeS driver is ``labstack.drivers.preamp``)::

    SYSTem:CHANnels?                 number of channels
    CHANnel<n>:INPut <k> / ?         input relay: readout line k (1..4) of this channel's group
    CHANnel<n>:GAIN <g> / ?          voltage gain, 1-2-5 steps from 1 to 10000
    CHANnel<n>:FILTer:LPASs <Hz> / ? single-pole low-pass cutoff, 1-3 steps 1 kHz .. 1 MHz
    CHANnel<n>:COUPling AC|DC / ?    input coupling
    CHANnel<n>:OVERload?             1 if the output clipped (+-10 V) since last asked

The physics (what gain and filter do to the lock-in's reading) is
:mod:`labstack.sim.lockin`. A gain or cutoff that is not one of the instrument's
steps is refused with ``-222``, as the front panel would not offer it.
"""

from __future__ import annotations

from labstack.sim.instruments.scpi import ScpiDevice, bad_parameter, out_of_range, parse_float, scpi
from labstack.sim.lockin import LINES_PER_CHANNEL, LockinFrontEnd

GAINS = [m * 10**e for e in range(5) for m in (1, 2, 5) if m * 10**e <= 10000]
CUTOFFS_HZ = [1e3, 3e3, 10e3, 30e3, 100e3, 300e3, 1e6]
CH = r"CHAN(?:NEL)?(\d+)"


class VirtualPreamp(ScpiDevice):
    idn = "labstack,LNPA-8,0001,1.0"

    def __init__(self, frontend: LockinFrontEnd) -> None:
        super().__init__()
        self.frontend = frontend
        self.reset()

    def reset(self) -> None:
        for channel in self.frontend.channels.values():
            channel.input, channel.gain, channel.lowpass_Hz, channel.coupling = 1, 1.0, 1e6, "AC"

    def _channel(self, text: str):
        k = int(text)
        if k not in self.frontend.channels:
            raise bad_parameter(f"no channel {k}; this preamp has 1..{len(self.frontend.channels)}")
        return self.frontend.channels[k]

    @scpi(r"SYST(?:EM)?:CHAN(?:NELS)?\?")
    def count(self) -> str:
        return str(len(self.frontend.channels))

    @scpi(CH + r":INP(?:UT)?\s+(\S+)")
    def set_input(self, ch: str, value: str) -> None:
        k = parse_float(value)
        if k != int(k) or not 1 <= k <= LINES_PER_CHANNEL:
            raise out_of_range(f"input {value}; inputs are 1..{LINES_PER_CHANNEL}")
        self._channel(ch).input = int(k)

    @scpi(CH + r":INP(?:UT)?\?")
    def get_input(self, ch: str) -> str:
        return str(self._channel(ch).input)

    @scpi(CH + r":GAIN\s+(\S+)")
    def set_gain(self, ch: str, value: str) -> None:
        g = parse_float(value)
        if g not in GAINS:
            raise out_of_range(f"gain {value}; steps are {GAINS}")
        self._channel(ch).gain = g

    @scpi(CH + r":GAIN\?")
    def get_gain(self, ch: str) -> str:
        return f"{self._channel(ch).gain:g}"

    @scpi(CH + r":FILT(?:ER)?:LPAS(?:S)?\s+(\S+)")
    def set_lowpass(self, ch: str, value: str) -> None:
        f = parse_float(value)
        if f not in CUTOFFS_HZ:
            raise out_of_range(f"cutoff {value} Hz; steps are {CUTOFFS_HZ}")
        self._channel(ch).lowpass_Hz = f

    @scpi(CH + r":FILT(?:ER)?:LPAS(?:S)?\?")
    def get_lowpass(self, ch: str) -> str:
        return f"{self._channel(ch).lowpass_Hz:g}"

    @scpi(CH + r":COUP(?:LING)?\s+(\S+)")
    def set_coupling(self, ch: str, value: str) -> None:
        if value.upper() not in ("AC", "DC"):
            raise bad_parameter(value)
        self._channel(ch).coupling = value.upper()

    @scpi(CH + r":COUP(?:LING)?\?")
    def get_coupling(self, ch: str) -> str:
        return self._channel(ch).coupling

    @scpi(CH + r":OVER(?:LOAD)?\?")
    def get_overload(self, ch: str) -> str:
        channel = self._channel(ch)
        flag, channel.overloaded = channel.overloaded, False
        return "1" if flag else "0"
