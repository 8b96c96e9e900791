"""Load a station file: a QCoDeS station plus labstack's chip layout and safety limits.

A station file is a QCoDeS station YAML (``instruments:`` as QCoDeS knows it)
with one more top-level section, ``labstack:``, that says how the chip is wired
and what the hardware may be given::

    labstack:
      chip:
        cells: 16
        bias: [qdac1.ch01-ch16]          # cell i is the i-th channel listed
        bias_parameter: dc_constant_V
        couplers: [qdac2.ch01-ch15]      # optional
        coupler_pairs: chain             # or an explicit list of [i, j]
      readout: sampler                   # instrument returning (cell, sample) arrays
      thermometry:
        instrument: ls372
        mixing_chamber: ch06
        chip: ch08
        heater: sample_heater
      clock: clock                       # omit on real hardware: wall time
      limits:                            # only ever narrow a driver's range
        qdac1.ch01-ch16.dc_constant_V: [-1.5, 1.5]

Limits are added as extra validators on the QCoDeS parameters, so a value
outside them is refused by the parameter itself, whatever path the call comes
through, before any SCPI is sent. QCoDeS's own ``limits:`` key under an
instrument's ``parameters:`` *replaces* the driver's validator and could widen a
range the driver protects, so it is refused here with the file and line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from qcodes.instrument import Instrument
from qcodes.parameters import Parameter
from qcodes.station import Station
from qcodes.validators import Numbers

from labstack.clock import Clock, WallClock
from labstack.safety.config import SafetyConfig, parse_safety

VISALIB_SUFFIX = "@labstack"


class StationConfigError(ValueError):
    """A station file that cannot be used. The message names the file, line and key."""


@dataclass
class ChipLayout:
    """How the chip is wired to the station's instruments (parameter full names)."""

    n_cells: int
    bias: list[str]
    couplers: list[str] = field(default_factory=list)
    coupler_pairs: list[tuple[int, int]] = field(default_factory=list)
    readout: str = "sampler"
    thermometer_mc: str | None = None
    thermometer_chip: str | None = None
    heater: str | None = None
    clock: str | None = None
    limits: dict[str, tuple[float, float]] = field(default_factory=dict)
    safety: SafetyConfig = field(default_factory=SafetyConfig)


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


def load_station(
    name_or_path: str | Path = "virtual",
    *,
    lab: str | None = None,
    wrap_visalib: Callable[[str, str], str] | None = None,
) -> Station:
    """Build the QCoDeS station of a station file and apply labstack's limits.

    ``lab`` replaces the description of the virtual lab (the part before
    ``@labstack`` in every instrument's ``visalib``), e.g. ``"seed=7,cells=16"``.
    ``wrap_visalib(instrument_name, visalib)`` may replace each instrument's VISA
    library specification (``""`` is PyVISA's default); :mod:`labstack.transcript`
    uses it to record or play back every SCPI exchange.
    Everything in the file is checked before any instrument is touched.
    """
    path = station_path(name_or_path)
    text = path.read_text()
    if lab is not None and path == station_path("virtual") and not _fits_default_virtual(lab):
        # another virtual chip size or topology: the station follows the lab's wiring
        from labstack.virtual_station import virtual_station_yaml

        text = virtual_station_yaml(lab)
        path = Path(f"<virtual station for '{lab}'>")
    document, lines = _parse(path, text)
    layout = _layout(path, document, lines)
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

    qcodes_document = {k: v for k, v in document.items() if k != "labstack"}
    station = Station()
    station.load_config(yaml.safe_dump(qcodes_document))
    try:
        for name in instruments_section:
            station.load_instrument(name)
        _apply_limits(station, layout, path, lines)
        clock = station.components[layout.clock] if layout.clock else WallClock()
        station.labstack_safety = _install_safety(station, layout, clock, path, lines)  # type: ignore[attr-defined]
    except Exception:
        close_station(station)
        raise
    station.labstack_layout = layout  # type: ignore[attr-defined]
    station.labstack_clock = clock  # type: ignore[attr-defined]
    station.labstack_source = str(path)  # type: ignore[attr-defined]
    # what a replay needs to build this station again: the file as it was, and the lab
    station.labstack_station_text = text  # type: ignore[attr-defined]
    station.labstack_lab = lab if lab is not None else _file_lab(instruments_section)  # type: ignore[attr-defined]
    return station


def _file_lab(instruments: dict[str, Any]) -> str | None:
    """The virtual-lab description the file itself names (None if it names no virtual lab)."""
    for spec in instruments.values():
        visalib = str((spec.get("init") or {}).get("visalib", ""))
        if visalib.endswith(VISALIB_SUFFIX):
            return visalib.removesuffix(VISALIB_SUFFIX)
    return None


def _fits_default_virtual(lab: str) -> bool:
    """Whether the shipped virtual.yaml (16-cell chain) wires the chip ``lab`` describes."""
    from labstack.sim.lab import VirtualLab

    truth, _ = VirtualLab.truth_from_description(lab)
    return truth.n_cells == 16 and truth.topology == "chain"


def close_station(station: Station) -> None:
    """Close every instrument of a station (QCoDeS keeps a global registry otherwise)."""
    for component in list(station.components.values()):
        if isinstance(component, Instrument):
            component.close()


def layout_of(station: Station) -> ChipLayout:
    layout = getattr(station, "labstack_layout", None)
    if layout is None:
        raise StationConfigError("this station was not loaded by labstack.station.load_station")
    return layout


def clock_of_station(station: Station) -> Clock:
    return getattr(station, "labstack_clock", None) or WallClock()


def find_parameter(station: Station, full_name: str) -> Parameter:
    """Resolve ``"qdac1.ch01.dc_constant_V"`` against a station's components."""
    head, *rest = full_name.split(".")
    if head not in station.components:
        raise KeyError(f"station has no component {head!r} (looking up {full_name!r})")
    node: Any = station.components[head]
    for part in rest:
        if part in getattr(node, "parameters", {}):
            node = node.parameters[part]
        elif part in getattr(node, "submodules", {}):
            node = node.submodules[part]
        else:
            raise KeyError(f"{full_name!r}: {node.full_name if hasattr(node, 'full_name') else head} has no {part!r}")
    if not isinstance(node, Parameter):
        raise KeyError(f"{full_name!r} is not a parameter")
    return node


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
    try:
        bias = [f"{c}.{parameter}" for c in _expand_list(chip.get("bias"))]
        couplers = [f"{c}.{parameter}" for c in _expand_list(chip.get("couplers"))]
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
    return ChipLayout(
        n_cells=n_cells or len(bias),
        bias=bias,
        couplers=couplers,
        coupler_pairs=pairs,
        readout=str(section.get("readout", "sampler")),
        thermometer_mc=f"{inst}.{thermo['mixing_chamber']}.temperature" if inst and thermo.get("mixing_chamber") else None,
        thermometer_chip=f"{inst}.{thermo['chip']}.temperature" if inst and thermo.get("chip") else None,
        heater=f"{inst}.{thermo['heater']}" if inst and thermo.get("heater") else None,
        clock=section.get("clock"),
        limits=limits,
        safety=safety,
    )


def _check_references(path: Path, lines: dict[tuple[str, ...], int], layout: ChipLayout, names: set[str]) -> None:
    refs = [("labstack", "chip", "bias", n) for n in layout.bias]
    refs += [("labstack", "chip", "couplers", n) for n in layout.couplers]
    refs += [("labstack", "readout", layout.readout)]
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


def _apply_limits(station: Station, layout: ChipLayout, path: Path, lines: dict[tuple[str, ...], int]) -> None:
    for name, (lo, hi) in layout.limits.items():
        try:
            parameter = find_parameter(station, name)
        except KeyError as exc:
            raise StationConfigError(f"{path}: labstack.limits: {exc}") from None
        parameter.add_validator(Numbers(lo, hi))


def _install_safety(
    station: Station, layout: ChipLayout, clock: Clock, path: Path, lines: dict[tuple[str, ...], int]
) -> Any:
    """Ramps, SCPI guards, interlocks and retries (:mod:`labstack.safety.install`)."""
    from labstack.safety.install import install_safety

    for section, names in (("ramps", layout.safety.ramps), ("suspenders", [s.signal for s in layout.safety.suspenders])):
        for name in names:
            try:
                find_parameter(station, name)
            except KeyError as exc:
                raise StationConfigError(f"{path}:{lines.get(('labstack', section), '?')}: labstack.{section}: {exc}") from None
    if layout.safety.interlocks != type(layout.safety.interlocks)() and not layout.heater:
        raise StationConfigError(
            f"{path}:{lines.get(('labstack', 'interlocks'), '?')}: labstack.interlocks: needs thermometry.heater"
        )
    return install_safety(station, layout.safety, layout.limits, layout.heater, clock, find_parameter)
