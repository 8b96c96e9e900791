"""Ramp a DAC array's block writes: every element within its step and rate, one block per step.

A DAC array (``labstack.drivers.array_dac``) moves all its lines with one message;
its ``voltages`` parameter is wrapped here (layer ``ramp`` of
:mod:`labstack.safety.intercept`) so that a set

1. checks every guarded element's target against its limits, before anything moves;
2. reads the present values back (one block query);
3. writes equal steps of the whole array, as many as the element that has the farthest
   to go (in its own max steps) needs, so no element steps more than its ``max_step``;
4. sends each step no sooner than every element's previous step allows (its size over
   its rate), waiting on the station clock.

A chip-wide move (and the safe state) is then a few blocks, not a ramp per line. The
guard (:mod:`labstack.safety.array_dialect`) still checks every element of every block.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from qcodes.parameters import Parameter

from labstack.clock import Clock, reached
from labstack.safety.errors import SafetyError
from labstack.safety.guard import Channel
from labstack.safety.intercept import Interceptors, Method


@dataclass
class ArrayRamp:
    """A DAC array's block parameter, its number of elements and its guarded ones (index -> channel)."""

    parameter: Parameter
    size: int
    channels: Mapping[int, Channel]


def array_ramp_points(start: np.ndarray, target: np.ndarray, max_steps: np.ndarray) -> list[np.ndarray]:
    """Equal steps of every element from ``start`` to ``target`` (exclusive, inclusive),
    none larger than its ``max_steps`` entry (``inf``: not ramped)."""
    ratio = np.abs(target - start) / max_steps
    # 1e-6: a float32 read-back (0.3 V is 0.30000001 V) must not cost a step of its own;
    # the guard judges a block at float32 precision, so the overshoot of a step is allowed
    n = max(1, math.ceil(float(np.max(ratio, initial=0.0)) - 1e-6))
    points = [start + (target - start) * k / n for k in range(1, n + 1)]
    points[-1] = np.array(target, dtype=float)
    return points


def install_array_ramp(ramp: ArrayRamp, clock: Clock, interceptors: Interceptors) -> None:
    """Wrap ``ramp.parameter.set`` in a ramp of every element within its channel's rules."""
    interceptors.wrap(ramp.parameter, "set", "ramp", lambda original: _ramped(ramp, clock, original))


def _ramped(ramp: ArrayRamp, clock: Clock, original: Method) -> Method:
    parameter, channels = ramp.parameter, ramp.channels

    def ramped_set(value: Any, **kwargs: Any) -> None:
        parameter.validate(value)
        target = np.asarray(value, dtype=float).ravel()
        if target.size != ramp.size:
            original(value, **kwargs)  # the driver refuses it, naming both lengths, unsent
            return
        for i, channel in channels.items():
            if not channel.low <= target[i] <= channel.high:
                raise SafetyError(
                    f"{channel.name}: refused {target[i]:g} V: outside the limits [{channel.low:g}, {channel.high:g}] V"
                )
        actual = np.asarray(parameter.get(), dtype=float)
        max_steps = np.full(actual.size, np.inf)
        for i, channel in channels.items():
            channel.known = float(actual[i])
            if channel.ramp is not None:
                max_steps[i] = channel.ramp.max_step
        for point in array_ramp_points(actual, target, max_steps):
            moving = [c for i, c in channels.items() if c.ramp is not None and np.float32(point[i]) != np.float32(c.known)]
            ready = max((c.t_ready for c in moving), default=-math.inf)
            if ready > reached(clock):
                wait = ready - clock.now()
                if wait > 0:
                    clock.sleep(wait)
            original(point, **kwargs)

    return ramped_set
