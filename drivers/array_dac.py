"""QCoDeS driver for the labstack on-chip DAC array: every bias and coupler line in one block.

A large chip carries DAC arrays that the control FPGA writes; one instrument drives
all its lines. Elements are the bias lines (one per cell), then the coupler lines.

* ``voltages``: every element at once, written as one IEEE 488.2 block of
  little-endian float32 (``SOURce:VOLTage:ARRay``) and read back the same way. A
  write whose length is not the array's is refused before anything is sent.
* ``bias000`` ..., ``coupler000`` ...: one channel per element with a ``volt``
  parameter (``SOURce:VOLTage:ELEMent``), so a station file names per-cell lines
  (``dacs.bias003.volt``) as it names QDAC-II channels, and the safety layer limits,
  ramps and guards each line. ``output_filter`` reads the filter all elements share.

Channel numbers have :func:`element_width` digits (at least 3), so a station file's
range ``dacs.bias000-bias015`` expands to the driver's names.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qcodes import validators as vals
from qcodes.instrument import InstrumentChannel, VisaInstrument
from qcodes.parameters import Parameter

from ._replies import ReplyError, block_length, parse_block

__all__ = ["ArrayLengthError", "LabstackArrayDac", "ReplyError", "element_names", "element_width"]

#: the output range of every element (V), as the instrument enforces it
RANGE_V = 2.0
BLOCK_COMMAND = "SOUR:VOLT:ARR"


class ArrayLengthError(ValueError):
    """An array write whose length is not the instrument's number of elements."""


def element_width(n_bias: int, n_couplers: int) -> int:
    """Digits of the channel numbers: 3, or more for an array with more lines of one kind."""
    return max(3, len(str(max(n_bias, n_couplers, 1) - 1)))


def element_names(n_bias: int, n_couplers: int) -> list[str]:
    """Channel names in element order: ``bias000`` ... then ``coupler000`` ..."""
    w = element_width(n_bias, n_couplers)
    return [f"bias{i:0{w}d}" for i in range(n_bias)] + [f"coupler{k:0{w}d}" for k in range(n_couplers)]


class ArrayDacElement(InstrumentChannel):
    """One element: its voltage, written on its own (``SOURce:VOLTage:ELEMent <i>,<V>``)."""

    def __init__(self, parent: LabstackArrayDac, name: str, element: int) -> None:
        super().__init__(parent, name)
        #: the element's index in the array (what the safety guard checks a block by)
        self.element = element
        self.volt: Parameter = self.add_parameter(
            "volt",
            label=f"Element {element}",
            unit="V",
            get_cmd=f"SOUR:VOLT:ELEM? {element}",
            set_cmd=f"SOUR:VOLT:ELEM {element},{{:.9g}}",
            get_parser=float,
            vals=vals.Numbers(-RANGE_V, RANGE_V),
        )
        self.output_filter: Parameter = self.add_parameter(
            "output_filter",
            label="Output filter",
            get_cmd="SOUR:FILT?",
            get_parser=lambda s: s.strip().lower(),
            docstring="the filter every element shares (set it on the instrument)",
        )


class _Voltages(Parameter):
    """Every element, one block each way."""

    def get_raw(self) -> np.ndarray:
        instrument: LabstackArrayDac = self.instrument  # type: ignore[assignment]
        return instrument.read_array()

    def set_raw(self, value: Any) -> None:
        instrument: LabstackArrayDac = self.instrument  # type: ignore[assignment]
        instrument.write_array(value)


class LabstackArrayDac(VisaInstrument):
    """On-chip DAC array: all bias lines, then all coupler lines."""

    default_terminator = "\n"

    def __init__(self, name: str, address: str, **kwargs: Any) -> None:
        super().__init__(name, address, **kwargs)
        self.n_elements = int(self.ask("ARR:SIZE?"))
        self.n_bias = int(self.ask("ARR:SIZE:BIAS?"))
        self.n_couplers = int(self.ask("ARR:SIZE:COUP?"))
        if self.n_bias + self.n_couplers != self.n_elements:
            raise ReplyError(
                f"{name}: {self.n_elements} elements are not {self.n_bias} bias + {self.n_couplers} coupler lines"
            )
        self.filter: Parameter = self.add_parameter(
            "filter",
            label="Output filter",
            get_cmd="SOUR:FILT?",
            set_cmd="SOUR:FILT {}",
            get_parser=lambda s: s.strip().lower(),
            vals=vals.Enum("dc", "med", "high"),
        )
        self.voltages: _Voltages = self.add_parameter(
            "voltages",
            parameter_class=_Voltages,
            label="Element voltages",
            unit="V",
            vals=vals.Arrays(-RANGE_V, RANGE_V),  # the length: write_array, naming both
            snapshot_value=False,
            docstring="every element, bias lines then coupler lines; one block write",
        )
        self.elements: list[ArrayDacElement] = []
        for i, channel in enumerate(element_names(self.n_bias, self.n_couplers)):
            element = ArrayDacElement(self, channel, i)
            self.add_submodule(channel, element)
            self.elements.append(element)
        self.connect_message()

    # ------------------------------------------------------------- the block
    def write_array(self, values: Any) -> None:
        """Every element in one block; a wrong length is refused before anything is sent."""
        array = np.asarray(values, dtype=float).ravel()
        if array.size != self.n_elements:
            raise ArrayLengthError(
                f"{self.name}: an array write needs {self.n_elements} values "
                f"({self.n_bias} bias + {self.n_couplers} coupler lines), got {array.size}"
            )
        self.visa_handle.write_binary_values(
            BLOCK_COMMAND + " ", array.astype("<f4"), datatype="f", is_big_endian=False
        )
        sent = array.astype(np.float32).astype(float)
        for element, v in zip(self.elements, sent, strict=True):
            element.volt.cache.set(float(v))

    def read_array(self) -> np.ndarray:
        """The commanded value of every element, read as one block and parsed strictly."""
        command = BLOCK_COMMAND + "?"
        handle = self.visa_handle
        handle.write(command)
        head = handle.read_bytes(2)
        digits = int(head[1:2]) if head[1:2].isdigit() else 0
        head += handle.read_bytes(digits) if digits else b""
        _, length = block_length(head, self.name, command)
        termination = (handle.read_termination or "").encode()
        with handle.read_termination_context(None):  # a float32 payload may hold 0x0A bytes
            raw = head + handle.read_bytes(length + len(termination), chunk_size=length + len(termination))
        payload = parse_block(raw, termination, self.name, command)
        if len(payload) != 4 * self.n_elements:
            raise ReplyError(
                f"{self.name}: {command!r} returned {len(payload)} bytes, not {self.n_elements} float32 elements"
            )
        return np.frombuffer(payload, dtype="<f4").astype(float)
