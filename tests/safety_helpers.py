"""A small 4-cell station file with safety sections, and a recorder of what reaches the chip."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SAFETY_STATION = """\
instruments:
  qdac1:
    type: qcodes_contrib_drivers.drivers.QDevil.QDAC2.QDac2
    address: TCPIP0::qdac1.virtual::5025::SOCKET
    init: {visalib: "@labstack"}
  qdac2:
    type: qcodes_contrib_drivers.drivers.QDevil.QDAC2.QDac2
    address: TCPIP0::qdac2.virtual::5025::SOCKET
    init: {visalib: "@labstack"}
  ls372:
    type: qcodes.instrument_drivers.Lakeshore.LakeshoreModel372
    address: TCPIP0::ls372.virtual::7777::SOCKET
    init: {visalib: "@labstack"}
  sampler:
    type: labstack.drivers.sampler.LabstackSampler
    address: TCPIP0::sampler.virtual::5025::SOCKET
    init: {visalib: "@labstack"}
  clock:
    type: labstack.drivers.lab_clock.VirtualLabClock
    address: TCPIP0::clock.virtual::5025::SOCKET
    init: {visalib: "@labstack"}
labstack:
  chip:
    cells: 4
    bias: [qdac1.ch01-ch04]
    couplers: [qdac2.ch01-ch03]
  readout: sampler
  thermometry: {instrument: ls372, mixing_chamber: ch06, chip: ch08, heater: sample_heater}
  clock: clock
  limits:
    qdac1.ch01-ch04.dc_constant_V: [-1.2, 1.2]
    qdac2.ch01-ch03.dc_constant_V: [-1.0, 1.0]
  ramps:
    qdac1.ch01-ch04.dc_constant_V: {max_step: 0.05, rate_V_per_s: 1.0}
    qdac2.ch01-ch03.dc_constant_V: {max_step: 0.1, rate_V_per_s: 2.0}
  interlocks:
    heater_max_range: 5
    heater_max_power_W: 1.0e-4
    heater_resistance_ohm: 120
    max_temperature_K: 0.5
"""


def write_station(tmp_path: Path, extra: str = "", replace: dict[str, str] | None = None) -> Path:
    """The safety station file, with ``extra`` lines appended under ``labstack:``."""
    text = SAFETY_STATION + extra
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "safe.yaml"
    path.write_text(text)
    return path


class ChipRecorder:
    """Every voltage the virtual DACs apply to the chip, with the lab time, read at the lab.

    Independent of labstack's own bookkeeping: it wraps ``VirtualLab.set_dac``.
    """

    def __init__(self, lab) -> None:
        self.lab = lab
        self.writes: list[tuple[float, int, int, float]] = []
        original = lab.set_dac

        def record(dac: int, channel: int, volts: float, **options: object) -> None:
            self.writes.append((lab.clock.now(), dac, channel, float(volts)))
            original(dac, channel, volts, **options)  # slew rate and filter, as the QDAC sets them

        lab.set_dac = record

    def channel(self, dac: int, channel: int) -> tuple[np.ndarray, np.ndarray]:
        rows = [(t, v) for t, d, c, v in self.writes if (d, c) == (dac, channel)]
        t, v = (np.array(x) for x in zip(*rows, strict=True)) if rows else (np.array([]), np.array([]))
        return t, v


def assert_within(recorder: ChipRecorder, dac: int, channel: int, start: float, limits, max_step, rate) -> int:
    """Every value in limits, every step <= max_step, steps no faster than ``rate``. Returns #writes."""
    t, v = recorder.channel(dac, channel)
    lo, hi = limits
    assert np.all((v >= lo) & (v <= hi)), v
    values = np.concatenate([[start], v])
    steps = np.abs(np.diff(values))
    assert np.all(steps <= max_step * (1 + 1e-9) + 1e-12), steps.max()
    # write k of size steps[k] holds the channel for steps[k] / rate before write k + 1
    needed, gaps = steps[:-1] / rate, np.diff(t)
    assert np.all(gaps >= needed - 1e-9), (gaps, needed)
    return len(v)
