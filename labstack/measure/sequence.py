"""Measurement sequences as plain data.

A sequence says what to set, what to read, in which order and how long to settle;
it does not touch hardware. Because it is data (frozen dataclasses that round-trip
through a JSON-able dict), it is stored with every run, can be printed, checked
against parameter validators before anything moves (:func:`labstack.measure.validate`)
and replayed later. Only :func:`labstack.measure.run_sequence` carries it out.

Parameters are referred to by their dotted station name (``"qdac.ch01.dc_constant_V"``)
or given as QCoDeS parameter objects; objects serialise to their dotted name, so a
stored sequence replays against any station that has the same instruments.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from collections.abc import Sequence as _Seq
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeAlias

import numpy as np
from qcodes.parameters import ParameterBase

from labstack.data.jsontext import dumps

ParamLike: TypeAlias = "str | ParameterBase"
"""A parameter: its dotted name in a station or the QCoDeS parameter itself."""


def param_name(param: str | ParameterBase) -> str:
    """Dotted station name of ``param``: ``"qdac.ch01.dc_constant_V"``.

    QCoDeS' ``name_parts`` use a channel's own name, which need not be the key it is
    reachable under (a channel registered as ``A`` may be named ``ChanA``); walking
    the parents and looking the channel up in its parent's submodules gives a name
    that :func:`labstack.station.find_parameter` resolves back to the same object.
    """
    if isinstance(param, str):
        return param
    parts = [param.short_name]
    node = param.instrument
    while node is not None:
        parent = getattr(node, "parent", None)
        if parent is None:
            parts.append(node.name)
            break
        key = next((k for k, v in parent.submodules.items() if v is node), node.short_name)
        parts.append(key)
        node = parent
    return ".".join(reversed(parts))


def _as_values(values: Any) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"sweep values must be one-dimensional, got shape {arr.shape}")
    return arr


def _values_to_json(arr: np.ndarray) -> list[Any]:
    return arr.tolist()


class Step:
    """Base of all sequence steps: equality and (de)serialisation by dict."""

    kind: ClassVar[str] = ""
    _registry: ClassVar[dict[str, type[Step]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            Step._registry[cls.kind] = cls

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - every step overrides
        raise NotImplementedError

    @classmethod
    def _from_fields(cls, d: Mapping[str, Any]) -> Step:  # pragma: no cover
        raise NotImplementedError

    def to_json(self, **kwargs: Any) -> str:
        """JSON text of :meth:`to_dict`; ``kwargs`` (``indent=2``) go to ``json.dumps``."""
        if kwargs:
            return json.dumps(self.to_dict(), **kwargs)
        return dumps(self.to_dict())  # every run stores its sequence: the fast encoder

    def __eq__(self, other: object) -> bool:
        # Arrays make dataclass equality ambiguous; the serialised form is the identity.
        return isinstance(other, Step) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def __add__(self, other: Step | _Seq[Step]) -> Sequence:
        return as_sequence(self) + other


def step_from_dict(d: Mapping[str, Any]) -> Step:
    """Rebuild any step (or a whole :class:`Sequence`) from :meth:`Step.to_dict`."""
    try:
        cls = Step._registry[d["type"]]
    except KeyError as err:
        known = ", ".join(sorted(Step._registry))
        raise ValueError(f"unknown sequence step type {d.get('type')!r}; known: {known}") from err
    return cls._from_fields(d)


def step_from_json(text: str) -> Step:
    return step_from_dict(json.loads(text))


@dataclass(frozen=True, eq=False)
class Read(Step):
    """Read one parameter; scalar or array-valued.

    ``dims`` names the axes of an array value (``("cell", "sample")``) and
    ``coords`` optionally gives their coordinate values. A ParameterWithSetpoints or
    ArrayParameter supplies both itself. ``name`` overrides the data variable name
    (default: the parameter's QCoDeS ``full_name``, e.g. ``dmm_v1``).
    """

    kind: ClassVar[str] = "read"
    param: ParamLike
    dims: tuple[str, ...] = ()
    coords: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "dims", tuple(self.dims))
        object.__setattr__(
            self, "coords", {str(k): _as_values(v) for k, v in dict(self.coords).items()}
        )
        unknown = set(self.coords) - set(self.dims)
        if unknown:
            raise ValueError(f"Read coords {sorted(unknown)} are not among dims {self.dims}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "param": param_name(self.param),
            "dims": list(self.dims),
            "coords": {k: _values_to_json(v) for k, v in self.coords.items()},
            **({} if self.name is None else {"name": self.name}),  # unset: left out
        }

    @classmethod
    def _from_fields(cls, d: Mapping[str, Any]) -> Read:
        return cls(d["param"], tuple(d.get("dims", ())), d.get("coords", {}), d.get("name"))


@dataclass(frozen=True, eq=False)
class Set(Step):
    """Set one parameter once (e.g. a heater power before a trace)."""

    kind: ClassVar[str] = "set"
    param: ParamLike
    value: Any

    def to_dict(self) -> dict[str, Any]:
        value = (
            self.value.tolist() if isinstance(self.value, np.ndarray | np.generic) else self.value
        )
        return {"type": self.kind, "param": param_name(self.param), "value": value}

    @classmethod
    def _from_fields(cls, d: Mapping[str, Any]) -> Set:
        return cls(d["param"], d["value"])


@dataclass(frozen=True, eq=False)
class Wait(Step):
    """Let ``seconds`` pass on the station clock (no wall time on the virtual lab)."""

    kind: ClassVar[str] = "wait"
    seconds: float

    def __post_init__(self) -> None:
        if not self.seconds >= 0:
            raise ValueError(f"Wait needs a non-negative time, got {self.seconds}")

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "seconds": float(self.seconds)}

    @classmethod
    def _from_fields(cls, d: Mapping[str, Any]) -> Wait:
        return cls(d["seconds"])


def _as_body(body: Step | Iterable[Step]) -> tuple[Step, ...]:
    if isinstance(body, Step):
        return (body,)
    steps = tuple(body)
    for s in steps:
        if not isinstance(s, Step):
            raise TypeError(f"a sequence body holds steps, got {type(s).__name__}: {s!r}")
    return steps


@dataclass(frozen=True, eq=False)
class Sweep(Step):
    """One dimension ``dim`` along which one or several parameters step together.

    ``setpoints`` maps each driven parameter to its own values; all have the same
    length (zipped: 16 DAC channels can each follow their own array along one dim).
    At each point every parameter is set in order, then ``settle`` seconds pass on the
    station clock, then ``body`` (reads and nested sweeps) runs.

    The ``dim`` coordinate is ``coord`` when given, else the values of the single
    driven parameter, else the point index. Each driven parameter's values are also
    stored as a coordinate along ``dim`` named by its ``full_name``.
    """

    kind: ClassVar[str] = "sweep"
    dim: str
    setpoints: Mapping[ParamLike, Any]
    body: tuple[Step, ...] = ()
    settle: float = 0.0
    coord: Any = None

    def __post_init__(self) -> None:
        if not self.setpoints:
            raise ValueError(f"Sweep {self.dim!r} drives no parameter")
        values = {p: _as_values(v) for p, v in dict(self.setpoints).items()}
        lengths = {param_name(p): len(v) for p, v in values.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"Sweep {self.dim!r}: zipped parameters differ in length: {lengths}")
        object.__setattr__(self, "setpoints", values)
        object.__setattr__(self, "body", _as_body(self.body))
        if self.coord is not None:
            coord = _as_values(self.coord)
            if len(coord) != len(self):
                raise ValueError(
                    f"Sweep {self.dim!r}: coord has {len(coord)} values for {len(self)} points"
                )
            object.__setattr__(self, "coord", coord)
        if not self.settle >= 0:
            raise ValueError(f"Sweep {self.dim!r}: settle must be >= 0 s, got {self.settle}")

    def __len__(self) -> int:
        return len(next(iter(self.setpoints.values())))

    @classmethod
    def over(
        cls,
        dim: str,
        param: ParamLike,
        values: Any,
        *body: Step,
        settle: float = 0.0,
    ) -> Sweep:
        """Shorthand for the common one-parameter sweep: ``Sweep.over("v", "dac.ch1", vs, Read(...))``."""
        return cls(dim, {param: values}, body, settle=settle)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "dim": self.dim,
            "setpoints": [[param_name(p), _values_to_json(v)] for p, v in self.setpoints.items()],
            "settle": float(self.settle),
            **({} if self.coord is None else {"coord": _values_to_json(self.coord)}),
            "body": [s.to_dict() for s in self.body],
        }

    @classmethod
    def _from_fields(cls, d: Mapping[str, Any]) -> Sweep:
        return cls(
            d["dim"],
            {p: v for p, v in d["setpoints"]},
            tuple(step_from_dict(s) for s in d.get("body", ())),
            settle=d.get("settle", 0.0),
            coord=d.get("coord"),
        )


@dataclass(frozen=True, eq=False)
class Trace(Step):
    """``n`` repetitions of ``body`` every ``interval`` seconds of station-clock time.

    The ``dim`` coordinate is the nominal time since the trace started (``i * interval``,
    in s); the clock time each repetition actually began is kept in ``<dim>_clock``.
    ``interval=0`` repeats back to back: block acquisitions as fast as they come, with
    the index as coordinate.
    """

    kind: ClassVar[str] = "trace"
    dim: str
    n: int
    interval: float = 0.0
    body: tuple[Step, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "body", _as_body(self.body))
        if int(self.n) != self.n or self.n < 0:
            raise ValueError(f"Trace {self.dim!r}: n must be a non-negative integer, got {self.n}")
        object.__setattr__(self, "n", int(self.n))
        if not self.interval >= 0:
            raise ValueError(f"Trace {self.dim!r}: interval must be >= 0 s, got {self.interval}")

    def __len__(self) -> int:
        return self.n

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "dim": self.dim,
            "n": self.n,
            "interval": float(self.interval),
            "body": [s.to_dict() for s in self.body],
        }

    @classmethod
    def _from_fields(cls, d: Mapping[str, Any]) -> Trace:
        body = tuple(step_from_dict(s) for s in d.get("body", ()))
        return cls(d["dim"], d["n"], d.get("interval", 0.0), body)


@dataclass(frozen=True, eq=False)
class Sequence(Step):
    """Steps run one after the other; ``a + b`` composes sequences and steps."""

    kind: ClassVar[str] = "sequence"
    steps: tuple[Step, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", _as_body(self.steps))

    def __add__(self, other: Step | _Seq[Step]) -> Sequence:
        return Sequence(self.steps + as_sequence(other).steps)

    def __len__(self) -> int:
        return len(self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "steps": [s.to_dict() for s in self.steps]}

    @classmethod
    def _from_fields(cls, d: Mapping[str, Any]) -> Sequence:
        return cls(tuple(step_from_dict(s) for s in d.get("steps", ())))


def as_sequence(seq: Step | Iterable[Step]) -> Sequence:
    """Any step, list of steps or Sequence as one :class:`Sequence`."""
    if isinstance(seq, Sequence):
        return seq
    return Sequence(_as_body(seq))
