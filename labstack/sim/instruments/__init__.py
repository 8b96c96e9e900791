"""SCPI adapters over the virtual lab, one per instrument model, and the map from VISA host names.

A virtual instrument is found by the first label of its TCPIP host name:
``qdac<k>`` (QDAC-II number k, from 1), ``ls372`` (Lake Shore 372), ``sampler``
and ``clock``; a lab with lock-in readout and a second DAC family also has
``lockin<k>`` (SR860 k, reading the lines behind preamp channel k), ``preamp``
and ``smu<k>`` (Keysight B2962A k, coupler lines 2k-2 and 2k-1), and ``triton``
(Oxford Instruments Triton, which its driver reaches over a raw TCP socket, not
VISA: :data:`RAW_SOCKET`); a lab wired through an on-chip DAC array
(``virtual_array.yaml``) has ``arraydac`` instead of the QDACs. Example:
``TCPIP0::qdac1.virtual::5025::SOCKET``. :data:`TWINS` names the model behind
each, so a station file that names an instrument without a twin is told which.
"""

from __future__ import annotations

import re

from labstack.sim.instruments.array_dac import VirtualArrayDac
from labstack.sim.instruments.b2962a import VirtualB2962A
from labstack.sim.instruments.clock import VirtualClockInstrument
from labstack.sim.instruments.ls372 import VirtualLakeshore372
from labstack.sim.instruments.preamp import VirtualPreamp
from labstack.sim.instruments.qdac2 import VirtualQDac2
from labstack.sim.instruments.sampler import VirtualSampler
from labstack.sim.instruments.scpi import ScpiDevice, ScpiError
from labstack.sim.instruments.sr860 import VirtualSR860
from labstack.sim.instruments.triton import VirtualTriton
from labstack.sim.lab import VirtualLab
from labstack.sim.lockin import LINES_PER_CHANNEL, LockinFrontEnd

__all__ = ["RAW_SOCKET", "TWINS", "ScpiDevice", "ScpiError", "VirtualInstruments"]

#: host-name pattern -> the instrument model its twin answers as
TWINS = {
    "qdac<k>": "QDevil QDAC-II",
    "ls372": "Lake Shore 372",
    "sampler": "labstack FPGA sampler",
    "clock": "labstack lab clock",
    "lockin<k>": "Stanford Research SR860",
    "preamp": "labstack low-noise preamplifier",
    "smu<k>": "Keysight B2962A",
    "triton": "Oxford Instruments Triton",
    "arraydac": "labstack on-chip DAC array",
}
#: twins whose drivers speak over a raw TCP socket (QCoDeS ``IPInstrument``), not VISA
RAW_SOCKET = frozenset({"triton"})
SMU_CHANNELS = 2


class VirtualInstruments:
    """The instruments of one virtual lab, created on first use and shared by all sessions."""

    def __init__(self, lab: VirtualLab) -> None:
        self.lab = lab
        self._devices: dict[str, ScpiDevice] = {}
        self._frontend: LockinFrontEnd | None = None

    @property
    def n_lockins(self) -> int:
        return -(-self.lab.truth.n_cells // LINES_PER_CHANNEL)

    @property
    def n_smus(self) -> int:
        return -(-self.lab.wiring.n_couplers // SMU_CHANNELS)

    @property
    def frontend(self) -> LockinFrontEnd:
        """The lock-in readout chain, shared by the preamp and every lock-in."""
        if self._frontend is None:
            self._frontend = LockinFrontEnd(self.lab, self.n_lockins)
        return self._frontend

    def names(self) -> list[str]:
        """The default station's instruments (what ``labstack serve`` serves)."""
        dacs = [f"qdac{k}" for k in range(1, self.lab.wiring.n_dacs + 1)]
        return [*dacs, "ls372", "sampler", "clock"]

    def second_lab_names(self) -> list[str]:
        """The lock-in lab's instruments (``oxford_lockin.yaml``), opened on demand."""
        lockins = [f"lockin{k}" for k in range(1, self.n_lockins + 1)]
        smus = [f"smu{k}" for k in range(1, self.n_smus + 1)]
        return [*lockins, "preamp", *smus, "triton"]

    def array_lab_names(self) -> list[str]:
        """The DAC-array lab's instruments (``virtual_array.yaml``), opened on demand."""
        return ["arraydac"]

    def _array_dac(self) -> VirtualArrayDac:
        """Element i < n_cells is bias line i, then coupler line i - n_cells, each on the
        lab's DAC line of that role, so the line physics stays the simulator's."""
        wiring = self.lab.wiring
        n_bias = self.lab.truth.n_cells

        def on_element(i: int, volts: float, slew: float, filter_name: str) -> None:
            dac, ch = wiring.bias_line(i) if i < n_bias else wiring.coupler_line(i - n_bias)
            self.lab.set_dac(dac, ch, volts, slew_V_per_s=slew, filter_name=filter_name)

        return VirtualArrayDac(on_element, n_bias, wiring.n_couplers)

    def get(self, name: str) -> ScpiDevice:
        if name not in self._devices:
            self._devices[name] = self._create(name)
        return self._devices[name]

    def _create(self, name: str) -> ScpiDevice:
        match = re.fullmatch(r"qdac(\d+)", name)
        if match:
            dac = int(match.group(1))
            if not 1 <= dac <= self.lab.wiring.n_dacs:
                raise KeyError(f"this virtual lab has qdac1..qdac{self.lab.wiring.n_dacs}, not {name}")
            return VirtualQDac2(
                lambda ch, v, slew, filt, dac=dac: self.lab.set_dac(
                    dac, ch, v, slew_V_per_s=slew, filter_name=filt
                ),
                serial=dac,
            )
        if name == "ls372":
            return VirtualLakeshore372(self.lab)
        if name == "sampler":
            return VirtualSampler(self.lab)
        if name == "clock":
            return VirtualClockInstrument(self.lab)
        if name == "preamp":
            return VirtualPreamp(self.frontend)
        if name == "triton":
            return VirtualTriton(self.lab)
        if name == "arraydac":
            return self._array_dac()
        match = re.fullmatch(r"lockin(\d+)", name)
        if match and 1 <= int(match.group(1)) <= self.n_lockins:
            return VirtualSR860(self.frontend, int(match.group(1)))
        match = re.fullmatch(r"smu(\d+)", name)
        if match and 1 <= int(match.group(1)) <= self.n_smus:
            k = int(match.group(1))
            first = (k - 1) * SMU_CHANNELS
            return VirtualB2962A(lambda ch, v: self.lab.set_coupler(first + ch - 1, v), serial=k)
        have = ", ".join([*self.names(), *self.second_lab_names(), *self.array_lab_names()])
        raise KeyError(f"no virtual instrument {name!r}; this lab has {have}")
