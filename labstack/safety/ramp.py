"""Ramp DAC set-points within a maximum step and rate, on the station clock.

QCoDeS's own ``step`` / ``inter_delay`` start from the parameter's cache (stale if
anything else moved the output) and wait in ``time.sleep``. Here the parameter's
``set`` is wrapped (layer ``ramp`` of :mod:`labstack.safety.intercept`) by one that

1. checks the target against the parameter's validators (limits) first;
2. reads the instrument's actual value;
3. writes equal steps no larger than ``max_step``, each no sooner than the previous
   step's size divided by ``rate`` after it, waiting on the station clock (no wall
   time on the virtual lab).

Every path that sets the parameter (``param(v)``, ``param.set(v)``, a sequence, a
calibration, a DelegateParameter over it) goes through this ``set``. Paths that
bypass the parameter are stopped on the wire by :mod:`labstack.safety.guard`.

Several outputs moved at once (a sweep's row, the couplers to their zeros) ramp side
by side (:func:`set_together`): each round writes every output's next step, so the
move costs the slowest output's ramp, not the sum of all of them. Such a move reads
each output once, before its first step; its later steps start from the value the
previous step wrote (the guard still judges every step against it), so a 64-line row
does not read 64 outputs back before every one of its steps.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
from qcodes.parameters import Parameter

from labstack.clock import Clock, reached
from labstack.safety.guard import Channel
from labstack.safety.intercept import Interceptors, Method


def ramp_points(start: float, target: float, max_step: float) -> list[float]:
    """Equal steps from ``start`` to ``target`` (exclusive, inclusive), none above ``max_step``."""
    distance = abs(target - start)
    n = max(1, math.ceil(distance / max_step - 1e-9))
    if n == 1:
        return [float(target)]
    points = start + (target - start) * np.arange(1, n + 1) / n
    points[-1] = target
    return [float(p) for p in points]


def ramp_seconds(start: float, target: float, channel: Channel) -> float:
    """Least station-clock time a ramp from ``start`` to ``target`` takes (for plans)."""
    if channel.ramp is None:
        return 0.0
    return abs(target - start) / channel.ramp.rate


#: each ramped parameter's channel (its ramp), for :func:`set_together`
_RAMPED: weakref.WeakKeyDictionary[Any, Channel] = weakref.WeakKeyDictionary()
#: per thread: the parameters a :func:`set_together` is moving past their first step (their
#: start is the value their previous step wrote; read back once, at the first step)
_MID_MOVE = threading.local()


def _mid_move() -> set[int]:
    ids = getattr(_MID_MOVE, "ids", None)
    if ids is None:
        ids = _MID_MOVE.ids = set()
    return ids


def install_ramp(parameter: Parameter, channel: Channel, clock: Clock, interceptors: Interceptors) -> None:
    """Wrap ``parameter.set`` in a ramp within ``channel``'s limits and ramp."""
    # labstack ramps replace QCoDeS's (which start from the cache and sleep in wall time)
    parameter.step = None
    parameter.inter_delay = 0
    _RAMPED[parameter] = channel
    interceptors.wrap(parameter, "set", "ramp", lambda original: _ramped(parameter, channel, clock, original))


def _ramped(parameter: Parameter, channel: Channel, clock: Clock, original: Method) -> Method:
    def ramped_set(value: Any, **kwargs: Any) -> None:
        parameter.validate(value)
        target = float(value)
        if channel.ramp is None:
            steps = [target]
        else:
            if channel.known is None or id(parameter) not in _mid_move():
                channel.known = float(parameter.get())
            steps = ramp_points(channel.known, target, channel.ramp.max_step)
        for v in steps:
            if channel.ramp is not None and channel.t_ready > reached(clock):
                wait = channel.t_ready - clock.now()
                if wait > 0:
                    clock.sleep(wait)
            if not channel.scpi_enforced:
                now = clock.now() if channel.ramp is not None else 0.0
                channel.check(v, now)
                original(v, **kwargs)
                channel.commit(v, now)
            else:
                original(v, **kwargs)

    return ramped_set


def set_together(parameters: Sequence[Any], values: Sequence[Any]) -> None:
    """Set each of ``parameters`` to its value, ramped outputs side by side.

    One after another, a row that moves many ramped lines costs the sum of their ramps
    (2 V at 1 V/s is 2 s a line: a minute a row on 32 lines), where a lab steps them
    together. Here every target is validated first (a value out of limits moves no
    output), outputs without a ramp are set in order, then the ramped ones advance in
    rounds, each round one step of every line still moving. Each step goes through the
    parameter's own ``set`` (lock, ramp, guard): one step at most, the ramp passes it on
    as it is, after that output's own rate allows it.
    """
    ramps = [_RAMPED.get(parameter) for parameter in parameters]
    ramped = [channel is not None and channel.ramp is not None for channel in ramps]
    for parameter, value, is_ramped in zip(parameters, values, ramped, strict=True):
        if is_ramped:
            parameter.validate(value)
    moves: list[tuple[Any, list[float]]] = []
    for parameter, value, channel, is_ramped in zip(parameters, values, ramps, ramped, strict=True):
        if not is_ramped:
            parameter.set(value)
            continue
        channel.known = float(parameter.get())  # read back once: every step follows on from it
        moves.append((parameter, ramp_points(channel.known, float(value), channel.ramp.max_step)))
    rounds = max((len(points) for _, points in moves), default=0)
    mid_move = _mid_move()
    moving = [id(parameter) for parameter, _ in moves if id(parameter) not in mid_move]
    mid_move.update(moving)
    try:
        for k in range(rounds):
            for parameter, points in moves:
                if k < len(points):
                    parameter.set(points[k])
    finally:
        mid_move.difference_update(moving)
