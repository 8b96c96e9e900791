"""What the engine hands every node: the station, its clock, where data go, the state.

A node reaches the outside world only through its :class:`Context`, so the same
node runs against hardware, the virtual lab, or a toy station in a test.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from labstack.calibrate.state import STATE_DIRNAME, CalibrationState
from labstack.clock import Clock, WallClock
from labstack.station import LabStation


@dataclass
class Context:
    """Everything a node may use while acquiring data."""

    station: LabStation | None
    clock: Clock
    data_dir: Path
    state: CalibrationState
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("labstack.calibrate"))
    progress: bool = False
    #: during a per-cell recalibration: the cells to re-measure (cell -> why); None: all.
    #: Set by the engine around ``acquire`` only; the other cells stay at their
    #: calibrated operating points.
    selection: Mapping[int, str] | None = None

    @classmethod
    def create(
        cls,
        data_dir: str | os.PathLike[str],
        station: LabStation | None = None,
        *,
        clock: Clock | None = None,
        state: CalibrationState | None = None,
        logger: logging.Logger | None = None,
        progress: bool = False,
    ) -> Context:
        """A context whose clock is the station's and whose state sits next to the data.

        The state defaults to ``<data_dir>/calibration_state/``; the clock to the
        station's (wall time if there is no station).
        """
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        if clock is None:
            clock = station.clock if station is not None else WallClock()
        return cls(
            station=station,
            clock=clock,
            data_dir=data_dir,
            state=state if state is not None else CalibrationState.load(data_dir / STATE_DIRNAME),
            logger=logger or logging.getLogger("labstack.calibrate"),
            progress=progress,
        )

