"""Measurement sequences from description files (YAML or JSON), for ``labstack measure``.

The format is documented in the README ("Sequence files"); the examples that ship
are in ``station_configs/sequences/``. A file holds a wrapper::

    name: iv_curve                  # run name (default: the file's stem)
    metadata: {sample: A3}          # stored with the run
    sequence:                       # one step, or a list of steps run in order
      type: sweep
      dim: v
      setpoints: {qdac1.ch01.dc_constant_V: {linspace: [-0.5, 0.5, 11]}}
      body: [{type: read, param: ls372.ch06.temperature}]

or one bare step, or a list of steps. A step's keys are ``type`` and the fields of
its class in :mod:`labstack.measure.sequence`, so the file format follows the code,
and the form :meth:`~labstack.measure.Step.to_dict` writes (which every run stores)
loads back to an equal step.

Files are written by hand, so loading is strict: a misspelt key must not silently
mean a default (``setle: 0.5`` running with no settling gives plausible, wrong
data). Every missing, unknown or ill-typed key is a :class:`SequenceFileError`
naming the file and line, the step's path in the tree (``sequence[1].body[0]``)
and type, and the key, and listing the keys that exist.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import yaml

from labstack.measure.runner import RESERVED_ATTRS
from labstack.measure.sequence import Sequence, Step

#: wrapper keys -> required?
WRAPPER_KEYS: dict[str, bool] = {"sequence": True, "name": False, "metadata": False}
#: value-list forms and their arguments, in the order the list form gives them
VALUE_LISTS: dict[str, tuple[str, ...]] = {
    "linspace": ("start", "stop", "num"),
    "arange": ("start", "stop", "step"),
}
#: a value list longer than this is a typo (a step of 1e-9 V), not a measurement
MAX_VALUES = 10_000_000
SHIPPED_PACKAGE, SHIPPED_FOLDER = "labstack.station_configs", "sequences"

Where = tuple[str | int, ...]


class SequenceFileError(ValueError):
    """A description file that is not a sequence; the message names the file."""


@dataclass
class SequenceFile:
    name: str
    sequence: Step
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class KeySpec:
    """One key of a step type: required, or optional with the default it then takes."""

    name: str
    required: bool
    default: Any = None


def step_types() -> dict[str, type[Step]]:
    """Every step type a file may name, by its ``type`` value."""
    return dict(sorted(Step._registry.items()))  # noqa: SLF001 - the registry is the source of truth


def step_keys(kind: str) -> dict[str, KeySpec]:
    """The keys a step of type ``kind`` takes besides ``type``: its class's dataclass fields."""
    specs = {}
    for f in dataclasses.fields(step_types()[kind]):  # type: ignore[arg-type]
        if f.default is not dataclasses.MISSING:
            specs[f.name] = KeySpec(f.name, False, f.default)
        elif f.default_factory is not dataclasses.MISSING:
            specs[f.name] = KeySpec(f.name, False, f.default_factory())
        else:
            specs[f.name] = KeySpec(f.name, True)
    return specs


# ------------------------------------------------------------------ locations
@dataclass
class _Lines:
    """Lines (1-based) by path in the document: where each value starts, and each key.

    A step is reported at its own first line, a bad key at the key's line.
    """

    values: dict[Where, int] = field(default_factory=dict)
    keys: dict[Where, int] = field(default_factory=dict)

    @classmethod
    def of(cls, text: str) -> _Lines:
        """Best effort (JSON is YAML too, mostly): a file PyYAML cannot compose has no lines."""
        lines = cls()
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError:
            return lines

        def walk(node: yaml.Node, where: Where) -> None:
            lines.values.setdefault(where, node.start_mark.line + 1)
            if len(where) > 64:  # recursive aliases
                return
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    inner = (*where, str(key.value))
                    lines.keys.setdefault(inner, key.start_mark.line + 1)
                    walk(value, inner)
            elif isinstance(node, yaml.SequenceNode):
                for i, value in enumerate(node.value):
                    walk(value, (*where, i))

        if root is not None:
            walk(root, ())
        return lines

    def line(self, where: Where, on_key: bool) -> int | None:
        if on_key and where in self.keys:
            return self.keys[where]
        while where and where not in self.values:
            where = where[:-1]
        return self.values.get(where)


@dataclass(frozen=True)
class _At:
    """A place in the file: for line numbers (``where``) and for messages (``label``)."""

    path: Path
    lines: _Lines
    where: Where = ()
    label: str = "sequence"
    kind: str = ""
    on_key: bool = False  # at a mapping key (report its line) or at a value

    def item(self, i: int, label: str) -> _At:
        where = (*self.where, i)
        return dataclasses.replace(self, where=where, label=f"{label}[{i}]", kind="", on_key=False)

    def key(self, key: str) -> _At:
        return dataclasses.replace(self, where=(*self.where, key), on_key=True)

    def of_kind(self, kind: str) -> _At:
        return dataclasses.replace(self, kind=kind)

    def fail(self, message: str, key: str | None = None) -> NoReturn:
        line = self.lines.line(self.where, self.on_key)
        place = f"{self.path}:{line}" if line else str(self.path)
        step = f"{self.label} ({self.kind})" if self.kind else self.label
        about = f"{step}, key {key!r}" if key is not None else step
        raise SequenceFileError(f"{place}: {about}: {message}")


def _keys_text(specs: Mapping[str, bool]) -> str:
    required = [k for k, r in specs.items() if r]
    optional = [k for k, r in specs.items() if not r]
    text = ", ".join(required) + " (required)" if required else ""
    if optional:
        text += ("; " if text else "") + ", ".join(optional) + " (optional)"
    return text


def _check_keys(at: _At, d: Mapping[Any, Any], specs: Mapping[str, bool], what: str) -> None:
    """Refuse unknown keys (with a guess at the meant one) and missing required ones."""
    for key in d:
        if key not in specs:
            close = difflib.get_close_matches(str(key), list(specs), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            at.key(str(key)).fail(f"unknown key {key!r}{hint}; {what} has keys: {_keys_text(specs)}")
    for key, required in specs.items():
        if required and key not in d:
            at.fail(f"missing key {key!r}; {what} has keys: {_keys_text(specs)}")


def _type_name(x: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "text", type(None): "nothing (null)"}.get(
        type(x), type(x).__name__
    )


# -------------------------------------------------------------------- values
def _number(
    at: _At, key: str, x: Any, *, minimum: float | None = None, integer: bool = False, what: str = ""
) -> Any:
    """A finite number (not a boolean); ``what`` says which part of the key's value it is."""
    ok = isinstance(x, numbers.Integral if integer else numbers.Real) and not isinstance(x, bool)
    if not ok or (not integer and not math.isfinite(x)):
        want = "a whole number" if integer else "a number"
        hint = ""
        if isinstance(x, str) and _looks_numeric(x):
            hint = f" (YAML reads {x} as text: write {_with_dot(x)})"
        at.fail(f"{what}needs {want}, got {_type_name(x)} {x!r}{hint}", key)
    if minimum is not None and x < minimum:
        at.fail(f"{what}must be >= {minimum:g}, got {x!r}", key)
    return int(x) if integer else float(x)


def _looks_numeric(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _with_dot(s: str) -> str:
    """``1e-3`` -> ``1.0e-3``: the spelling YAML 1.1 (PyYAML) reads as a number."""
    mantissa, e, exponent = s.lower().partition("e")
    return f"{mantissa}.0e{exponent}" if e and "." not in mantissa else s


def _value_list(at: _At, key: str, kind: str, args: Any, what: str) -> list[Any]:
    """``{linspace: [start, stop, num]}`` or ``{arange: {start: .., stop: .., step: ..}}``."""
    names = VALUE_LISTS[kind]
    what = f"{what}{kind}: "
    takes = f"{kind} takes {', '.join(names)}: a list [{', '.join(names)}] or a mapping with those keys"
    if isinstance(args, list):
        if len(args) != len(names):
            at.fail(f"{what}needs {len(names)} values [{', '.join(names)}], got {len(args)}", key)
        args = dict(zip(names, args, strict=True))
    elif isinstance(args, dict):
        for name in args:
            if name not in names:
                close = difflib.get_close_matches(str(name), list(names), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                at.fail(f"{what}unknown key {name!r}{hint}; {takes}", key)
        for name in names:
            if name not in args:
                at.fail(f"{what}missing key {name!r}; {takes}", key)
    else:
        at.fail(f"{what}{takes}; got {_type_name(args)} {args!r}", key)
    start = _number(at, key, args["start"], what=f"{what}start ")
    stop = _number(at, key, args["stop"], what=f"{what}stop ")
    if kind == "linspace":
        num = _number(at, key, args["num"], minimum=1, integer=True, what=f"{what}num ")
        if num > MAX_VALUES:
            at.fail(f"{what}num {num} is more than {MAX_VALUES} values", key)
        return np.linspace(start, stop, num).tolist()
    step = _number(at, key, args["step"], what=f"{what}step ")
    count = math.ceil((stop - start) / step) if step else 0
    if count <= 0:
        at.fail(f"{what}from {start:g} to {stop:g} in steps of {step:g} gives no values", key)
    if count > MAX_VALUES:
        at.fail(f"{what}gives {count} values, more than {MAX_VALUES}", key)
    return np.arange(start, stop, step).tolist()


def _values(at: _At, key: str, x: Any, what: str = "") -> list[Any]:
    """A 1-D list of values: written out, or as a linspace/arange mapping."""
    if isinstance(x, dict):
        if len(x) == 1 and next(iter(x)) in VALUE_LISTS:
            kind, args = next(iter(x.items()))
            return _value_list(at, key, kind, args, what)
        unknown = [k for k in x if k not in VALUE_LISTS]
        at.fail(
            f"{what}a value list is a list, {{linspace: [start, stop, num]}} or "
            f"{{arange: [start, stop, step]}}; got a mapping with keys {[str(k) for k in x]}"
            + (f" (unknown: {unknown[0]!r})" if unknown else ""),
            key,
        )
    if not isinstance(x, list):
        at.fail(f"{what}needs a list of values or a linspace/arange, got {_type_name(x)} {x!r}", key)
    if not x:
        at.fail(f"{what}the value list is empty", key)
    for v in x:
        if not isinstance(v, str | numbers.Real):
            at.fail(f"{what}values must be numbers (or text), got {_type_name(v)} {v!r}", key)
        if isinstance(v, str) and _looks_numeric(v):
            at.fail(f"{what}value {v!r} is text (YAML reads {v} so): write {_with_dot(v)}", key)
    return x


# --------------------------------------------------------------- step keys
def _text(at: _At, key: str, x: Any) -> str:
    if not isinstance(x, str) or not x:
        at.fail(f"needs a non-empty text, got {_type_name(x)} {x!r}", key)
    return x


def _dims(at: _At, key: str, x: Any) -> tuple[str, ...]:
    if not isinstance(x, list) or not all(isinstance(d, str) and d for d in x):
        at.fail(f"needs a list of dimension names, got {x!r}", key)
    return tuple(x)


def _coords(at: _At, key: str, x: Any) -> dict[str, list[Any]]:
    if not isinstance(x, dict):
        at.fail(f"needs a mapping of dimension name to values, got {_type_name(x)}", key)
    return {str(dim): _values(at.key(str(dim)), key, v, f"{dim}: ") for dim, v in x.items()}


def _setpoints(at: _At, key: str, x: Any) -> dict[str, list[Any]]:
    """``{param: values, ...}`` or the stored form ``[[param, values], ...]``."""
    if isinstance(x, list):
        pairs = []
        for i, pair in enumerate(x):
            if not (isinstance(pair, list) and len(pair) == 2):
                at.fail(f"item {i} must be a pair [parameter, values], got {pair!r}", key)
            pairs.append(pair)
    elif isinstance(x, dict):
        pairs = [[p, v] for p, v in x.items()]
    else:
        at.fail(f"needs a mapping of parameter to values, got {_type_name(x)} {x!r}", key)
    if not pairs:
        at.fail("drives no parameter; give at least one 'parameter: values'", key)
    out: dict[str, list[Any]] = {}
    for param, values in pairs:
        name = _text(at, key, param)
        if name in out:
            at.fail(f"parameter {name!r} is given twice", key)
        out[name] = _values(at.key(name), key, values, f"{name}: ")
    return out


def _body(at: _At, key: str, x: Any) -> tuple[Step, ...]:
    if not isinstance(x, list):
        at.fail(f"needs a list of steps, got {_type_name(x)}", key)
    label = f"{at.label}.{key}"
    return tuple(_step(at.item(i, label), d) for i, d in enumerate(x))


def _any_value(at: _At, key: str, x: Any) -> Any:
    if isinstance(x, dict) and any(k in VALUE_LISTS for k in x):
        return _values(at, key, x)
    return x


#: how each step key is checked and converted, by name (a name means the same in every step)
CONVERTERS: dict[str, Callable[[_At, str, Any], Any]] = {
    "param": _text,
    "dim": _text,
    "name": _text,
    "value": _any_value,
    "dims": _dims,
    "coords": _coords,
    "setpoints": _setpoints,
    "coord": _values,
    "body": _body,
    "steps": _body,
    "seconds": lambda at, key, x: _number(at, key, x, minimum=0),
    "settle": lambda at, key, x: _number(at, key, x, minimum=0),
    "interval": lambda at, key, x: _number(at, key, x, minimum=0),
    "n": lambda at, key, x: _number(at, key, x, minimum=0, integer=True),
}


def _step(at: _At, d: Any) -> Step:
    types = step_types()
    if not isinstance(d, dict):
        at.fail(f"a step is a mapping with 'type' ({', '.join(types)}), got {_type_name(d)} {d!r}")
    if "type" not in d:
        at.fail(f"missing key 'type'; a step's type is one of: {', '.join(types)}")
    kind = d["type"]
    if kind not in types:
        close = difflib.get_close_matches(str(kind), list(types), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        at.fail(f"unknown step type {kind!r}{hint}; step types: {', '.join(types)}", "type")
    at = at.of_kind(kind)
    specs = step_keys(kind)
    _check_keys(at, d, {"type": True} | {k: s.required for k, s in specs.items()}, f"a {kind} step")
    kwargs = {}
    for key, raw in d.items():
        if key == "type" or (raw is None and not specs[key].required and specs[key].default is None):
            continue  # the stored form writes an absent coord or name as null
        kwargs[key] = CONVERTERS[key](at.key(key), key, raw)
    try:
        return types[kind](**kwargs)
    except (TypeError, ValueError) as exc:
        at.fail(str(exc))


def _steps(at: _At, doc: Any) -> Step:
    """The ``sequence`` of a wrapper (or a whole bare file): one step or a list of them."""
    if isinstance(doc, list):
        if not doc:
            at.fail("holds no steps")
        return Sequence(tuple(_step(at.item(i, at.label), d) for i, d in enumerate(doc)))
    return _step(at, doc)


def _metadata(at: _At, x: Any) -> dict[str, Any]:
    if x is None:
        return {}
    if not isinstance(x, dict):
        at.fail(f"needs a mapping, got {_type_name(x)} {x!r}", "metadata")
    for key in x:
        if not isinstance(key, str) or key in RESERVED_ATTRS or key.startswith("version_"):
            at.fail(f"metadata key {key!r} is reserved for labstack's own run attributes", "metadata")
    return dict(x)


# ---------------------------------------------------------------- the file
def _is_bare_step(doc: Any) -> bool:
    """A file that is one step (the stored form), not a wrapper: it has ``type``, or only
    step keys (then the step's check names the missing ``type``)."""
    if not isinstance(doc, dict) or "sequence" in doc:
        return False
    if "type" in doc:
        return True
    step_key_names = {k for kind in step_types() for k in step_keys(kind)}
    return bool(doc) and not doc.keys() & WRAPPER_KEYS.keys() and bool(doc.keys() & step_key_names)


def load_sequence_file(path: str | Path) -> SequenceFile:
    """Read and check a sequence description file; nothing is opened or touched."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SequenceFileError(f"{path}: {exc.strerror}") from None
    try:
        doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SequenceFileError(f"{path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}") from None
    top = _At(path, _Lines.of(text), label="top level")
    if isinstance(doc, list) or _is_bare_step(doc):
        return SequenceFile(path.stem, _steps(dataclasses.replace(top, label="sequence"), doc))
    if not isinstance(doc, dict):
        top.fail(
            f"expected a mapping with keys {_keys_text(WRAPPER_KEYS)}, one step or a list of "
            f"steps; got {_type_name(doc)}"
        )
    _check_keys(top, doc, WRAPPER_KEYS, "a sequence file")
    name = doc.get("name")
    if name is not None and (isinstance(name, dict | list | bool) or str(name) == ""):
        top.fail(f"needs a non-empty text, got {_type_name(name)} {name!r}", "name")
    metadata = _metadata(top.key("metadata"), doc.get("metadata"))
    at = dataclasses.replace(top, where=("sequence",), label="sequence")
    return SequenceFile(path.stem if name is None else str(name), _steps(at, doc["sequence"]), metadata)


# -------------------------------------------------------- shipped examples
def shipped_sequences() -> dict[str, Path]:
    """The example files that ship in ``station_configs/sequences``, by file name."""
    folder = resources.files(SHIPPED_PACKAGE) / SHIPPED_FOLDER
    if not folder.is_dir():
        return {}
    files = sorted(folder.iterdir(), key=lambda p: p.name)
    return {p.name: Path(str(p)) for p in files if p.name.endswith((".yaml", ".json"))}


def find_sequence_file(name_or_path: str | Path) -> tuple[Path, bool]:
    """``(path, shipped)``: the file as given if it exists, else a shipped example of that name.

    So ``labstack measure iv.yaml`` works from any directory, while a file of the same
    name in the working directory always wins.
    """
    path = Path(name_or_path)
    if path.exists():
        return path, False
    shipped = shipped_sequences()
    if path.parent == Path("."):
        for candidate in (path.name, f"{path.name}.yaml"):
            if candidate in shipped:
                return shipped[candidate], True
    raise SequenceFileError(
        f"{path}: no such file (shipped examples, usable by name: {', '.join(shipped) or 'none'})"
    )
