"""QCoDeS driver for the labstack FPGA sampler: one readout channel per cell.

The sampler digitizes the amplifier output of every cell at ``sample_rate`` and
returns ``n_samples`` per cell in one IEEE 488.2 binary block (float32 volts),
so a single query moves ``n_cells x n_samples`` values. ``samples`` is a
:class:`~qcodes.parameters.ParameterWithSetpoints` with dims ``(cell, sample)``
so QCoDeS and labstack both know its axes.

``channels`` picks the cells whose readings are transferred (``None``: all, the
power-on state): a loop that uses a dozen cells of a big chip moves a dozen
cells' readings, not all of them. The ``cell`` axis then holds the chosen cell
numbers, so the rows of ``samples`` stay labelled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from qcodes import validators as vals
from qcodes.instrument import VisaInstrument
from qcodes.parameters import Parameter, ParameterWithSetpoints

from ._replies import ReplyError, block_body, block_length, float32_cells

__all__ = ["LabstackSampler", "ReplyError"]


class _Axis(Parameter):
    """A setpoint axis whose values come from the instrument's settings when read."""

    def __init__(self, name: str, values: Callable[[], np.ndarray], **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self._values = values

    def get_raw(self) -> np.ndarray:
        return self._values()


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
        self.channels: Parameter = self.add_parameter(
            "channels",
            label="Cells transferred",
            get_cmd="SAMP:CHAN?",
            set_cmd="SAMP:CHAN {}",
            get_parser=parse_channels,
            set_parser=format_channels,
            docstring="cell numbers whose readings READ? returns, in this order; None: every cell",
        )
        self.cell: _Axis = self.add_parameter(
            "cell", parameter_class=_Axis, values=self._cell_numbers, label="Cell",
            vals=vals.Arrays(shape=(self._n_rows,)),
        )
        self.sample: _Axis = self.add_parameter(
            "sample",
            parameter_class=_Axis,
            values=lambda: np.arange(self.n_samples()),
            label="Sample",
            vals=vals.Arrays(shape=(self.n_samples,)),
        )
        self.samples: _Samples = self.add_parameter(
            "samples",
            parameter_class=_Samples,
            label="Amplifier output",
            unit="V",
            setpoints=(self.cell, self.sample),
            vals=vals.Arrays(shape=(self._n_rows, self.n_samples)),
        )
        self.connect_message()

    def _selected(self) -> tuple[int, ...] | None:
        return self.channels.get_latest() if self.channels.cache.valid else self.channels()

    def _cell_numbers(self) -> np.ndarray:
        chosen = self._selected()
        if chosen is None:
            return np.arange(self.n_cells.get_latest() if self.n_cells.cache.valid else self.n_cells())
        return np.asarray(chosen)

    def _n_rows(self) -> int:
        return len(self._cell_numbers())

    def acquire(self) -> np.ndarray:
        """One acquisition: (cells transferred, n_samples) float32 volts.

        The block is read exactly (header, announced length, terminator) and parsed
        strictly (:mod:`._replies`), so a damaged reply raises :class:`ReplyError`
        instead of becoming plausible numbers.
        """
        n_cells = self._n_rows()
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
            body = handle.read_bytes(length + len(termination), chunk_size=length + len(termination))
        payload = block_body(body, length, termination, self.name, "READ?")  # a view: no copy
        return float32_cells(payload, n_cells, self.name, "READ?")


def format_channels(cells: Any) -> str:
    """``None`` -> ``ALL``; cell numbers -> a SCPI channel list ``(@0,3,7)``."""
    if cells is None:
        return "ALL"
    numbers = [int(c) for c in cells]
    if not numbers:
        raise ValueError("channels: an empty list transfers nothing; use None for every cell")
    return "(@" + ",".join(map(str, numbers)) + ")"


def parse_channels(reply: str) -> tuple[int, ...] | None:
    """The instrument's ``SAMP:CHAN?`` reply: ``ALL`` -> None, ``(@0,3,5:7)`` -> (0, 3, 5, 6, 7)."""
    text = reply.strip()
    if text.upper() == "ALL":
        return None
    if not (text.startswith("(@") and text.endswith(")")):
        raise ReplyError(f"sampler: 'SAMP:CHAN?' answered {text!r}, not a channel list")
    cells: list[int] = []
    for item in text[2:-1].split(","):
        lo, _, hi = item.partition(":")
        try:
            cells.extend(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            raise ReplyError(f"sampler: 'SAMP:CHAN?' answered {text!r}: {item!r} is not a cell or range") from None
    return tuple(cells)
