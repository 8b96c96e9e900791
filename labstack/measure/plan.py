"""From a sequence and a station to a dataset layout, touching no hardware.

:func:`plan_sequence` resolves every parameter and works out the dataset the run
will produce: coordinates (known before the run), streamed variables with their
dims, and how many points there are. :func:`validate` adds a dry run of every value
the sequence would set against the parameters' validators, so a bad sweep fails
before the first DAC moves, with a message naming the parameter and the value.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from qcodes.parameters import ArrayParameter, MultiParameter, ParameterBase, ParameterWithSetpoints
from qcodes.validators import Ints, Numbers

from labstack.measure.sequence import (
    Read,
    Sequence,
    Set,
    Step,
    Sweep,
    Trace,
    Wait,
    as_sequence,
    param_name,
)
from labstack.station.parameters import UnknownParameterError, find_parameter

Path_ = tuple[int, ...]


class SequenceError(ValueError):
    """A sequence that cannot run on this station; the message says where and why."""


@dataclass
class CoordSpec:
    name: str
    dims: tuple[str, ...]
    values: Any  # ndarray, or a parameter whose get() gives the values at run start
    attrs: dict[str, Any]


@dataclass
class VarSpec:
    name: str
    sweep_dims: tuple[tuple[str, int], ...]
    inner_dims: tuple[str, ...] | None
    attrs: dict[str, Any]


@dataclass
class Plan:
    """Everything the runner needs besides the clock and the store."""

    sequence: Sequence
    params: dict[Path_, list[ParameterBase]] = field(default_factory=dict)
    var_names: dict[Path_, str] = field(default_factory=dict)
    coords: dict[str, CoordSpec] = field(default_factory=dict)
    variables: dict[str, VarSpec] = field(default_factory=dict)
    leaf_points: int = 0
    clock_seconds: float = 0.0  # least station-clock time the sequence takes (settles, waits)


def param_attrs(param: ParameterBase) -> dict[str, Any]:
    """``units`` and ``long_name`` (CF names xarray and plotting use) from a parameter."""
    attrs: dict[str, Any] = {"parameter": param_name(param)}
    unit = getattr(param, "unit", "")
    label = getattr(param, "label", "")
    if unit:
        attrs["units"] = unit
    attrs["long_name"] = label or param.name
    return attrs


def contains_loop(steps: Iterable[Step]) -> bool:
    for s in steps:
        if isinstance(s, Sweep | Trace):
            return True
        if isinstance(s, Sequence) and contains_loop(s.steps):
            return True
    return False


class _Planner:
    def __init__(self, station: Any) -> None:
        self.station = station
        self.plan: Plan

    def run(self, seq: Sequence) -> Plan:
        self.plan = Plan(seq)
        self._steps(seq.steps, (), (), 1)
        return self.plan

    def _resolve(self, ref: Any, where: str) -> ParameterBase:
        try:
            return find_parameter(self.station, ref)
        except (UnknownParameterError, TypeError) as err:
            raise SequenceError(f"{where}: {err}") from err

    def _name(self, name: str, what: str) -> None:
        if name in self.plan.variables or name in self.plan.coords:
            raise SequenceError(
                f"{what}: the dataset already has a variable or coordinate {name!r}; "
                f"give the read a distinct name=..."
            )

    def _coord(self, spec: CoordSpec) -> None:
        have = self.plan.coords.get(spec.name)
        if have is None:
            if spec.name in self.plan.variables:
                raise SequenceError(f"coordinate {spec.name!r} clashes with a data variable")
            self.plan.coords[spec.name] = spec
            return
        if have.dims == spec.dims and have.values is spec.values:
            return
        same = (
            have.dims == spec.dims
            and isinstance(have.values, np.ndarray)
            and isinstance(spec.values, np.ndarray)
            and have.values.shape == spec.values.shape
            and bool(np.all((have.values == spec.values) | (have.values != have.values)))
        )
        if not same:
            raise SequenceError(
                f"dimension/coordinate {spec.name!r} is used twice with different values; "
                "sibling sweeps sharing a dim must share its coordinate"
            )

    def _steps(
        self, steps: Iterable[Step], path: Path_, dims: tuple[tuple[str, int], ...], reps: int
    ) -> None:
        for i, step in enumerate(steps):
            self._step(step, (*path, i), dims, reps)

    def _loop_dim(self, dim: str, dims: tuple[tuple[str, int], ...], what: str) -> None:
        if not dim or not isinstance(dim, str):
            raise SequenceError(f"{what}: a loop needs a dim name, got {dim!r}")
        if dim in (d for d, _ in dims):
            raise SequenceError(f"{what}: dim {dim!r} is already used by an enclosing loop")

    def _step(self, step: Step, path: Path_, dims: tuple[tuple[str, int], ...], reps: int) -> None:
        plan = self.plan
        if isinstance(step, Sequence):
            self._steps(step.steps, path, dims, reps)
        elif isinstance(step, Wait):
            plan.clock_seconds += reps * step.seconds
        elif isinstance(step, Set):
            p = self._resolve(step.param, f"Set {param_name(step.param)!r}")
            if not p.settable:
                raise SequenceError(f"Set: parameter {param_name(p)!r} is not settable")
            plan.params[path] = [p]
        elif isinstance(step, Read):
            self._read(step, path, dims)
        elif isinstance(step, Sweep):
            self._sweep(step, path, dims, reps)
        elif isinstance(step, Trace):
            what = f"Trace {step.dim!r}"
            self._loop_dim(step.dim, dims, what)
            coord = np.arange(step.n) * float(step.interval) if step.interval else np.arange(step.n)
            attrs = (
                {"units": "s", "long_name": "time since trace start (nominal)"}
                if step.interval
                else {"long_name": f"{step.dim} index"}
            )
            self._coord(CoordSpec(step.dim, (step.dim,), coord, attrs))
            self._loop_body(step.dim, step.n, step.body, path, dims, reps, what)
            plan.clock_seconds += reps * max(step.n - 1, 0) * step.interval
        else:
            raise SequenceError(f"unknown step {step!r}")

    def _sweep(
        self, step: Sweep, path: Path_, dims: tuple[tuple[str, int], ...], reps: int
    ) -> None:
        plan = self.plan
        what = f"Sweep {step.dim!r}"
        self._loop_dim(step.dim, dims, what)
        params = []
        for ref in step.setpoints:
            p = self._resolve(ref, what)
            if not p.settable:
                raise SequenceError(f"{what}: parameter {param_name(p)!r} is not settable")
            params.append(p)
        plan.params[path] = params
        values = list(step.setpoints.values())
        if step.coord is not None:
            dim_coord, dim_attrs = step.coord, {"long_name": step.dim}
        elif len(params) == 1:
            dim_coord, dim_attrs = values[0], param_attrs(params[0])
        else:
            dim_coord, dim_attrs = np.arange(len(step)), {"long_name": f"{step.dim} index"}
        self._coord(CoordSpec(step.dim, (step.dim,), dim_coord, dim_attrs))
        for p, vals in zip(params, values, strict=True):
            name = p.full_name
            if name == step.dim or (len(params) == 1 and step.coord is None):
                # one parameter and no coordinate of its own: the dim's coordinate holds its
                # values and names it (``parameter`` attribute); a copy under the parameter's
                # name cost a short run a fifth of its time in files
                continue
            if name in plan.coords or name in plan.variables:
                name = f"{p.full_name}_{step.dim}"
            self._name(name, what)
            self._coord(CoordSpec(name, (step.dim,), vals, param_attrs(p)))
        self._loop_body(step.dim, len(step), step.body, path, dims, reps, what)
        plan.clock_seconds += reps * len(step) * step.settle

    def _loop_body(
        self,
        dim: str,
        n: int,
        body: tuple[Step, ...],
        path: Path_,
        dims: tuple[tuple[str, int], ...],
        reps: int,
        what: str,
    ) -> None:
        inner = (*dims, (dim, n))
        clock_name = f"{dim}_clock"
        self._name(clock_name, what)
        self.plan.variables[clock_name] = VarSpec(
            clock_name,
            inner,
            (),
            {
                "units": "s",
                "long_name": f"station clock at each {dim} point",
                "description": "seconds since the run started, after settling; NaN: not taken",
            },
        )
        self.plan.var_names[path] = clock_name
        if not contains_loop(body):
            self.plan.leaf_points += reps * n
        self._steps(body, path, inner, reps * n)

    def _read(self, step: Read, path: Path_, dims: tuple[tuple[str, int], ...]) -> None:
        what = f"Read {param_name(step.param)!r}"
        p = self._resolve(step.param, what)
        if isinstance(p, MultiParameter):
            raise SequenceError(f"{what}: MultiParameters are not supported; read each part")
        if not p.gettable:
            raise SequenceError(f"{what}: parameter is not gettable")
        self.plan.params[path] = [p]
        name = step.name or p.full_name
        self._name(name, what)
        inner_dims: tuple[str, ...] | None = step.dims or None
        coords: dict[str, Any] = dict(step.coords)
        if isinstance(p, ParameterWithSetpoints):
            inner_dims = inner_dims or tuple(sp.full_name for sp in p.setpoints)
            for dim, sp in zip(inner_dims, p.setpoints, strict=True):
                coords.setdefault(dim, sp)  # read at run start
        elif isinstance(p, ArrayParameter):
            names = p.setpoint_names or tuple(f"{name}_dim{i}" for i in range(len(p.shape)))
            inner_dims = inner_dims or tuple(str(n) for n in names)
            for i, dim in enumerate(inner_dims):
                if p.setpoints is not None and dim not in coords:
                    arr = np.asarray(p.setpoints[i], dtype=float)
                    coords[dim] = arr.reshape(-1, arr.shape[-1])[0] if arr.ndim > 1 else arr
        outer = {d for d, _ in dims}
        clash = outer.intersection(inner_dims or ())
        if clash:
            raise SequenceError(f"{what}: array dims {sorted(clash)} repeat a loop dim")
        for dim, values in coords.items():
            if isinstance(values, ParameterBase):
                attrs = param_attrs(values)
                self.plan.coords.setdefault(dim, CoordSpec(dim, (dim,), values, attrs))
            else:
                self._coord(CoordSpec(dim, (dim,), np.asarray(values), {}))
        self.plan.var_names[path] = name
        self.plan.variables[name] = VarSpec(name, dims, inner_dims, param_attrs(p))


def plan_sequence(sequence: Step | Iterable[Step], station: Any) -> Plan:
    """Resolve parameters and lay out the dataset; raises :class:`SequenceError`."""
    return _Planner(station).run(as_sequence(sequence))


def _check_values(param: ParameterBase, values: np.ndarray, what: str) -> None:
    """Every value through ``param``'s validators; vectorised for plain numeric ranges."""
    validators = list(getattr(param, "validators", ()) or ())
    numeric = values.dtype.kind in "iuf" and all(type(v) in (Numbers, Ints) for v in validators)
    if numeric:
        candidates = []
        for v in validators:
            lo, hi = v._min_value, v._max_value  # noqa: SLF001 - documented on the class
            bad = ~((values >= lo) & (values <= hi))
            if isinstance(v, Ints):
                bad |= values != np.round(values)
            candidates.extend(np.flatnonzero(bad)[:1].tolist())
        to_check: Iterable[Any] = [values[i].item() for i in sorted(candidates)]
    else:
        to_check = [v.item() if isinstance(v, np.generic) else v for v in values]
    for value in to_check:
        try:
            param.validate(value)
        except Exception as err:  # validators raise ValueError or TypeError
            raise SequenceError(
                f"{what}: value {value!r} is not allowed for parameter {param_name(param)!r}: {err}"
            ) from err


def validate(sequence: Step | Iterable[Step], station: Any) -> Plan:
    """Dry-run ``sequence`` on ``station``: resolve names, check every value it would
    set against the parameters' validators, and lay out the dataset. Sets nothing."""
    seq = as_sequence(sequence)
    plan = plan_sequence(seq, station)

    def walk(steps: Iterable[Step], path: Path_) -> None:
        for i, step in enumerate(steps):
            here = (*path, i)
            if isinstance(step, Sequence):
                walk(step.steps, here)
            elif isinstance(step, Set):
                (p,) = plan.params[here]
                try:
                    p.validate(step.value)
                except Exception as err:
                    raise SequenceError(
                        f"Set: value {step.value!r} is not allowed for parameter "
                        f"{param_name(p)!r}: {err}"
                    ) from err
            elif isinstance(step, Sweep):
                for p, vals in zip(plan.params[here], step.setpoints.values(), strict=True):
                    _check_values(p, vals, f"Sweep {step.dim!r}")
                walk(step.body, here)
            elif isinstance(step, Trace):
                walk(step.body, here)

    walk(seq.steps, ())
    return plan


def describe(plan: Plan) -> str:
    """A short human summary of what a run of ``plan`` will write."""
    lines = [f"{plan.leaf_points} points, at least {plan.clock_seconds:g} s of clock time"]
    for v in plan.variables.values():
        sweep = ", ".join(f"{d}={n}" for d, n in v.sweep_dims)
        inner = f" x {v.inner_dims}" if v.inner_dims else ""
        lines.append(f"  {v.name}({sweep}){inner}")
    return "\n".join(lines)


__all__ = [
    "CoordSpec",
    "Plan",
    "SequenceError",
    "VarSpec",
    "describe",
    "plan_sequence",
    "validate",
]
