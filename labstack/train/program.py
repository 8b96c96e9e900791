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


class LineWriter:
    """Writes a station's bias and coupler lines, all of one DAC in one guarded message."""

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

    def present(self) -> np.ndarray:
        """What each line was last set to (the guard's record, else the parameter's cache)."""
        out = np.empty(len(self.lines))
        for k, line in enumerate(self.lines):
            known = line.channel.known if line.channel is not None else None
            out[k] = known if known is not None else float(line.parameter.get_latest())
        return out

    def step_ratio(self, values: np.ndarray) -> float:
        """Largest ``|step| / max_step`` over the ramped lines (≤ 1: the update may be sent whole)."""
        now = self.present()
        ratio = 0.0
        for line, v, v0 in zip(self.lines, values, now, strict=True):
            ramp = line.channel.ramp if line.channel is not None else None
            if ramp is not None:
                ratio = max(ratio, abs(v - v0) / ramp.max_step)
        return ratio

    def check_limits(self, values: np.ndarray) -> None:
        """Raise :class:`UpdateRefused` naming the first line a value would put outside its limits."""
        for line, v in zip(self.lines, values, strict=True):
            if not math.isfinite(v):
                raise UpdateRefused(f"{line.name}: refused {v!r}: not a finite voltage")
            c = line.channel
            if c is not None and not c.low <= v <= c.high:
                raise UpdateRefused(f"{line.name}: refused {v:.6g} V: outside the limits [{c.low:g}, {c.high:g}] V")

    def ready_at(self) -> float:
        """Station time at which every ramped line may move again (its rate)."""
        times = [line.channel.t_ready for line in self.lines if line.channel is not None and line.channel.ramp is not None]
        return max(times, default=-math.inf)

    def write(self, values: np.ndarray, *, tolerance_V: float = 1e-9) -> int:
        """Send every changed line; the number of SCPI messages (or parameter sets) used.

        The caller has checked limits and steps; the guard checks them again on the wire.
        """
        now = self.present()
        batches: dict[int, tuple[Any, list[str], list[tuple[_Line, float]]]] = {}
        sent = 0
        for line, v, v0 in zip(self.lines, values, now, strict=True):
            if abs(v - v0) <= tolerance_V and line.channel is not None and line.channel.known is not None:
                continue
            if line.instrument is None:
                line.parameter.set(float(v))
                sent += 1
                continue
            entry = batches.setdefault(id(line.instrument), (line.instrument, [], []))
            entry[1].append(f"sour{line.number}:volt {float(v):.9g}")
            entry[2].append((line, float(v)))
        for instrument, commands, done in batches.values():
            instrument.write(";".join(commands))
            sent += 1
            for line, v in done:
                line.parameter.cache.set(v)
        self.messages += sent
        return sent
