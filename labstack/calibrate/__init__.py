"""The calibration engine: nodes on a dependency graph, walked the Optimus way.

See :mod:`labstack.calibrate.graph` for the algorithm, :mod:`labstack.calibrate.node`
for how a node is written, and :mod:`labstack.calibrate.state` for the versioned
calibration state on disk.
"""

from labstack.calibrate.change import StateChange, Update
from labstack.calibrate.context import STATE_DIRNAME, Context
from labstack.calibrate.dag import CycleError, MissingDependencyError
from labstack.calibrate.graph import CalibrationGraph, LogEntry, StateCheck, Status
from labstack.calibrate.node import Node, run_id_of
from labstack.calibrate.records import Entry, NodeRecord, VersionInfo
from labstack.calibrate.spec import FitQuality, Mode, Spec, Tolerance, Verdict, combine
from labstack.calibrate.state import CalibrationState, StateDiff

__all__ = [
    "STATE_DIRNAME",
    "CalibrationGraph",
    "CalibrationState",
    "Context",
    "CycleError",
    "Entry",
    "FitQuality",
    "LogEntry",
    "MissingDependencyError",
    "Mode",
    "Node",
    "NodeRecord",
    "Spec",
    "StateChange",
    "StateCheck",
    "StateDiff",
    "Status",
    "Tolerance",
    "Update",
    "Verdict",
    "VersionInfo",
    "combine",
    "run_id_of",
]
