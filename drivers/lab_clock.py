"""QCoDeS driver for the virtual lab's clock: the station clock of a virtual station.

It implements :class:`labstack.clock.Clock` over SCPI, so waiting for a fridge
to settle on the virtual lab advances simulated time instead of sleeping. It knows
time only: nothing of the chip (its seed, its truth) is reachable through it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from qcodes.instrument import VisaInstrument
from qcodes.parameters import Parameter

from ._replies import ReplyError, float_reply


class VirtualLabClock(VisaInstrument):
    """Simulated time of a ``@labstack`` virtual lab."""

    default_terminator = "\n"
    is_virtual = True

    def __init__(self, name: str, address: str, **kwargs: Any) -> None:
        super().__init__(name, address, **kwargs)
        self.time: Parameter = self.add_parameter(
            "time", label="Simulated time", unit="s", get_cmd="CLOC:TIME?", get_parser=float
        )
        self.connect_message()

    def now(self) -> float:
        return float_reply(self.ask("CLOC:TIME?"), self.name, "CLOC:TIME?")

    def sleep(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"cannot sleep a negative time ({seconds} s)")
        if seconds > 0:
            self.write(f"CLOC:ADV {seconds!r}")

    def utcnow(self) -> datetime:
        text = self.ask("CLOC:UTC?")
        try:
            return datetime.fromisoformat(text.strip())
        except ValueError:
            raise ReplyError(f"{self.name}: 'CLOC:UTC?' replied {text[:40]!r}, not an ISO 8601 time") from None
