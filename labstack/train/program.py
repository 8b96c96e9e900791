"""Parameters -> line voltages through the calibration, written safely and in few messages.

:class:`ChipMap` is the calibrated map from a target's dimensionless parameters
``(theta, beta)`` to every bias and coupler voltage: fields through the virtual biases
(:class:`~labstack.train.calibration.VirtualBias`: offsets, widths, crosstalk;
cells outside the target at zero field), couplings through each coupler's zero and
``kappa / T_eff``; couplers outside the target's graph stay at their zero. The map is
affine, so scaling a parameter change scales every voltage change by the same factor.

:class:`LineWriter` writes all lines of one DAC in a single SCPI message
(``sour1:volt v1;sour2:volt v2;...`` on a QDAC-II; other drivers: one parameter set
per line). It never bypasses the safety layer: the message still passes the station's
SCPI guard on the wire, and before composing it the writer checks each line against
the same limits, steps and rates the guard enforces, so an update that would break
one is scaled back (steps) or refused (limits) here rather than half-sent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from labstack.calibrate import CalibrationState
from labstack.safety import SafetyError
from labstack.train.calibration import Couplers, VirtualBias
from labstack.train.target import Target, check_on_chip


class UpdateRefused(SafetyError):
    """An update that would put a line outside its limits: nothing of it was sent."""


@dataclass
class ChipMap:
    """The calibrated map from a target's parameters to the chip's line voltages."""

    target: Target
    model: VirtualBias
    cells: np.ndarray  # chip cell numbers, target order
    edge_couplers: np.ndarray  # coupler index of each edge
    edges: np.ndarray  # (edges, 2) positions in ``cells``
    kappa_over_teff: np.ndarray  # per coupler (1/V); NaN where uncalibrated
    zeros_V: np.ndarray  # per coupler
    t_eff_K: float  # the calibrated effective temperature (model targets in kelvin)

    @classmethod
    def build(cls, target: Target, state: CalibrationState, n_cells: int, pairs: list[tuple[int, int]]) -> ChipMap:
        """Check ``target`` on the chip (:func:`~labstack.train.target.check_on_chip`) and build its map."""
        model = VirtualBias.from_state(state, n_cells)
        couplers = Couplers.from_state(state, len(pairs))
        edge_couplers = check_on_chip(target, n_cells, pairs, model.usable, couplers.ok)
        position = {c: k for k, c in enumerate(target.cells)}
        edges = np.array([[position[pairs[k][0]], position[pairs[k][1]]] for k in edge_couplers], dtype=int).reshape(-1, 2)
        if target.kind == "model" and not math.isfinite(couplers.t_eff_K):
            raise ValueError("the calibration state holds no effective temperature (couplers or noise node)")
        return cls(target, model, np.array(target.cells, dtype=int), np.array(edge_couplers, dtype=int), edges,
                   couplers.kappa_over_teff, couplers.zero_V, couplers.t_eff_K)

    @property
    def n_params(self) -> int:
        return len(self.cells) + len(self.edges)

    def model_params(self) -> np.ndarray:
        """A model target's ``(theta, beta)``: ``h / T_eff`` and ``J / T_eff`` on the graph's edges."""
        t = self.target
        assert t.h_K is not None
        j = {(a, b): v for a, b, v in t.couplings}
        beta = [j.get((int(self.cells[a]), int(self.cells[b])), j.get((int(self.cells[b]), int(self.cells[a])), 0.0))
                for a, b in self.edges]
        return np.concatenate([t.h_K, np.array(beta, dtype=float)]) / self.t_eff_K

    def voltages(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(bias volts per cell, coupler volts per coupler) programming ``params``."""
        params = np.asarray(params, dtype=float)
        m = len(self.cells)
        theta = np.zeros(len(self.model.usable))
        theta[self.cells] = params[:m]
        bias = self.model.voltages_for_theta(theta)
        couplers = self.zeros_V.copy()
        couplers[self.edge_couplers] += params[m:] / self.kappa_over_teff[self.edge_couplers]
        return bias, couplers


@dataclass
class _Line:
    name: str
    parameter: Any
    instrument: Any  # the root instrument a message goes to, or None: set the parameter
    number: int
    channel: Any  # the safety layer's Channel, or None


@dataclass
class _Batch:
    """The lines one message writes: one DAC's."""

    instrument: Any
    lines: np.ndarray  # positions in the writer's lines
    numbers: list[int]  # the DAC's channel number of each
    parameters: list[Any]


class LineWriter:
    """Writes a station's bias and coupler lines, all of one DAC in one guarded message.

    The checks before a message (limits, steps, rates) are array operations over every
    line: each line's limits and maximum step are read from the safety layer's channels
    once, when the writer is made (a writer lives for one training run).
    """

    def __init__(self, station: Any, names: list[str]) -> None:
        self.station = station
        self.clock = station.clock
        channels = station.safety.channels if station.safety is not None else {}
        self.lines: list[_Line] = []
        for name in names:
            p = station.parameter(name)
            root = p.root_instrument
            models = {k.__name__ for k in type(root).__mro__}
            number = getattr(p.instrument, "number", None)
            batch = "QDac2" in models and p.name == "dc_constant_V" and isinstance(number, int)
            self.lines.append(_Line(name, p, root if batch else None, int(number) if batch else -1, channels.get(name)))
        self.messages = 0
        self._channels = [line.channel for line in self.lines]
        self._guarded = np.array([c is not None for c in self._channels], dtype=bool)
        self._low = np.array([c.low if c is not None else -math.inf for c in self._channels], dtype=float)
        self._high = np.array([c.high if c is not None else math.inf for c in self._channels], dtype=float)
        ramps = [c.ramp if c is not None else None for c in self._channels]
        self._ramped = [c for c, r in zip(self._channels, ramps, strict=True) if r is not None]
        self._ramped_at = np.array([r is not None for r in ramps], dtype=bool)
        self._max_step = np.array([r.max_step for r in ramps if r is not None], dtype=float)
        self._direct = [k for k, line in enumerate(self.lines) if line.instrument is None]
        batches: dict[int, _Batch] = {}
        for k, line in enumerate(self.lines):
            if line.instrument is not None:
                b = batches.setdefault(id(line.instrument), _Batch(line.instrument, np.zeros(0, dtype=int), [], []))
                b.lines = np.append(b.lines, k)
                b.numbers.append(line.number)
                b.parameters.append(line.parameter)
        self._batches = list(batches.values())

    def present(self) -> np.ndarray:
        """What each line was last set to (the guard's record, else the parameter's cache)."""
        known = [c.known if c is not None else None for c in self._channels]
        out = np.array([math.nan if v is None else v for v in known], dtype=float)
        for k, v in enumerate(known):
            if v is None:
                out[k] = float(self.lines[k].parameter.get_latest())
        return out

    def _known(self) -> np.ndarray:
        """Whether the guard knows each line's present value."""
        return np.array([c is not None and c.known is not None for c in self._channels], dtype=bool)

    def step_ratio(self, values: np.ndarray) -> float:
        """Largest ``|step| / max_step`` over the ramped lines (≤ 1: the update may be sent whole)."""
        if not self._ramped:
            return 0.0
        now = self.present()[self._ramped_at]
        return float(np.max(np.abs(np.asarray(values, dtype=float)[self._ramped_at] - now) / self._max_step))

    def check_limits(self, values: np.ndarray) -> None:
        """Raise :class:`UpdateRefused` naming the first line a value would put outside its limits."""
        v = np.asarray(values, dtype=float)
        if v.shape != self._low.shape:
            raise ValueError(f"{v.size} values for {len(self.lines)} lines")
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(v) | (self._guarded & ((v < self._low) | (v > self._high)))
        if not bad.any():
            return
        k = int(np.argmax(bad))
        line, x = self.lines[k], float(v[k])
        if not math.isfinite(x):
            raise UpdateRefused(f"{line.name}: refused {x!r}: not a finite voltage")
        c = line.channel
        raise UpdateRefused(f"{line.name}: refused {x:.6g} V: outside the limits [{c.low:g}, {c.high:g}] V")

    def ready_at(self) -> float:
        """Station time at which every ramped line may move again (its rate)."""
        return max((c.t_ready for c in self._ramped), default=-math.inf)

    def write(self, values: np.ndarray, *, tolerance_V: float = 1e-9) -> int:
        """Send every changed line; the number of SCPI messages (or parameter sets) used.

        The caller has checked limits and steps; the guard checks them again on the wire.
        """
        v = np.asarray(values, dtype=float)
        unchanged = (np.abs(v - self.present()) <= tolerance_V) & self._known()
        sent = 0
        for k in self._direct:
            if not unchanged[k]:
                self.lines[k].parameter.set(float(v[k]))
                sent += 1
        for batch in self._batches:
            moved = np.flatnonzero(~unchanged[batch.lines])
            if moved.size == 0:
                continue
            volts = v[batch.lines[moved]].tolist()
            numbers = [batch.numbers[j] for j in moved]
            batch.instrument.write(";".join([f"sour{n}:volt {x:.9g}" for n, x in zip(numbers, volts, strict=True)]))
            sent += 1
            for j, x in zip(moved, volts, strict=True):
                batch.parameters[j].cache.set(x)
        self.messages += sent
        return sent
