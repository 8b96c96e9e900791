"""SCPI adapters over the virtual lab, one per instrument model, and the map from VISA host names.

A virtual instrument is found by the first label of its TCPIP host name:
``qdac<k>`` (QDAC-II number k, from 1), ``ls372`` (Lake Shore 372), ``sampler``
and ``clock``. Example: ``TCPIP0::qdac1.virtual::5025::SOCKET``.
"""

from __future__ import annotations

import re

from labstack.sim.instruments.clock import VirtualClockInstrument
from labstack.sim.instruments.ls372 import VirtualLakeshore372
from labstack.sim.instruments.qdac2 import VirtualQDac2
from labstack.sim.instruments.sampler import VirtualSampler
from labstack.sim.instruments.scpi import ScpiDevice, ScpiError
from labstack.sim.lab import VirtualLab

__all__ = ["ScpiDevice", "ScpiError", "VirtualInstruments"]


class VirtualInstruments:
    """The instruments of one virtual lab, created on first use and shared by all sessions."""

    def __init__(self, lab: VirtualLab) -> None:
        self.lab = lab
        self._devices: dict[str, ScpiDevice] = {}

    def names(self) -> list[str]:
        dacs = [f"qdac{k}" for k in range(1, self.lab.wiring.n_dacs + 1)]
        return [*dacs, "ls372", "sampler", "clock"]

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
        raise KeyError(f"no virtual instrument {name!r}; this lab has {', '.join(self.names())}")
