"""The preamp's gain and low-pass as the SR860 sees them, on the ideal chip.

Moved from ``test_lab_instruments.py`` to run on a station of its own: on the
realistic chip a window's reading carries the readout amplifier's white and 1/f
noise (seed 5, cell 0: about 5 % of a 1.5 mV line level from one window to the
next), which says nothing about the preamp, and a gain ratio to 2 % needs a level
that holds still (``realism=ideal``). Its own module, because two stations of the
same file cannot be open at once in one process (instrument names are unique).
"""

from __future__ import annotations

import math
import secrets

import pytest
from qcodes.instrument import Instrument

from labstack.visa import open_station


@pytest.fixture(scope="module")
def station():
    lab = f"seed=5,cells=16,realism=ideal,instance=preamp-{secrets.token_hex(4)}"
    with open_station("oxford_lockin", lab=lab) as st:
        yield st
    Instrument.close_all()


def test_preamp_gain_and_filter_scale_the_lockin_reading(station) -> None:
    """Gain 100 -> 200 doubles R; a 1 kHz cutoff attenuates and lags as a single pole."""
    li, ch = station.lockin1, station.preamp.ch1
    li.amplitude(0.1)
    li.time_constant(0.1)
    li.sensitivity(1.0)
    station.qdac1.ch01.dc_constant_V(1.0)  # cell 0 at +1: a steady level
    readings = {}
    for gain, cutoff in ((100, 1e6), (200, 1e6), (200, 1e3)):
        ch.gain(gain)
        ch.lowpass(cutoff)
        station.clock.sleep(2.0)
        readings[(gain, cutoff)] = li.R()
    assert readings[(200, 1e6)] / readings[(100, 1e6)] == pytest.approx(2.0, rel=0.02)
    f = float(li.frequency())
    expected = 1 / math.hypot(1, f / 1e3) / (1 / math.hypot(1, f / 1e6))
    assert readings[(200, 1e3)] / readings[(200, 1e6)] == pytest.approx(expected, rel=0.02)
