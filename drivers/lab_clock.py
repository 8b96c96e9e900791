"""QCoDeS driver for the virtual lab's clock: the station clock of a virtual station.

It implements :class:`labstack.clock.Clock` over SCPI, so waiting for a fridge
to settle on the virtual lab advances simulated time instead of sleeping. It knows
time only: nothing of the chip (its seed, its truth) is reachable through it.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from qcodes.instrument import VisaInstrument
from qcodes.parameters import Parameter

from ._replies import ReplyError, float_reply

#: the longest single ``CLOC:ADV`` this driver sends (the instrument accepts up to 7 days)
MAX_STEP_S = 86400.0


class VirtualLabClock(VisaInstrument):
    """Simulated time of a ``@labstack`` virtual lab."""

    default_terminator = "\n"
    is_virtual = True

    def __init__(self, name: str, address: str, **kwargs: Any) -> None:
        super().__init__(name, address, **kwargs)
        self.time: Parameter = self.add_parameter(
            "time", label="Simulated time", unit="s", get_cmd="CLOC:TIME?", get_parser=float
        )
        #: a time the lab has certainly reached, known without asking it: the last reading
        #: plus every advance since (time never goes back, whoever else moves it). A ramp
        #: whose next step was allowed at or before it needs no clock query; every SCPI
        #: round trip costs a calibration wall time, and a ramped set asked twice
        self.reached = -math.inf
        self.connect_message()

    def now(self) -> float:
        value = float_reply(self.ask("CLOC:TIME?"), self.name, "CLOC:TIME?")
        self.reached = max(self.reached, value)
        return value

    def sleep(self, seconds: float) -> None:
        seconds = float(seconds)
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"{self.name}: cannot sleep {seconds} s (a finite time >= 0)")
        # the instrument advances at most MAX_ADVANCE_S per command and refuses more by
        # queueing an error, which *OPC? does not report: a long wait goes in steps, so
        # that it is never silently skipped
        while seconds > 0:
            step = min(seconds, MAX_STEP_S)
            # answered once the lab has advanced: a served lab reads each instrument's socket
            # on its own, so a bare write could be overtaken by a write to another
            # instrument sent after it (a bias set before the wait instead of after)
            self.ask(f"CLOC:ADV {step!r};*OPC?")
            self.reached += step  # it advanced from a time at or after the old floor
            seconds -= step

    def utcnow(self) -> datetime:
        text = self.ask("CLOC:UTC?")
        try:
            return datetime.fromisoformat(text.strip())
        except ValueError:
            raise ReplyError(f"{self.name}: 'CLOC:UTC?' replied {text[:40]!r}, not an ISO 8601 time") from None
