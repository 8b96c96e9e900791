"""Station files: read, checked with file, line and key, before anything is opened.

A station file is a QCoDeS station YAML (``instruments:`` as QCoDeS knows it)
with one more top-level section, ``labstack:``, that says how the chip is wired
and what the hardware may be given::

    labstack:
      chip:
        cells: 16
        bias: [qdac1.ch01-ch16]          # cell i is the i-th channel listed
        bias_parameter: dc_constant_V
        couplers: [qdac2.ch01-ch15]      # optional
        coupler_parameter: dc_constant_V # default: bias_parameter (another DAC family differs)
        coupler_pairs: chain             # or an explicit list of [i, j]
      readout: sampler                   # instrument returning (cell, sample) arrays, or
      # readout: {kind: lockin, lockins: [lockin1-lockin4], preamp: preamp, lines_per_lockin: 4}
      thermometry:
        instrument: ls372
        mixing_chamber: ch06
        chip: ch08
        heater: sample_heater
      clock: clock                       # omit on real hardware: wall time
      limits:                            # only ever narrow a driver's range
        qdac1.ch01-ch16.dc_constant_V: [-1.5, 1.5]

plus the safety sections of :mod:`labstack.safety.config`. Which instrument fills
which role, and which models can, is :mod:`labstack.station.roles`. QCoDeS's own ``limits:``
key under an instrument's ``parameters:`` *replaces* the driver's validator and could
widen a range the driver protects, so it is refused here with the file and line.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from labstack.safety.config import SafetyConfig, parse_safety
from labstack.station.roles import Readout, check_roles, parse_readout, thermometry_model

#: the PyVISA backend of the virtual lab: ``visalib: "<lab description>@labstack"``
VISALIB_SUFFIX = "@labstack"

Lines = dict[tuple[str, ...], int]


class StationConfigError(ValueError):
    """A station file that cannot be used. The message names the file, line and key."""


@dataclass
class ChipLayout:
    """How the chip is wired to the station's instruments (parameter full names)."""

    n_cells: int
    bias: list[str]
    couplers: list[str] = field(default_factory=list)
    coupler_pairs: list[tuple[int, int]] = field(default_factory=list)
    #: the sampler's instrument name ("" when the readout is lock-ins: see ``readout_role``)
    readout: str = "sampler"
    readout_role: Readout = field(default_factory=Readout)
    thermometer_mc: str | None = None
    thermometer_chip: str | None = None
    heater: str | None = None
    clock: str | None = None
    limits: dict[str, tuple[float, float]] = field(default_factory=dict)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    #: the thermometry instrument (None: no thermometry role)
    thermometry: str | None = None
    #: how the heater is driven: ``open_loop`` (a current, Lake Shore) or ``closed_loop``
    #: (a set-point the controller holds, Triton); :class:`~labstack.station.roles.Thermometry`
    heater_control: str = "open_loop"
    #: the heater's mode, range and set-point parameters (dotted names; None without a heater)
    heater_mode: str | None = None
    heater_range: str | None = None
    heater_setpoint: str | None = None
    #: whether the thermometers share a scanner (a fresh reading needs a switch and a pause)
    thermometers_scanned: bool = True

    def roles(self) -> list[tuple[tuple[str, ...], str, str]]:
        """(station-file key, instrument, role) of every role assignment in the file."""
        out = [(("labstack", "chip", "bias"), n.split(".")[0], "bias") for n in self.bias]
        out += [(("labstack", "chip", "couplers"), n.split(".")[0], "couplers") for n in self.couplers]
        r = self.readout_role
        if r.kind == "sampler":
            out.append((("labstack", "readout"), r.instrument, "readout.sampler"))
        else:
            out += [(("labstack", "readout", "lockins"), n, "readout.lockin") for n in r.lockins]
            if r.preamp:
                out.append((("labstack", "readout", "preamp"), r.preamp, "preamp"))
        if self.thermometry:
            out.append((("labstack", "thermometry", "instrument"), self.thermometry, "thermometry"))
        if self.clock:
            out.append((("labstack", "clock"), self.clock, "clock"))
        return out


@dataclass
class StationFile:
    """A station file as read and checked: the QCoDeS part, the chip layout, where each key is."""

    path: Path
    text: str
    document: dict[str, Any]
    lines: Lines
    layout: ChipLayout

    @property
    def instruments(self) -> dict[str, Any]:
        return self.document["instruments"]

    def qcodes_yaml(self) -> str:
        """The file without its ``labstack:`` section, as QCoDeS's ``Station.load_config`` reads it.

        A raw-socket instrument's ``visalib`` is labstack's (see :meth:`raw_socket_visalib`),
        not an argument of its driver, so it is left out.
        """
        document = {k: v for k, v in self.document.items() if k != "labstack"}
        raw = [name for name in self.instruments if self.raw_socket_visalib(name) is not None]
        if raw:
            document = copy.deepcopy(document)
            for name in raw:
                document["instruments"][name]["init"].pop("visalib")
        return yaml.safe_dump(document)

    def raw_socket_visalib(self, name: str) -> str | None:
        """The VISA library that answers instrument ``name`` if it is a raw-socket instrument
        (a ``port:`` key, as QCoDeS's ``IPInstrument`` drivers take, and an ``init.visalib``).

        Such a driver never goes through PyVISA; labstack's libraries serve it on a loopback
        socket instead (:mod:`labstack.visa.raw_socket`). None for every other instrument.
        """
        spec = self.instruments.get(name) or {}
        visalib = (spec.get("init") or {}).get("visalib")
        if "port" not in spec or not visalib:
            return None
        return str(visalib)

    def where(self, *key: str) -> str:
        """``file:line`` of ``key`` (or of the nearest enclosing key)."""
        for i in range(len(key), 0, -1):
            if key[:i] in self.lines:
                return f"{self.path}:{self.lines[key[:i]]}"
        return f"{self.path}:?"

    def lab(self) -> str | None:
        """The virtual-lab description the file's instruments name (None: no virtual lab).

        A served lab's station (``labstack serve``) reaches its instruments through
        pyvisa-py; its ``labstack.service.lab`` names the lab behind the sockets.
        """
        for spec in self.instruments.values():
            visalib = str((spec.get("init") or {}).get("visalib", ""))
            if visalib.endswith(VISALIB_SUFFIX):
                return visalib.removesuffix(VISALIB_SUFFIX)
        service = self.service()
        return str(service["lab"]) if service and service.get("lab") is not None else None

    def service(self) -> dict[str, Any] | None:
        """The ``labstack.service`` section a served lab's station file carries (None: not served)."""
        section = (self.document.get("labstack") or {}).get("service")
        if section is None:
            return None
        if not isinstance(section, dict):
            raise StationConfigError(f"{self.where('labstack', 'service')}: labstack.service: must be a mapping")
        return section


def station_path(name_or_path: str | Path) -> Path:
    """A station file by path, or by name among the shipped ``station_configs``."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    if path.suffix in (".yaml", ".yml"):
        raise StationConfigError(f"{path}: no such station file")
    shipped = resources.files("labstack.station_configs") / f"{name_or_path}.yaml"
    if shipped.is_file():
        return Path(str(shipped))
    names = sorted(
        p.name.removesuffix(".yaml")
        for p in resources.files("labstack.station_configs").iterdir()
        if p.name.endswith(".yaml")
    )
    raise StationConfigError(f"no station {name_or_path!r}: give a .yaml path or one of {names}")


def read_station_file(
    name_or_path: str | Path = "virtual",
    *,
    text: str | None = None,
    source: str | None = None,
    lab: str | None = None,
    wrap_visalib: Any = None,
) -> StationFile:
    """Read and check a station file; nothing is opened.

    ``text`` replaces the file's content (a generated station), ``source`` the name
    shown in errors. ``lab`` replaces the virtual-lab description of every
    ``@labstack`` instrument; ``wrap_visalib(instrument, visalib)`` may replace each
    instrument's VISA library specification (``""`` is PyVISA's default).
    """
    if text is None:
        path = station_path(name_or_path)
        text = path.read_text()
    else:
        path = Path(source or str(name_or_path))
    document, lines = _parse(path, text)
    layout = _layout(path, document, lines)
    _check_real_lines_ramped(path, lines, document, layout)
    instruments_section = document.get("instruments")
    if not isinstance(instruments_section, dict) or not instruments_section:
        raise StationConfigError(f"{path}:{lines.get(('instruments',), 1)}: 'instruments' must map names to instruments")
    for name, spec in instruments_section.items():
        where = f"{path}:{lines.get(('instruments', name), '?')}"
        if not isinstance(spec, dict) or "type" not in spec:
            raise StationConfigError(f"{where}: instrument '{name}' needs a 'type'")
        for pname, pspec in (spec.get("parameters") or {}).items():
            if isinstance(pspec, dict) and "limits" in pspec:
                line = lines.get(("instruments", name, "parameters", pname, "limits"), "?")
                raise StationConfigError(
                    f"{path}:{line}: instruments.{name}.parameters.{pname}.limits would replace the "
                    "driver's validator (and could widen it); put the range under labstack.limits"
                )
        if lab is not None:
            init = spec.setdefault("init", {})
            if str(init.get("visalib", "")).endswith(VISALIB_SUFFIX):
                init["visalib"] = f"{lab}{VISALIB_SUFFIX}"
        if wrap_visalib is not None:
            init = spec.setdefault("init", {})
            init["visalib"] = wrap_visalib(name, str(init.get("visalib") or ""))
    _check_references(path, lines, layout, set(instruments_section))

    def role_error(key: tuple[str, ...], message: str) -> StationConfigError:
        line = lines.get(key) or lines.get(key[:-1]) or lines.get(("labstack",), "?")
        return StationConfigError(f"{path}:{line}: {'.'.join(key)}: {message}")

    types = {name: str(spec.get("type", "")) for name, spec in instruments_section.items()}
    check_roles(layout.roles(), types, role_error)
    return StationFile(path, text, document, lines, layout)


# ---------------------------------------------------------------- internals
def expand_channels(spec: str) -> list[str]:
    """``"qdac1.ch01-ch16"`` -> ``["qdac1.ch01", ..., "qdac1.ch16"]``; other names pass through."""
    match = re.fullmatch(r"(.*?)([A-Za-z_]+)(\d+)-\2?(\d+)(\..*)?", spec)
    if not match:
        return [spec]
    prefix, stem, first, last, suffix = match.groups()
    width = len(first)
    a, b = int(first), int(last)
    if b < a:
        raise ValueError(f"channel range {spec!r} runs backwards")
    return [f"{prefix}{stem}{i:0{width}d}{suffix or ''}" for i in range(a, b + 1)]


def _expand_list(items: Any) -> list[str]:
    if isinstance(items, str):
        items = [items]
    out: list[str] = []
    for item in items or []:
        out.extend(expand_channels(str(item)))
    return out


def _parse(path: Path, text: str) -> tuple[dict[str, Any], dict[tuple[str, ...], int]]:
    try:
        node = yaml.compose(text)
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else "?"
        raise StationConfigError(f"{path}:{line}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(document, dict):
        raise StationConfigError(f"{path}:1: a station file is a mapping with 'instruments'")
    lines: dict[tuple[str, ...], int] = {}

    def walk(n: Any, prefix: tuple[str, ...]) -> None:
        if isinstance(n, yaml.MappingNode):
            for key_node, value_node in n.value:
                key = (*prefix, str(key_node.value))
                lines[key] = key_node.start_mark.line + 1
                walk(value_node, key)
        elif isinstance(n, yaml.SequenceNode):  # list items by index, e.g. suspenders.0.signal
            for i, item in enumerate(n.value):
                key = (*prefix, str(i))
                lines.setdefault(key, item.start_mark.line + 1)
                walk(item, key)

    walk(node, ())
    return document, lines


def _layout(path: Path, document: dict[str, Any], lines: dict[tuple[str, ...], int]) -> ChipLayout:
    section = document.get("labstack") or {}

    def fail(key: tuple[str, ...], message: str) -> StationConfigError:
        line = lines.get(key) or lines.get(key[:-1]) or lines.get(("labstack",), "?")
        return StationConfigError(f"{path}:{line}: {'.'.join(key)}: {message}")

    chip = section.get("chip") or {}
    try:
        n_cells = int(chip.get("cells", 0))
    except (TypeError, ValueError):
        raise fail(("labstack", "chip", "cells"), "must be a whole number") from None
    parameter = chip.get("bias_parameter", "dc_constant_V")
    coupler_parameter = chip.get("coupler_parameter", parameter)
    try:
        bias = [f"{c}.{parameter}" for c in _expand_list(chip.get("bias"))]
        couplers = [f"{c}.{coupler_parameter}" for c in _expand_list(chip.get("couplers"))]
    except ValueError as exc:
        raise fail(("labstack", "chip", "bias"), str(exc)) from None
    if n_cells and len(bias) != n_cells:
        raise fail(("labstack", "chip", "bias"), f"lists {len(bias)} channels for {n_cells} cells")
    pairs_spec = chip.get("coupler_pairs", "chain" if couplers else None)
    if pairs_spec == "chain":
        pairs = [(i, i + 1) for i in range(n_cells - 1)]
    elif pairs_spec is None:
        pairs = []
    else:
        try:
            pairs = [(int(i), int(j)) for i, j in pairs_spec]
        except (TypeError, ValueError):
            raise fail(("labstack", "chip", "coupler_pairs"), "must be 'chain' or a list of [i, j]") from None
    if couplers and len(pairs) != len(couplers):
        raise fail(("labstack", "chip", "couplers"), f"lists {len(couplers)} channels for {len(pairs)} coupler pairs")
    thermo = section.get("thermometry") or {}
    inst = thermo.get("instrument")
    instruments = document.get("instruments") if isinstance(document.get("instruments"), dict) else {}
    inst_spec = instruments.get(inst) if inst else None
    model = thermometry_model(str(inst_spec.get("type", "")) if isinstance(inst_spec, dict) else None)
    heater = f"{inst}.{thermo['heater']}" if inst and thermo.get("heater") else None
    if heater is not None and model.control == "closed_loop":
        heater = str(inst)  # the loop's parameters sit on the controller itself

    def heater_param(template: str) -> str | None:
        return template.format(heater=heater, instrument=inst) if heater else None

    def reading(key: str) -> str | None:
        return f"{inst}." + model.reading.format(channel=thermo[key]) if inst and thermo.get(key) else None
    limits: dict[str, tuple[float, float]] = {}
    for key, value in (section.get("limits") or {}).items():
        where = ("labstack", "limits", str(key))
        if not (isinstance(value, list) and len(value) == 2):
            raise fail(where, "must be [low, high]")
        try:
            lo, hi = float(value[0]), float(value[1])
        except (TypeError, ValueError):
            raise fail(where, f"{value} is not two numbers") from None
        if not lo < hi:
            raise fail(where, f"low {lo} must be below high {hi}")
        try:
            names = expand_channels(str(key))
        except ValueError as exc:
            raise fail(where, str(exc)) from None
        for name in names:
            limits[name] = (lo, hi)
    safety = parse_safety(section, fail, expand_channels)
    readout = parse_readout(section.get("readout"), fail, expand_channels)
    return ChipLayout(
        n_cells=n_cells or len(bias),
        bias=bias,
        couplers=couplers,
        coupler_pairs=pairs,
        readout=readout.instrument,
        readout_role=readout,
        thermometry=str(inst) if inst else None,
        thermometer_mc=reading("mixing_chamber"),
        thermometer_chip=reading("chip"),
        heater=heater,
        heater_control=model.control,
        heater_mode=heater_param(model.mode),
        heater_range=heater_param(model.range),
        heater_setpoint=heater_param(model.setpoint),
        thermometers_scanned=model.scanner,
        clock=section.get("clock"),
        limits=limits,
        safety=safety,
    )


def _check_real_lines_ramped(path: Path, lines: Lines, document: dict[str, Any], layout: ChipLayout) -> None:
    """Refuse real (non-virtual) bias and coupler lines without a ramp, unless ``ramps: off``.

    A lab that copies a station file and forgets the ramps would otherwise jump its
    DACs by volts in one step. Virtual instruments (``@labstack``, a served lab) are
    exempt: nothing physical is at the end of their lines.
    """
    section = document.get("labstack") or {}
    instruments = document.get("instruments") or {}
    if layout.safety.ramps_off or section.get("service") is not None or not isinstance(instruments, dict):
        return
    for key, names in ((("labstack", "chip", "bias"), layout.bias), (("labstack", "chip", "couplers"), layout.couplers)):
        for name in names:
            spec = instruments.get(name.split(".")[0])
            visalib = str(((spec or {}).get("init") or {}).get("visalib", "")) if isinstance(spec, dict) else ""
            if visalib.endswith(VISALIB_SUFFIX) or name in layout.safety.ramps:
                continue
            line = lines.get(("labstack", "ramps")) or lines.get(key, "?")
            raise StationConfigError(
                f"{path}:{line}: {'.'.join(key)}: {name} drives a real DAC line without a ramp; add it to "
                "labstack.ramps (max_step, rate_V_per_s) or write 'ramps: off' to run unramped on purpose"
            )


def _check_references(path: Path, lines: dict[tuple[str, ...], int], layout: ChipLayout, names: set[str]) -> None:
    refs = [("labstack", "chip", "bias", n) for n in layout.bias]
    refs += [("labstack", "chip", "couplers", n) for n in layout.couplers]
    refs += [(*key, name) for key, name, _role in layout.roles() if key[:2] == ("labstack", "readout")]
    if layout.thermometry:
        refs.append(("labstack", "thermometry", "instrument", layout.thermometry))
    if layout.clock:
        refs.append(("labstack", "clock", layout.clock))
    refs += [("labstack", "limits", n) for n in layout.limits]
    refs += [("labstack", "ramps", n) for n in layout.safety.ramps]
    refs += [("labstack", "suspenders", str(i), "signal", s.signal) for i, s in enumerate(layout.safety.suspenders)]
    for *key, name in refs:
        instrument = name.split(".")[0]
        if instrument not in names:
            line = _line_of_entry(lines, tuple(key), name)
            raise StationConfigError(
                f"{path}:{line}: {'.'.join(key)} names instrument '{instrument}', which is not in 'instruments'"
            )


def _line_of_entry(lines: dict[tuple[str, ...], int], section: tuple[str, ...], name: str) -> int | str:
    """The line of the entry under ``section`` whose channel range expands to ``name``."""
    for key, line in lines.items():
        if len(key) == len(section) + 1 and key[:-1] == section:
            try:
                if name in expand_channels(key[-1]):
                    return line
            except ValueError:
                continue
    return lines.get(section, "?")


