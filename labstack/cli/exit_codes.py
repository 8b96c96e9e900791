"""One table from exception to exit code, so every command means the same by each code.

====  =======================================================================
code  meaning
====  =======================================================================
0     the work ran and everything is fine
1     the work ran but something failed: a cell flagged, a node out of spec,
      a replay that differs, a run aborted; or it could not start because
      another process is writing the calibration state (the message names it)
2     bad input, caught before any instrument was touched: station file,
      ground truth, sequence file, arguments, unknown run or routine, or a
      value the safety layer refused
3     an instrument error: timeouts, garbage replies, lost connections that
      retries could not cure
====  =======================================================================
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from pyvisa.errors import VisaIOError

from labstack.calibrate import StateConflictError, StateFileError, StateLockedError
from labstack.data import RunNotFoundError
from labstack.distributed.specs import ChipSpecError
from labstack.measure import SequenceError
from labstack.measure.files import SequenceFileError
from labstack.safety import InstrumentFault, RunAborted, SafetyError
from labstack.service import ServerConfigError
from labstack.service.watch import LabUnreachable, NotSelfRunning
from labstack.session import ReplayError, UnknownRoutineError
from labstack.sim.truth import GroundTruthError
from labstack.station import StationConfigError, UnknownParameterError
from labstack.train import TargetError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INSTRUMENT = 0, 1, 2, 3


class BadArguments(ValueError):
    """Arguments that do not make sense together; the message says what to give instead."""


#: (exception types, exit code, what to print before the message); first match wins
EXIT_CODES: tuple[tuple[tuple[type[BaseException], ...], int, str], ...] = (
    ((VisaIOError, InstrumentFault, LabUnreachable), EXIT_INSTRUMENT, "instrument error: "),
    ((SafetyError,), EXIT_BAD_INPUT, "refused: "),
    ((RunAborted,), EXIT_FAILED, "aborted: "),
    ((StateLockedError, StateConflictError), EXIT_FAILED, "busy: "),
    (
        (
            BadArguments,
            StationConfigError,
            GroundTruthError,
            StateFileError,
            SequenceFileError,
            SequenceError,
            UnknownParameterError,
            RunNotFoundError,
            UnknownRoutineError,
            ReplayError,
            ChipSpecError,
            ServerConfigError,
            NotSelfRunning,
            TargetError,
        ),
        EXIT_BAD_INPUT,
        "",
    ),
)


def exit_code(exc: BaseException) -> tuple[int, str] | None:
    """The exit code and message prefix for ``exc``; None if it is a bug (let it raise)."""
    for types, code, prefix in EXIT_CODES:
        if isinstance(exc, types):
            return code, prefix
    return None


def run_command(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run one command; an expected failure prints one line and becomes its exit code."""
    try:
        return int(func(args))
    except Exception as exc:
        found = exit_code(exc)
        if found is None:
            raise
        code, prefix = found
        print(f"labstack: {prefix}{exc}", file=sys.stderr)
        return code
