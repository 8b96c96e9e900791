"""QCoDeS driver for labstack's remote-controlled low-noise preamplifier.

A room-temperature voltage preamplifier between the cryostat's readout lines and
the lock-in amplifiers: per channel an input relay (which of its readout lines it
amplifies), a gain in 1-2-5 steps and a single-pole low-pass. Gain and bandwidth
are station settings, not constants: the readout calibration reads them and
divides them out (``response(f)``), so a lab that changes the gain does not
change its calibrated levels. QCoDeS's SR560 driver describes a manual instrument
that sends nothing; this one sends SCPI (see ``labstack/sim/instruments/preamp.py``
for the command set).
"""

from __future__ import annotations

from typing import Any

from qcodes import validators as vals
from qcodes.instrument import InstrumentChannel, VisaInstrument
from qcodes.parameters import Parameter

__all__ = ["LabstackPreamp", "PreampChannel"]

GAINS = [m * 10**e for e in range(5) for m in (1, 2, 5) if m * 10**e <= 10000]
CUTOFFS_HZ = [1e3, 3e3, 10e3, 30e3, 100e3, 300e3, 1e6]
LINES_PER_CHANNEL = 4


class PreampChannel(InstrumentChannel):
    """One amplifier channel: input relay, gain, low-pass, coupling."""

    def __init__(self, parent: LabstackPreamp, name: str, number: int) -> None:
        super().__init__(parent, name)
        self.number = number
        prefix = f"CHAN{number}"
        self.input: Parameter = self.add_parameter(
            "input", label="Input line", get_cmd=f"{prefix}:INP?", set_cmd=f"{prefix}:INP {{:d}}",
            get_parser=int, vals=vals.Ints(1, LINES_PER_CHANNEL),
        )
        self.gain: Parameter = self.add_parameter(
            "gain", label="Gain", get_cmd=f"{prefix}:GAIN?", set_cmd=f"{prefix}:GAIN {{:g}}",
            get_parser=float, vals=vals.Enum(*GAINS, *map(float, GAINS)),
        )
        self.lowpass: Parameter = self.add_parameter(
            "lowpass", label="Low-pass cutoff", unit="Hz", get_cmd=f"{prefix}:FILT:LPAS?",
            set_cmd=f"{prefix}:FILT:LPAS {{:g}}", get_parser=float, vals=vals.Enum(*CUTOFFS_HZ),
        )
        self.coupling: Parameter = self.add_parameter(
            "coupling", label="Input coupling", get_cmd=f"{prefix}:COUP?", set_cmd=f"{prefix}:COUP {{}}",
            vals=vals.Enum("AC", "DC"),
        )
        self.overload: Parameter = self.add_parameter(
            "overload", label="Output clipped since last asked", get_cmd=f"{prefix}:OVER?",
            val_mapping={True: "1", False: "0"},
        )

    def response(self, frequency_Hz: float) -> complex:
        """This channel's complex gain at ``frequency_Hz`` from its present settings."""
        return self.gain.get_latest() / (1 + 1j * frequency_Hz / self.lowpass.get_latest())


class LabstackPreamp(VisaInstrument):
    """Multi-channel low-noise preamplifier with an input relay per channel."""

    default_terminator = "\n"

    def __init__(self, name: str, address: str, **kwargs: Any) -> None:
        super().__init__(name, address, **kwargs)
        self.n_channels: Parameter = self.add_parameter(
            "n_channels", get_cmd="SYST:CHAN?", get_parser=int, label="Channels"
        )
        for k in range(1, int(self.n_channels()) + 1):
            self.add_submodule(f"ch{k}", PreampChannel(self, f"ch{k}", k))
        self.connect_message()
