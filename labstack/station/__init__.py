"""The station and its lab object: station files in, one :class:`LabStation` out.

* :mod:`~labstack.station.files` reads and checks a station file (errors name the
  file, line and key) before anything is opened.
* :mod:`~labstack.station.load` opens it: QCoDeS station, limits, safety layer.
* :mod:`~labstack.station.lab_station` is the lab object everything above receives:
  the QCoDeS station, chip layout, clock, safety layer, run control, provenance.
* :mod:`~labstack.station.parameters` is the one resolver of dotted parameter names.

Imports: clock, safety (below). Imported by measure, calibrate, calibrations, visa,
session and everything above. It never imports the simulator: a station reaches the
virtual lab only through the PyVISA backend name in its instruments' ``visalib``.
"""

from labstack.station.files import (
    VISALIB_SUFFIX,
    ChipLayout,
    StationConfigError,
    StationFile,
    expand_channels,
    read_station_file,
    station_path,
)
from labstack.station.lab_station import LabStation, Provenance
from labstack.station.load import close_station, load_station
from labstack.station.parameters import ParamRef, UnknownParameterError, find_parameter

__all__ = [
    "VISALIB_SUFFIX",
    "ChipLayout",
    "LabStation",
    "ParamRef",
    "Provenance",
    "StationConfigError",
    "StationFile",
    "UnknownParameterError",
    "close_station",
    "expand_channels",
    "find_parameter",
    "load_station",
    "read_station_file",
    "station_path",
]
