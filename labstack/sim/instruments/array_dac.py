"""A virtual on-chip DAC array: one output per bias line and per coupler line, written as one block.

Past a few hundred lines no lab wires a DAC channel per cell: the chip carries DAC
arrays that the control FPGA writes. This twin is that instrument (our own; its
QCoDeS driver is ``labstack.drivers.array_dac``). Element ``i`` is bias line ``i``
for ``i < n_bias``, then coupler line ``i - n_bias``. Every commanded output goes to
the lab's DAC lines (:meth:`labstack.sim.lab.VirtualLab.set_dac` through the
callback), so slew, line filters, quantisation, crosstalk and drift are the
simulator's, exactly as behind the QDAC-II twin.

SCPI::

    ARRay:SIZE?                      number of elements (bias lines, then coupler lines)
    ARRay:SIZE:BIAS? / :COUPler?     how many of them are bias / coupler lines
    SOURce:VOLTage:ARRay <block>     every element at once: IEEE 488.2 definite block of
                                     little-endian float32, one per element
    SOURce:VOLTage:ARRay?            the commanded values, as the same block
    SOURce:VOLTage:ELEMent <i>,<V>   one element (0-based)
    SOURce:VOLTage:ELEMent? <i>
    SOURce:FILTer <dc|med|high> / ?  the output filter every element shares

A block of the wrong length, or with one element outside the ±2 V output range, is
refused with an error in ``SYST:ERR?`` and nothing moves.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from labstack.scpi_text import split_commands
from labstack.sim.instruments.scpi import (
    ScpiDevice,
    ScpiError,
    bad_parameter,
    binary_block,
    out_of_range,
    parse_float,
    scpi,
)

#: the hardware output range of every element (V)
RANGE_V = 2.0
FILTERS = ("dc", "med", "high")
#: the FPGA updates an element in one step: the lab's slew limit is not in the way
SLEW_V_PER_S = 2e7

OnElement = Callable[[int, float, float, str], None]
"""(element, volts, slew V/s, filter name): called whenever an element is commanded."""

_BLOCK_COMMAND = re.compile(r"SOUR(?:CE)?:VOLT(?:AGE)?:ARR(?:AY)?", re.IGNORECASE)


def invalid_block(detail: str) -> ScpiError:
    return ScpiError(-161, f"Invalid block data; {detail}")


class VirtualArrayDac(ScpiDevice):
    """``on_element(i, volts, slew, filter)`` is called for every element commanded."""

    #: the VISA backend hands this twin a message holding a binary block as bytes
    binary_blocks = True

    def __init__(self, on_element: OnElement, n_bias: int, n_couplers: int, serial: int = 1) -> None:
        super().__init__()
        if n_bias < 1 or n_couplers < 0:
            raise ValueError(f"a DAC array needs bias lines: {n_bias} bias, {n_couplers} coupler elements")
        self.idn = f"labstack,VARRAYDAC-1,{serial:04d},1.0"
        self.n_bias = n_bias
        self.n_couplers = n_couplers
        self._on_element = on_element
        self.reset()

    @property
    def size(self) -> int:
        return self.n_bias + self.n_couplers

    def reset(self) -> None:
        self.volts = np.zeros(self.size)
        self.filter = "high"
        for i in range(self.size):
            self._on_element(i, 0.0, SLEW_V_PER_S, self.filter)

    # ------------------------------------------------------------ block writes
    def handle_binary(self, data: bytes) -> bytes | None:
        """One message that holds a definite-length block (``<commands>;<header> #<n><len><payload>``).

        The commands before the block header run as text; the block command gets the payload.
        """
        position = data.find(b"#")
        text = data[:position].decode("ascii", errors="replace")
        commands = split_commands(text)
        header = commands.pop() if commands and not text.rstrip().endswith(";") else ""
        answers = self.handle(";".join(commands)) if commands else None
        size = "malformed"
        try:
            payload = _block_payload(data[position:], self.read_termination.encode())
            size = f"{len(payload)} bytes"
            if not _BLOCK_COMMAND.fullmatch(header.strip()):
                raise invalid_block(f"{header.strip() or 'no command'!r} takes no block")
            self.set_array(payload)
        except ScpiError as err:
            self.errors.append(err)
        finally:
            if self.log is not None:
                self.log.append(f"{header.strip()} <block of {size}>")
        return answers

    def set_array(self, payload: bytes) -> None:
        if len(payload) % 4:
            raise invalid_block(f"{len(payload)} bytes are not whole float32 values")
        values = np.frombuffer(payload, dtype="<f4").astype(float)
        if values.size != self.size:
            raise invalid_block(f"the block holds {values.size} elements, the array has {self.size}")
        bad = np.flatnonzero(~np.isfinite(values) | (np.abs(values) > RANGE_V))
        if bad.size:
            i = int(bad[0])
            raise out_of_range(f"element {i} at {values[i]:g} V outside +-{RANGE_V:g} V ({bad.size} elements)")
        # an element the block repeats (equal at float32 precision) keeps its exact value
        for i in np.flatnonzero(values.astype(np.float32) != self.volts.astype(np.float32)):
            self._command(int(i), float(values[i]))

    @scpi(r"SOUR(?:CE)?:VOLT(?:AGE)?:ARR(?:AY)?\?")
    def get_array(self) -> bytes:
        return binary_block(self.volts.astype("<f4").tobytes())

    @scpi(r"SOUR(?:CE)?:VOLT(?:AGE)?:ARR(?:AY)? (.*)")
    def array_as_text(self, value: str) -> None:
        raise invalid_block("SOURce:VOLTage:ARRay takes an IEEE 488.2 definite block of float32")

    # ---------------------------------------------------------- one element
    def _element(self, text: str) -> int:
        try:
            i = int(text)
        except ValueError:
            raise bad_parameter(f"element {text!r} is not a whole number") from None
        if not 0 <= i < self.size:
            raise out_of_range(f"no element {i}: the array has elements 0 .. {self.size - 1}")
        return i

    @scpi(r"SOUR(?:CE)?:VOLT(?:AGE)?:ELEM(?:ENT)? (\S+?)\s*,\s*(\S+)")
    def set_element(self, index: str, value: str) -> None:
        i = self._element(index)
        v = parse_float(value)
        if not -RANGE_V <= v <= RANGE_V:
            raise out_of_range(f"element {i} at {v:g} V outside +-{RANGE_V:g} V")
        self._command(i, v)

    @scpi(r"SOUR(?:CE)?:VOLT(?:AGE)?:ELEM(?:ENT)?\? (\S+)")
    def get_element(self, index: str) -> str:
        return f"{self.volts[self._element(index)]:.9g}"

    def _command(self, i: int, volts: float) -> None:
        self.volts[i] = volts
        self._on_element(i, volts, SLEW_V_PER_S, self.filter)

    # ------------------------------------------------------------ settings
    @scpi(r"ARR(?:AY)?:SIZE\?")
    def get_size(self) -> str:
        return str(self.size)

    @scpi(r"ARR(?:AY)?:SIZE:BIAS\?")
    def get_bias_size(self) -> str:
        return str(self.n_bias)

    @scpi(r"ARR(?:AY)?:SIZE:COUP(?:LER)?\?")
    def get_coupler_size(self) -> str:
        return str(self.n_couplers)

    @scpi(r"SOUR(?:CE)?:FILT(?:ER)? (\S+)")
    def set_filter(self, value: str) -> None:
        if value.lower() not in FILTERS:
            raise bad_parameter(f"filter {value!r}; use one of {', '.join(FILTERS)}")
        self.filter = value.lower()

    @scpi(r"SOUR(?:CE)?:FILT(?:ER)?\?")
    def get_filter(self) -> str:
        return self.filter


def _block_payload(block: bytes, termination: bytes) -> bytes:
    """The payload of ``#<n><len><payload>[termination]``; anything else is a SCPI error."""
    if len(block) < 2 or not block[1:2].isdigit() or block[1:2] == b"0":
        raise invalid_block(f"header {block[:12]!r} is not a definite-length block")
    digits = int(block[1:2])
    field = block[2 : 2 + digits]
    if len(field) < digits or not field.isdigit():
        raise invalid_block(f"header {block[: 2 + digits]!r} has no length")
    start = 2 + digits
    end = start + int(field)
    rest = block[end:]
    if len(block) < end or rest not in (b"", termination, b"\r\n"):
        raise invalid_block(f"the header announces {int(field)} bytes, the message has {len(block) - start}")
    return block[start:end]
