"""A virtual FPGA sampler behind the amplifier chain: one channel per cell.

SCPI (our own instrument; its QCoDeS driver is ``labstack.drivers.sampler``)::

    SAMPle:CELLs:COUNt?            number of cell channels
    SAMPle:RATE <Hz> / ?           sample rate, 1 Hz .. 10 MHz
    SAMPle:COUNt <n> / ?           samples per cell per acquisition, 1 .. 2**22
    SAMPle:CHANnels (@<list>) / ALL / ?
                                   the cells whose readings are transferred, as a
                                   SCPI channel list of cell numbers (0-based, as
                                   ``SAMPle:CELLs:COUNt?`` counts them; ``2:5`` is
                                   a range); ALL (the power-on state) sends every cell
    INITiate                       take one acquisition (time passes: COUNt / RATE)
    FETCh?                         last acquisition, IEEE 488.2 binary block of
                                   little-endian float32, sample-major
                                   (n_samples x n_channels) volts
    READ?                          INITiate then FETCh?
    FORMat:DATA? / FORMat:DATA REAL,32

Acquisitions larger than 2**26 values are refused (-223 Too much data), as a
real FPGA's memory would.
"""

from __future__ import annotations

import numpy as np

from labstack.sim.instruments.scpi import (
    ScpiDevice,
    ScpiError,
    bad_parameter,
    binary_block,
    out_of_range,
    parse_float,
    scpi,
)
from labstack.sim.lab import VirtualLab

MAX_RATE_HZ = 10e6
MAX_SAMPLES = 2**22
MAX_VALUES = 2**26


class VirtualSampler(ScpiDevice):
    idn = "labstack,VSAMPLER-1,0001,1.0"

    def __init__(self, lab: VirtualLab) -> None:
        super().__init__()
        self.lab = lab
        self.reset()

    def reset(self) -> None:
        self.rate = 50e3
        self.count = 1000
        self.channels: list[int] | None = None  # None: every cell
        self.data: np.ndarray | None = None

    @scpi(r"SAMP(?:LE)?:CELL(?:S)?:COUN(?:T)?\?")
    def cell_count(self) -> str:
        return str(self.lab.truth.n_cells)

    @scpi(r"SAMP(?:LE)?:RATE (\S+)")
    def set_rate(self, value: str) -> None:
        rate = parse_float(value)
        if not 1.0 <= rate <= MAX_RATE_HZ:
            raise out_of_range(f"rate {rate} Hz outside 1 Hz .. {MAX_RATE_HZ:g} Hz")
        self.rate = rate

    @scpi(r"SAMP(?:LE)?:RATE\?")
    def get_rate(self) -> str:
        return f"{self.rate:.9g}"

    @scpi(r"SAMP(?:LE)?:COUN(?:T)? (\S+)")
    def set_count(self, value: str) -> None:
        number = parse_float(value)
        if not np.isfinite(number) or number != int(number):
            raise bad_parameter(f"count {value!r} is not a whole number")
        count = int(number)
        if not 1 <= count <= MAX_SAMPLES:
            raise out_of_range(f"count {count} outside 1 .. {MAX_SAMPLES}")
        self.count = count

    @scpi(r"SAMP(?:LE)?:COUN(?:T)?\?")
    def get_count(self) -> str:
        return str(self.count)

    @scpi(r"SAMP(?:LE)?:CHAN(?:NELS)? (.+)")
    def set_channels(self, value: str) -> None:
        self.channels = parse_channel_list(value, self.lab.truth.n_cells)

    @scpi(r"SAMP(?:LE)?:CHAN(?:NELS)?\?")
    def get_channels(self) -> str:
        return "ALL" if self.channels is None else "(@" + ",".join(map(str, self.channels)) + ")"

    @scpi(r"FORM(?:AT)?(?::DATA)?\?")
    def get_format(self) -> str:
        return "REAL,32"

    @scpi(r"FORM(?:AT)?(?::DATA)? (\S+)")
    def set_format(self, value: str) -> None:
        if value.replace(" ", "").upper() not in ("REAL,32", "REAL"):
            raise bad_parameter(f"format {value}; only REAL,32")

    @scpi(r"INIT(?:IATE)?(?::IMM(?:EDIATE)?)?")
    def initiate(self) -> None:
        if self.count * self.lab.truth.n_cells > MAX_VALUES:
            raise ScpiError(-223, "Too much data")
        cells = None if self.channels is None else np.asarray(self.channels)
        self.data = self.lab.acquire(self.count, 1.0 / self.rate, cells)

    @scpi(r"FETC(?:H)?\?")
    def fetch(self) -> bytes:
        if self.data is None:
            raise ScpiError(-230, "Data corrupt or stale; no acquisition")
        return binary_block(memoryview(np.ascontiguousarray(self.data, dtype="<f4")).cast("B"))

    @scpi(r"READ\?")
    def read(self) -> bytes:
        self.initiate()
        return self.fetch()


def parse_channel_list(text: str, n_cells: int) -> list[int] | None:
    """``ALL`` -> None; ``(@0,3,5:7)`` -> [0, 3, 5, 6, 7], each cell once, in the order given.

    A malformed list or a cell outside 0 .. n_cells-1 is a SCPI error (the old list stays).
    """
    value = text.strip()
    if value.upper() == "ALL":
        return None
    if not (value.startswith("(@") and value.endswith(")")):
        raise bad_parameter(f"channel list {value!r}: expected (@n,m:k) or ALL")
    cells: list[int] = []
    for item in value[2:-1].split(","):
        lo, _, hi = item.strip().partition(":")
        try:
            first, last = int(lo), int(hi) if hi else int(lo)
        except ValueError:
            raise bad_parameter(f"channel list {value!r}: {item.strip()!r} is not a cell number or range") from None
        if not (0 <= first < n_cells and 0 <= last < n_cells) or last < first:
            raise out_of_range(f"channel list {value!r}: cells are 0 .. {n_cells - 1}")
        cells.extend(range(first, last + 1))
    if len(set(cells)) != len(cells):
        raise bad_parameter(f"channel list {value!r} names a cell twice")
    return cells
