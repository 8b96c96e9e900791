"""Switching-point acquisition: single shots of every cell, fast, at a temperature plateau.

Not a node (no ``NAME``): the thermalization node measures its switching rates with it,
and the effective-temperature node takes the warm points for it on the way down from
its last plateau (:func:`labstack.calibrations.effective_temperature.acquire`), so that
the fridge warms and cools once for both. The warm points are recorded in the
effective-temperature run with the :class:`Settings` they were taken with; the
thermalization node uses them only when its own parameters ask for the same
(:func:`matches`) and they are recent (:data:`Settings.max_age_s`), and measures its base
points itself.

Sampling: as fast as the readout allows (the thermalization node's docstring says why):
``Delta = tau_a ln(1 / max_memory)`` from the amplifier's calibrated low-pass, at most
``max_rate_Hz``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import xarray as xr

from labstack.calibrate import Context
from labstack.calibrations._common import line_limits, run, sample_cells, settle_time
from labstack.data import values_in
from labstack.fit import two_level_threshold
from labstack.fit.telegraph import filtered_correlation_time
from labstack.measure import Sweep


@dataclass(frozen=True)
class Settings:
    """What a switching acquisition is taken with (the thermalization node's defaults)."""

    #: plateaus above base, as multiples of the base effective temperature
    t_eff_steps: tuple[float, ...] = (1.08, 1.16)
    n_samples: int = 20000
    #: sample rate when the readout's bandwidth is not calibrated
    sample_rate_Hz: float = 4e6
    #: fraction of the previous reading the amplifier's low-pass may leave in a sample
    max_memory: float = 0.25
    max_rate_Hz: float = 10e6
    settle_s: float = 1e-3
    #: time constants to wait at each temperature: an acquisition lasts milliseconds
    #: and the chip thermometer is read right before it, so steady beats exact
    settle_taus: float = 3.0
    limits_V: tuple[float, float] = (-1.5, 1.5)
    #: warm points older than this (lab time, s) are not used: the chip drifts. The points
    #: are taken before the effective-temperature node's cool-down, and the bias loop's
    #: second pass runs before this node: on a fridge of the realistic range (time constant
    #: at base up to 1500 s, three of them to cool) they are 1-2 h old when it comes, and a
    #: limit of one hour made a 64-cell grid's node heat the fridge again (70 min of fridge
    #: time). Within two hours the drift that matters here is small: the points sit at the
    #: cells' zero-field offsets, where an offset's wander moves a rate only in second order
    max_age_s: float = 7200.0

    def comparable(self) -> dict[str, Any]:
        """The fields that change what a point measures (not how long it may be kept)."""
        out = asdict(self)
        out.pop("max_age_s")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def matches(recorded: dict[str, Any], wanted: Settings) -> bool:
    """Whether points taken with ``recorded`` (:meth:`Settings.comparable`) are what ``wanted`` asks."""
    want = wanted.comparable()
    return {k: recorded.get(k) for k in want} == want


def lowpass_tau(ctx: Context) -> float | None:
    """The amplifier's low-pass time constant as the readout node measured it; None if it has not."""
    key = "readout.lowpass_tau_s"
    if key not in ctx.state or not ctx.state.get(key).valid:
        return None
    return float(ctx.state.value(key))


def sample_rate(ctx: Context, settings: Settings) -> float:
    """The fastest rate whose samples the readout's low-pass keeps apart (its calibrated time constant)."""
    tau = lowpass_tau(ctx)
    if tau is None:
        return settings.sample_rate_Hz
    return float(min(settings.max_rate_Hz, 1.0 / (tau * math.log(1.0 / settings.max_memory))))


def readout_memory(ctx: Context, period: float) -> float | None:
    """The share of the previous reading the amplifier's low-pass leaves in a sample taken
    every ``period``: ``exp(-period / tau_a)``; None if the readout node has not measured ``tau_a``."""
    tau = lowpass_tau(ctx)
    return None if tau is None else float(math.exp(-period / tau))


def plateau_temperatures(t_base_K: float, t_x: float, n: float, steps: tuple[float, ...]) -> list[float]:
    """Chip temperatures whose T_eff is ``steps`` times that at ``t_base_K`` (0 = base)."""
    base = (t_base_K**n + t_x**n) ** (1 / n)
    out = [0.0]
    for k in steps:
        target = k * base
        out.append(float((target**n - t_x**n) ** (1 / n)))
    return out


@dataclass
class Point:
    """One bias point at one plateau: the chip temperature read before it, the cells' states."""

    t_chip: float
    bias_widths: float
    states: np.ndarray  # (cell, sample) bool
    voltage_tau_samples: np.ndarray  # (cell,)


def prepare(ctx: Context, settings: Settings, n_samples: int) -> tuple[Any, float, float | None]:
    """Sampler at the switching rate: (the read step, the sample period, the readout's memory)."""
    layout = ctx.station.layout
    read = sample_cells(ctx.station, layout, sample_rate(ctx, settings), n_samples)
    period = 1.0 / float(ctx.station.components[layout.readout].sample_rate())
    return read, period, readout_memory(ctx, period)


def measure(
    ctx: Context,
    settings: Settings,
    read: Any,
    memory: float | None,
    t_chip: float,
    ks: tuple[float, ...],
    v0: np.ndarray,
    width: np.ndarray,
    good: np.ndarray,
    name: str,
    metadata: dict[str, Any],
) -> tuple[list[Point], str]:
    """Sample every cell at ``V0 + k w`` for each ``k`` in ``ks`` (one stored run, named
    ``name``), the chip thermometer having just read ``t_chip``; its points and run id."""
    layout = ctx.station.layout
    n = layout.n_cells
    low, high = line_limits(ctx, layout.bias, settings.limits_V)
    setpoints = {
        line: np.clip([v0[i] + k * width[i] if good[i] else 0.0 for k in ks], low[i], high[i])
        for i, line in enumerate(layout.bias)
    }
    seq = Sweep("bias_point", setpoints, body=[read], settle=settle_time(ctx, settings.settle_s),
                coord=np.asarray(ks, dtype=float))
    ds = run(ctx, name, seq, metadata)
    # each cell split halfway between the two levels of this very run: the readout offset
    # has drifted since the readout node ran, and a threshold off-centre misreads one
    # state more than the other, which the rate estimate does not allow for
    readings = values_in(ds["samples"], "bias_point", "cell", "sample")
    thresholds = np.array([two_level_threshold(readings[:, c].ravel())[0] for c in range(n)])
    states = readings > thresholds[None, :, None]
    # the correlation time the voltages show, before thresholding loses short dwells
    tau_samples = (filtered_correlation_time(readings, memory) if memory is not None
                   else np.full(readings.shape[:2], np.nan))
    points = [Point(t_chip, float(k), states[j], tau_samples[j]) for j, k in enumerate(ks)]
    return points, str(ds.attrs["run_id"])


#: the variables of an effective-temperature run that hold the warm points it took
WARM = ("switching_states", "switching_T_chip", "switching_voltage_tau_samples")


def warm_variables(points: list[Point]) -> dict[str, Any]:
    """The warm points as variables of another node's dataset (their own dims)."""
    return {
        "switching_states": (("switching_point", "cell", "switching_sample"),
                             np.stack([p.states for p in points]).astype(np.uint8)),
        "switching_T_chip": (("switching_point",), np.array([p.t_chip for p in points]), {"units": "K"}),
        "switching_voltage_tau_samples": (("switching_point", "cell"),
                                          np.stack([p.voltage_tau_samples for p in points])),
    }


def warm_points(dataset: xr.Dataset) -> list[Point]:
    """The warm points recorded in ``dataset`` (:func:`warm_variables`), at ``V0``."""
    if any(v not in dataset for v in WARM):
        return []
    states = dataset["switching_states"].values.astype(bool)
    t_chip = dataset["switching_T_chip"].values.astype(float)
    tau = dataset["switching_voltage_tau_samples"].values.astype(float)
    return [Point(float(t_chip[j]), 0.0, states[j], tau[j]) for j in range(len(t_chip))]
