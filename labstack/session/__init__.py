"""A calibration session: calibrate a station's chip, record it, ask its status, replay it.

* :mod:`~labstack.session.run`: :func:`calibrate_station` runs the graph of every
  installed routine (found through entry points, never imported by name).
* :mod:`~labstack.session.record`: each calibration is recorded as a run of its own.
* :mod:`~labstack.session.status`: which nodes are fresh, stale or failed, measuring nothing.
* :mod:`~labstack.session.compare` (pure) and :mod:`~labstack.session.replay`
  (re-running on a fresh virtual lab): did a run come out the same?

Imports: calibrate, measure, data, station, visa (below). Imported by presentation,
distributed, cli and pytest_plugin. Calibrations never import it.
"""

from labstack.session.compare import ReplayReport
from labstack.session.replay import ReplayError, replay_run
from labstack.session.run import (
    CalibrationReport,
    NodeResult,
    UnknownRoutineError,
    build_graph,
    calibrate_station,
    routines,
)
from labstack.session.status import StatusReport, calibration_status

__all__ = [
    "CalibrationReport",
    "NodeResult",
    "ReplayError",
    "ReplayReport",
    "StatusReport",
    "UnknownRoutineError",
    "build_graph",
    "calibrate_station",
    "calibration_status",
    "replay_run",
    "routines",
]
