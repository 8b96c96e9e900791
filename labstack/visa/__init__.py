"""Where the drivers' SCPI goes: labstack's PyVISA backends, and stations opened through them.

* :mod:`~labstack.visa.base`: what the three backends share (sessions, attributes).
* :mod:`~labstack.visa.virtual_lab`: ``@labstack``, the virtual lab's instruments
  (:mod:`labstack.sim`) as VISA resources; PyVISA finds it through ``pyvisa_labstack``.
* :mod:`~labstack.visa.transcript`: ``@labstack_record`` / ``@labstack_playback``,
  every SCPI exchange written to a transcript and played back to the drivers.
* :mod:`~labstack.visa.stations`: :func:`open_station` (station files for virtual
  chips of any size, wired through QDAC-IIs or one DAC array), :func:`record_station`, :func:`playback_station`.

Imports: station, sim (below). Imported by session, cli, pytest_plugin and
distributed. Calibrations never import it: they see the lab only through the
station's instruments.
"""

from labstack.visa.stations import (
    finish_recording,
    open_station,
    playback_station,
    record_station,
    verify_playback,
    virtual_array_station_yaml,
    virtual_station_yaml,
)
from labstack.visa.transcript import TranscriptMismatch

__all__ = [
    "TranscriptMismatch",
    "finish_recording",
    "open_station",
    "playback_station",
    "record_station",
    "verify_playback",
    "virtual_array_station_yaml",
    "virtual_station_yaml",
]
