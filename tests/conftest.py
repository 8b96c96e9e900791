"""Shared fixtures: fresh virtual labs and stations, closed after each test."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest
import pyvisa
from qcodes.instrument import Instrument

from labstack.sim.lab import VirtualLab
from labstack.visa import open_station

_instances = itertools.count()

#: realistic chips every acceptance test runs on; fixed before the routines were adapted
#: to the realistic chip, never to be picked to make a test pass
ACCEPTANCE_SEEDS = (5, 11, 21)


def lab_description(**options: object) -> str:
    """A description that gives a lab of its own (PyVISA shares one lab per string)."""
    options.setdefault("instance", f"t{next(_instances)}")
    return ",".join(f"{k}={v}" for k, v in options.items())


def lab_of(description: str) -> VirtualLab:
    """The VirtualLab behind a description (tests read its ground truth and logs)."""
    return pyvisa.ResourceManager(f"{description}@labstack").visalib.lab


@pytest.fixture
def virtual_station() -> Iterator[Callable[..., object]]:
    """Factory: ``virtual_station(seed=7, cells=16)`` -> (station, lab)."""
    stations = []

    def make(station_file: str = "virtual", **options: object):
        description = lab_description(**options)
        station = open_station(station_file, lab=description)
        stations.append(station)
        return station, lab_of(description)

    yield make
    for station in stations:
        station.close()
    Instrument.close_all()
