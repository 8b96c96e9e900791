"""The lab sessions the golden files record; the golden tests run the very same code."""

from __future__ import annotations

from typing import Any

import numpy as np

from labstack.measure import Read, Sweep

LAB = "seed=7,cells=4"
#: a small calibration of the default (realistic) chip: 4 cells, bias_scurve and what it
#: depends on (readout, cryostat), 21 bias points of 400 samples, 500 readout samples per
#: level, a readout wander trace of 12 acquisitions (40 by default: kept short so the
#: golden files stay small); no per-cell windows (21 points over 2 V are coarse for
#: these cells' ~50 mV widths, so every cell would get a window run of its own)
CALIBRATION_NAMES = ["bias_scurve"]
CALIBRATION_PARAMS = {
    "bias_scurve": {"n_points": 21, "n_samples": 400, "windows": False},
    "readout": {"n_samples": 500, "trace_points": 12},
}


def measurement() -> Sweep:
    """Cell 0's bias stepped through zero, reading the fridge and every cell."""
    return Sweep.over(
        "v",
        "qdac1.ch01.dc_constant_V",
        np.linspace(-0.2, 0.2, 5),
        Read("ls372.ch06.temperature", name="t_mc"),
        Read("sampler.samples", name="samples"),
        settle=1e-3,
    )


def scpi_session(station: Any) -> tuple[float, np.ndarray]:
    """What a lab script does by hand: set biases, read the fridge, sample, wait."""
    station.qdac1.ch01.dc_constant_V(0.1)
    station.qdac1.ch02.dc_constant_V(-0.2)
    temperature = station.ls372.ch06.temperature()
    station.sampler.n_samples(8)
    samples = station.sampler.samples()
    station.clock.sleep(1.0)
    return temperature, samples
