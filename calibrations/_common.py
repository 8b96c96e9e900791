"""Small helpers the chip routines share: idle couplers, run a sequence, read cell arrays.

Not a routine itself (no ``NAME``), so it is not registered as an entry point.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from labstack.calibrate import Context
from labstack.calibrations.virtual_bias import coupler_zeros
from labstack.measure import Read, Step, run_sequence
from labstack.safety.ramp import set_together
from labstack.station import ChipLayout


def set_lines(ctx: Context, names: Sequence[str], volts: Iterable[float]) -> None:
    """Lines ``names`` to ``volts``, their ramps side by side (one after another, each line's
    ramp from where the previous node left it adds up over the chip)."""
    set_together([ctx.station.parameter(name) for name in names], [float(v) for v in volts])


def idle_couplers(ctx: Context, layout: ChipLayout) -> None:
    """Couplers at their calibrated zero-coupling voltage (0 V until the coupler node found it,
    and for a flagged coupler, whose entry has no value)."""
    set_lines(ctx, layout.couplers, coupler_zeros(ctx.state, len(layout.couplers)))


def sample_cells(station: Any, layout: ChipLayout, rate_Hz: float, n_samples: int) -> Read:
    """Set the readout sampler's rate and count; the step that reads every cell's samples.

    The read's dims are ``(cell, sample)`` and its variable is ``samples``, as every
    routine's fit expects.
    """
    sampler = station.components[layout.readout]
    sampler.sample_rate(rate_Hz)
    sampler.n_samples(n_samples)
    return Read(f"{layout.readout}.samples", dims=("cell", "sample"), name="samples")


#: successive samples of a check this many correlation times apart are independent draws
#: (lag-1 correlation e^-5 < 1 %)
DECORRELATION_TAUS = 5.0


def decorrelated_rate(ctx: Context, slowest_Hz: float, fastest_Hz: float) -> float:
    """The fastest sample rate, within ``[slowest_Hz, fastest_Hz]``, whose samples are
    :data:`DECORRELATION_TAUS` stored correlation times apart for every cell a check measures.

    The correlation times (``cells.<i>.tau_c_s``, :mod:`.thermalization`, at zero field,
    the longest along an S-curve) are the chip's own: a fixed rate is either slow for a
    chip of microsecond cells or correlated for one whose slowest cell takes a tenth of a
    millisecond. ``slowest_Hz`` when no cell with a calibrated S-curve has one stored (no
    thermalization node yet): what a check sampled before. A cell whose time was not
    measured (its rates too fast to resolve, as a rule: slow rates are the easy ones) does
    not hold the others back; should it be slower, its fit counts its correlated draws as
    fewer (``effective_count``): a larger error, never a wrong one."""
    n = ctx.station.layout.n_cells
    measured = np.isfinite(cell_values(ctx, n, "bias_offset_V"))
    tau = cell_values(ctx, n, "tau_c_s")[measured]
    tau = tau[np.isfinite(tau) & (tau > 0)]
    if tau.size == 0:
        return float(slowest_Hz)
    return float(np.clip(1.0 / (DECORRELATION_TAUS * tau.max()), slowest_Hz, fastest_Hz))


def run(ctx: Context, name: str, sequence: Step, metadata: Mapping[str, Any]) -> xr.Dataset:
    """Run ``sequence`` into a stored run named after the routine; its dataset."""
    result = run_sequence(
        sequence,
        ctx.station,
        name=name,
        data_dir=ctx.data_dir,
        metadata={"calibration": name, **metadata},
        clock=ctx.clock,
        progress=ctx.progress,
        state_version=ctx.state.version,
    )
    return result.dataset()


def measured_settle(ctx: Context) -> float | None:
    """The bias lines' measured settle time (``dac.settle_s``, :mod:`.bias_settling`), or
    None before it was measured (or while its entry is flagged)."""
    key = "dac.settle_s"
    if key in ctx.state and ctx.state.get(key).valid and ctx.state.value(key) is not None:
        return float(ctx.state.value(key))
    return None


def settle_time(ctx: Context, settle_s: float) -> float:
    """How long a sweep waits after setting a point: its own ``settle_s``, or longer if the
    bias lines were measured to need it (``dac.settle_s``, :mod:`.bias_settling`)."""
    measured = measured_settle(ctx)
    return float(settle_s) if measured is None else max(float(settle_s), measured)


def stored_settle(ctx: Context, default_s: float, settles: float = 1.0) -> float:
    """``settles`` times the bias lines' measured settle time, at most ``default_s`` (a
    routine's wait before it was measured); ``default_s`` until then."""
    measured = measured_settle(ctx)
    return float(default_s) if measured is None else min(float(default_s), settles * measured)


def cell_values(ctx: Context, n_cells: int, key: str, default: float = math.nan) -> np.ndarray:
    """``cells.<i>.<key>`` for every cell; ``default`` where missing or flagged invalid."""
    out = np.full(n_cells, default, dtype=float)
    for i in range(n_cells):
        full = f"cells.{i}.{key}"
        if full in ctx.state and ctx.state.get(full).valid and ctx.state.get(full).value is not None:
            out[i] = float(ctx.state.get(full).value)
    return out


def two_colouring(n_cells: int, pairs: list[tuple[int, int]]) -> np.ndarray:
    """A greedy colouring (0/1/...) so that no coupled pair shares a colour (2 for chains, grids).

    Used to park one class far from its switching point while the other is measured:
    a parked neighbour's spin is frozen, so its coupling only shifts V0 and cannot
    distort an S-curve's width or a correlation time.
    """
    neighbours: list[set[int]] = [set() for _ in range(n_cells)]
    for i, j in pairs:
        neighbours[i].add(j)
        neighbours[j].add(i)
    colour = np.full(n_cells, -1, dtype=int)
    for i in range(n_cells):
        used = {colour[j] for j in neighbours[i] if colour[j] >= 0}
        colour[i] = next(c for c in range(n_cells + 1) if c not in used)
    return colour


def layout(ctx: Context) -> ChipLayout:
    return ctx.station.layout


def line_limits(ctx: Context, names: Sequence[str], limits_V: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Per line ``(low, high)`` (V): a routine's own ``limits_V`` within the station's guard
    limits for that line (a lab may allow less than the routine's default)."""
    bounds = [ctx.station.line_limits(name) for name in names]
    low = np.array([max(limits_V[0], lo) for lo, _ in bounds], dtype=float)
    high = np.array([min(limits_V[1], hi) for _, hi in bounds], dtype=float)
    return low, high
