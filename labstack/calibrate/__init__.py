"""The calibration engine: nodes on a dependency graph, walked the Optimus way.

See :mod:`labstack.calibrate.graph` for the algorithm, :mod:`labstack.calibrate.node`
for how a node is written, and :mod:`labstack.calibrate.state` for the versioned
calibration state on disk (that module alone reads and writes its files).

Imports: station, clock (below). Imported by calibrations, session and everything
above; it never imports a calibration, the runner or presentation (notebook display
of its objects is registered from :mod:`labstack.presentation`).

A node module in ``calibrations/`` looks like::

    NAME = "bias_transfer"
    DEPENDS_ON = ("readout",)
    TIMEOUT_S = 4 * 3600

    @dataclass
    class Parameters:
        span_V: float = 0.3
        tolerance_V: float = 0.002

    def acquire(ctx, params, mode):            # Mode.CHECK: few points; CALIBRATE: full
        sweep = Sweep.over("bias", ...)        # a sequence, run on ctx.station
        return run_sequence(sweep, ctx.station, name=NAME, data_dir=ctx.data_dir,
                            state_version=ctx.state.version).dataset()

    def fit(data, params):                     # pure: re-fit any stored dataset
        return fit_each(per_cell(data), lambda d: fit_logistic(d.V, d.n_plus, d.shots))

    def check(results, params, state):         # -> in_spec / out_of_spec / bad_data
        return combine(FitQuality().judge(...), Tolerance(params.tolerance_V).judge(...))

    def update(results, params):               # -> StateChange the engine records
        change = StateChange()
        for cell, f in results.items():
            change.add_fit(f"cells.{cell}", f, {"V0": ("bias_offset_V", "V")})
        return change

and is run with::

    ctx = Context.create(data_dir, station)    # clock from the station, state next to data
    graph = CalibrationGraph(ctx)
    graph.add_module(bias_transfer)
    graph.calibrate_all()                      # cold chip: everything; again: only stale

Cyclic dependencies (offsets measured around coupler zeros measured around the
offsets) are fixed-point groups: members declare ``FIXED_POINT = "bias_loop"`` and
``CONVERGES = ("cells.*.bias_offset_V",)``, and the walk calibrates them again until
those keys move by no more than their standard errors say noise would
(:mod:`labstack.calibrate.fixed_point`). A node declaring ``PER_CELL = True`` is
recalibrated only for the cells its ``check`` names (``Verdict.about(cell)``); a
node declaring ``CONSUMES`` (:mod:`labstack.calibrate.consumes`) stays fresh when
such a per-cell recalibration of a dependency moved what it reads by no more than
it tolerates.
"""

from labstack.calibrate.change import StateChange, Update
from labstack.calibrate.consumes import RELATIVE, Uses
from labstack.calibrate.context import Context
from labstack.calibrate.dag import CycleError, MissingDependencyError
from labstack.calibrate.fixed_point import Convergence, FixedPoint
from labstack.calibrate.graph import NOT_CONVERGED, CalibrationGraph, LogEntry, StateCheck, Status
from labstack.calibrate.node import Node, run_id_of
from labstack.calibrate.records import Entry, NodeRecord, VersionInfo
from labstack.calibrate.spec import (
    FitQuality,
    Mode,
    Spec,
    Tolerance,
    Verdict,
    combine,
    family_n_sigma,
)
from labstack.calibrate.state import (
    STATE_DIRNAME,
    CalibrationState,
    StateConflictError,
    StateDamagedError,
    StateDiff,
    StateFileError,
    StateLockedError,
)

__all__ = [
    "NOT_CONVERGED",
    "RELATIVE",
    "Convergence",
    "FixedPoint",
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
    "StateConflictError",
    "StateDamagedError",
    "StateDiff",
    "StateFileError",
    "StateLockedError",
    "Status",
    "Tolerance",
    "Update",
    "Uses",
    "Verdict",
    "VersionInfo",
    "combine",
    "family_n_sigma",
    "run_id_of",
]
