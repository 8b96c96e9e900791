"""QCoDeS driver for the labstack FPGA sampler: one readout channel per cell.

The sampler digitizes the amplifier output of every cell at ``sample_rate`` and
returns ``n_samples`` per cell in one IEEE 488.2 binary block (float32 volts),
so a single query moves ``n_cells x n_samples`` values. ``samples`` is a
:class:`~qcodes.parameters.ParameterWithSetpoints` with dims ``(cell, sample)``
so QCoDeS and labstack both know its axes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qcodes import validators as vals
from qcodes.instrument import VisaInstrument
from qcodes.parameters import Parameter, ParameterWithSetpoints

from ._replies import ReplyError, block_length, float32_cells, parse_block

__all__ = ["LabstackSampler", "ReplyError"]


class _Axis(Parameter):
    def __init__(self, name: str, size: Any, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self._size = size

    def get_raw(self) -> np.ndarray:
        return np.arange(self._size())


class _Samples(ParameterWithSetpoints):
    def get_raw(self) -> np.ndarray:
        instrument: LabstackSampler = self.instrument  # type: ignore[assignment]
        return instrument.acquire()


class LabstackSampler(VisaInstrument):
    """Multi-cell sampler behind the amplifier chain."""

    default_terminator = "\n"

    def __init__(self, name: str, address: str, **kwargs: Any) -> None:
        kwargs.setdefault("timeout", 30)
        super().__init__(name, address, **kwargs)
        self.n_cells: Parameter = self.add_parameter(
            "n_cells", get_cmd="SAMP:CELL:COUN?", get_parser=int, label="Cells"
        )
        self.sample_rate: Parameter = self.add_parameter(
            "sample_rate",
            label="Sample rate",
            unit="Hz",
            get_cmd="SAMP:RATE?",
            set_cmd="SAMP:RATE {:.9g}",
            get_parser=float,
            vals=vals.Numbers(1.0, 10e6),
        )
        self.n_samples: Parameter = self.add_parameter(
            "n_samples",
            label="Samples per cell",
            get_cmd="SAMP:COUN?",
            set_cmd="SAMP:COUN {:d}",
            get_parser=int,
            vals=vals.Ints(1, 2**22),
        )
        self.cell: _Axis = self.add_parameter(
            "cell", parameter_class=_Axis, size=self.n_cells, label="Cell", vals=vals.Arrays(shape=(self.n_cells,))
        )
        self.sample: _Axis = self.add_parameter(
            "sample",
            parameter_class=_Axis,
            size=self.n_samples,
            label="Sample",
            vals=vals.Arrays(shape=(self.n_samples,)),
        )
        self.samples: _Samples = self.add_parameter(
            "samples",
            parameter_class=_Samples,
            label="Amplifier output",
            unit="V",
            setpoints=(self.cell, self.sample),
            vals=vals.Arrays(shape=(self.n_cells, self.n_samples)),
        )
        self.connect_message()

    def acquire(self) -> np.ndarray:
        """One acquisition: (n_cells, n_samples) float32 volts.

        The block is read exactly (header, announced length, terminator) and parsed
        strictly (:mod:`._replies`), so a damaged reply raises :class:`ReplyError`
        instead of becoming plausible numbers.
        """
        n_cells = self.n_cells.get_latest() if self.n_cells.cache.valid else self.n_cells()
        handle = self.visa_handle
        handle.write("READ?")
        head = handle.read_bytes(2)
        digits = int(head[1:2]) if head[1:2].isdigit() else 0
        head += handle.read_bytes(digits) if digits else b""
        size, length = block_length(head, self.name, "READ?")
        termination = (handle.read_termination or "").encode()
        # the payload is binary: with the termination character on, every 0x0A byte in
        # it would end a VISA read (about one in 256 bytes, thousands of reads per
        # block); its length is known, so it is read with the character off, in one go
        with handle.read_termination_context(None):
            raw = head + handle.read_bytes(length + len(termination), chunk_size=length + len(termination))
        payload = parse_block(raw, termination, self.name, "READ?")
        return float32_cells(payload, n_cells, self.name, "READ?")
