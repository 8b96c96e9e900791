"""What the engine hands every node: the station, its clock, where data go, the state.

A node reaches the outside world only through its :class:`Context`, so the same
node runs against hardware, the virtual lab, or a toy station in a test. The
``services`` dict is deliberately open: the measurement runner, a stored-run
loader or a plotter can be passed in without the engine knowing about them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labstack.calibrate.state import CalibrationState
from labstack.clock import Clock, clock_of

STATE_DIRNAME = "calibration_state"


@dataclass
class Context:
    """Everything a node may use while acquiring data."""

    station: Any
    clock: Clock
    data_dir: Path
    state: CalibrationState
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("labstack.calibrate"))
    progress: bool = False
    services: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        data_dir: str | os.PathLike[str],
        station: Any = None,
        *,
        clock: Clock | None = None,
        state: CalibrationState | None = None,
        logger: logging.Logger | None = None,
        progress: bool = False,
        services: dict[str, Any] | None = None,
    ) -> Context:
        """A context whose clock is the station's and whose state sits next to the data.

        The state defaults to ``<data_dir>/calibration_state/``; the clock to
        :func:`labstack.clock.clock_of` the station (wall time if it has none).
        """
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(
            station=station,
            clock=clock if clock is not None else clock_of(station),
            data_dir=data_dir,
            state=state if state is not None else CalibrationState.load(data_dir / STATE_DIRNAME),
            logger=logger or logging.getLogger("labstack.calibrate"),
            progress=progress,
            services=dict(services or {}),
        )

    def service(self, name: str) -> Any:
        """A named service, with an error that says which ones exist if it is missing."""
        try:
            return self.services[name]
        except KeyError:
            raise KeyError(
                f"calibration context has no service {name!r} (have: {sorted(self.services)})"
            ) from None
