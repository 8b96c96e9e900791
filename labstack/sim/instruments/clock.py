"""The virtual lab's clock as an instrument, so labstack reaches simulated time over VISA.

SCPI::

    CLOCk:TIME?          simulated seconds since the lab started
    CLOCk:ADVance <s>    let <s> seconds pass (cells thermalize, fridge integrates)
    CLOCk:UTC?           simulated calendar time, ISO 8601 UTC

Nothing about the chip: no instrument answers with the seed or any ground-truth
quantity (a run's provenance records the lab description from the lab object).
"""

from __future__ import annotations

from labstack.sim.instruments.scpi import ScpiDevice, out_of_range, parse_float, scpi
from labstack.sim.lab import VirtualLab

MAX_ADVANCE_S = 7 * 24 * 3600.0


class VirtualClockInstrument(ScpiDevice):
    idn = "labstack,VCLOCK-1,0001,1.0"

    def __init__(self, lab: VirtualLab) -> None:
        super().__init__()
        self.lab = lab

    @scpi(r"CLOC(?:K)?:TIME\?")
    def time(self) -> str:
        return repr(self.lab.clock.now())

    @scpi(r"CLOC(?:K)?:ADV(?:ANCE)? (\S+)")
    def advance(self, value: str) -> None:
        seconds = parse_float(value)
        if not 0 <= seconds <= MAX_ADVANCE_S:
            raise out_of_range(f"advance {seconds} s outside 0 .. {MAX_ADVANCE_S:g} s")
        self.lab.sleep(seconds)

    @scpi(r"CLOC(?:K)?:UTC\?")
    def utc(self) -> str:
        return self.lab.clock.utcnow().isoformat()
