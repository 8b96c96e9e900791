"""Shared fixtures: fresh virtual labs and stations, closed after each test."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Iterator

import pytest
import pyvisa
from qcodes.instrument import Instrument

from labstack.calibrate import Context
from labstack.clock import VirtualClock
from labstack.sim.lab import VirtualLab
from labstack.visa import open_station

_instances = itertools.count()
#: pytest imports this file as ``conftest``, and a test that imports ``tests.conftest``
#: gets a second copy of it with a counter of its own; the tag keeps their labels apart
_COPY_TAG = secrets.token_hex(3)

#: realistic chips every acceptance test runs on; fixed before the routines were adapted
#: to the realistic chip, never to be picked to make a test pass
ACCEPTANCE_SEEDS = (5, 11, 21)


def lab_description(**options: object) -> str:
    """A description that gives a lab of its own (PyVISA shares one lab per string).

    The label is unique in the process whichever copy of this module made it: with
    the counter alone, a fixture (``conftest``'s copy) and a test module (``tests.conftest``'s)
    made the same label, and the second test got the first one's lab, already used:
    its data then depended on which tests its worker had run before.
    """
    options.setdefault("instance", f"t{next(_instances)}-{_COPY_TAG}")
    return ",".join(f"{k}={v}" for k, v in options.items())


def lab_of(description: str) -> VirtualLab:
    """The VirtualLab behind a description (tests read its ground truth and logs)."""
    return pyvisa.ResourceManager(f"{description}@labstack").visalib.lab


@pytest.fixture
def clock() -> VirtualClock:
    """A virtual clock at zero, for engine tests without a station."""
    return VirtualClock()


@pytest.fixture
def ctx(tmp_path, clock) -> Context:
    """A calibration context on ``clock`` with no station, its data in the test's tmp dir."""
    return Context.create(tmp_path / "data", station=None, clock=clock)


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


#: modules that take a minute or more of one worker, longest first: xdist hands out whole
#: modules (``--dist loadfile``) in collection order, so starting these first keeps a
#: worker from picking one up near the end while the other has finished
SLOW_MODULES_FIRST = (  # quiet --durations=0 totals, 2 workers: 110 s down to 21 s
    "test_notebooks.py",
    "test_family.py",
    "test_bias_scurve.py",
    "test_distributed_chips.py",
    "test_second_station.py",
    "test_routines_graph.py",
    "test_chip_routines.py",
    "test_service_server.py",
    "test_train_chip.py",
    "test_dashboard_browser.py",
    "test_cli.py",
)


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(SLOW_MODULES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
