"""Small helpers the chip routines share: idle couplers, run a sequence, read cell arrays.

Not a routine itself (no ``NAME``), so it is not registered as an entry point.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr
from qcodes.parameters import Parameter

from labstack.calibrate import Context
from labstack.calibrations.virtual_bias import coupler_zeros
from labstack.measure import Read, Step, run_sequence
from labstack.station import ChipLayout


def idle_couplers(ctx: Context, layout: ChipLayout) -> None:
    """Couplers at their calibrated zero-coupling voltage (0 V until the coupler node found it,
    and for a flagged coupler, whose entry has no value)."""
    zeros = coupler_zeros(ctx.state, len(layout.couplers))
    for name, zero in zip(layout.couplers, zeros, strict=True):
        ctx.station.parameter(name).set(float(zero))


def sample_cells(station: Any, layout: ChipLayout, rate_Hz: float, n_samples: int) -> Read:
    """Set the readout sampler's rate and count; the step that reads every cell's samples.

    The read's dims are ``(cell, sample)`` and its variable is ``samples``, as every
    routine's fit expects.
    """
    sampler = station.components[layout.readout]
    sampler.sample_rate(rate_Hz)
    sampler.n_samples(n_samples)
    return Read(f"{layout.readout}.samples", dims=("cell", "sample"), name="samples")


def ramp_step(station: Any, names: Sequence[str]) -> float | None:
    """The smallest ``max_step`` (V) of the safety ramps on ``names``; None if none is ramped."""
    safety = getattr(station, "safety", None)
    channels = getattr(safety, "channels", {}) or {}
    steps = [channels[n].ramp.max_step for n in names if n in channels and channels[n].ramp is not None]
    return float(min(steps)) if steps else None


def approach(ctx: Context, targets: Mapping[str, float], start: Mapping[str, float] | None = None) -> None:
    """Move many lines to their targets together, each within its own safety ramp.

    The ramp layer moves one parameter at a time and waits between *that line's*
    steps, so setting 64 lines one after the other to a point 2 V away takes 64 ramps
    end to end (128 s of fridge time at 1 V/s). Here every line takes one step of at
    most the ramps' ``max_step`` per round, all lines in each round, so the move takes
    one ramp's time; each line still never steps further or faster than its ramp allows.
    """
    station = ctx.station
    names = list(targets)
    step = ramp_step(station, names)
    params = [station.parameter(n) for n in names]
    goal = np.array([float(targets[n]) for n in names])
    if step is None:
        for p, v in zip(params, goal, strict=True):
            p.set(float(v))
        return
    # where the lines are: read, unless the caller moved them there itself (a sweep)
    start = np.array([float(start[n]) if start is not None else float(p.get()) for n, p in zip(names, params, strict=True)])
    rounds = max(1, math.ceil(float(np.max(np.abs(goal - start), initial=0.0)) / step - 1e-9))
    for k in range(1, rounds + 1):
        row = start + (goal - start) * (k / rounds)
        for p, v, s in zip(params, row, start, strict=True):
            if k == rounds or abs(v - s) > 0:
                p.set(float(v))


class LinesTogether(Parameter):
    """A setting index ``k`` that moves every line to ``rows[k]`` with :func:`approach`.

    A sweep over this one parameter moves its lines in parallel between settings far
    apart (the readout node's four configurations, 2 V apart), where a sweep over the
    lines themselves would ramp them one after the other.
    """

    def __init__(self, ctx: Context, name: str, lines: Sequence[str], rows: np.ndarray) -> None:
        super().__init__(name, label=name, unit="")
        self._ctx = ctx
        self._lines = list(lines)
        self._rows = np.asarray(rows, dtype=float)
        self._index = 0
        self._moved = False  # the lines sit at rows[_index] because this parameter put them there

    def set_raw(self, value: Any) -> None:
        k = int(value)
        start = dict(zip(self._lines, self._rows[self._index].tolist(), strict=True)) if self._moved else None
        approach(self._ctx, dict(zip(self._lines, self._rows[k].tolist(), strict=True)), start)
        self._index, self._moved = k, True

    def get_raw(self) -> int:
        return self._index


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


def settle_time(ctx: Context, settle_s: float, unmeasured_s: float = 0.0) -> float:
    """How long a sweep waits after setting a point: its own ``settle_s``, or longer if the
    bias lines were measured to need it (``dac.settle_s``, :mod:`.bias_settling`).

    ``unmeasured_s``: the wait while the lines' settling is not yet measured. A sweep
    that samples for a fraction of a second per point must not read a line still
    moving, so before :mod:`.bias_settling` it waits as the readout node does (ten times
    the slowest line filter, 0.5 s); one that samples for many seconds may pass 0.
    """
    key = "dac.settle_s"
    if key in ctx.state and ctx.state.get(key).valid and ctx.state.value(key) is not None:
        return max(float(settle_s), float(ctx.state.value(key)))
    return max(float(settle_s), float(unmeasured_s))


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
