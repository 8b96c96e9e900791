"""Find QCoDeS parameters by their dotted station name: the one resolver labstack uses.

``"qdac1.ch01.dc_constant_V"`` is looked up as station component ``qdac1``, then its
submodule (or channel) ``ch01``, then its parameter ``dc_constant_V``. Channel lists
and other public attributes that are not registered submodules are followed too.
Errors name the part that failed and what exists there, because a typo in a station
file or a calibration should cost seconds, not a debugging session.

Station files, the safety layer, sequences and calibrations all resolve names here,
so a name that works in one place works in every other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qcodes.parameters import ParameterBase

ParamRef = str | ParameterBase


class UnknownParameterError(LookupError):
    """A dotted name that does not lead to a parameter in the station."""


def _components(station: Any) -> Mapping[str, Any]:
    """The named components of a LabStation, a QCoDeS Station or a plain mapping."""
    if isinstance(station, Mapping):
        return station
    return getattr(station, "components", None) or {}


def _children(node: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out.update(getattr(node, "submodules", {}) or {})
    out.update(getattr(node, "parameters", {}) or {})
    return out


def find_parameter(station: Any, ref: ParamRef) -> ParameterBase:
    """The parameter ``ref`` names in ``station`` (``ref`` itself if it is a parameter).

    ``station`` is anything with named ``components`` (a :class:`LabStation`, a
    QCoDeS ``Station``) or a mapping of them.
    """
    if isinstance(ref, ParameterBase):
        return ref
    if not isinstance(ref, str) or not ref:
        raise TypeError(f"a parameter is a dotted name or a QCoDeS parameter, got {ref!r}")
    parts = ref.split(".")
    components = _components(station)
    if parts[0] not in components:
        have = ", ".join(sorted(components)) or "nothing"
        raise UnknownParameterError(
            f"parameter {ref!r}: the station has no component {parts[0]!r} (it has: {have})"
        )
    node: Any = components[parts[0]]
    for i, part in enumerate(parts[1:], start=1):
        children = _children(node)
        if part in children:
            node = children[part]
            continue
        # Channel lists and other attributes that are not registered submodules.
        attr = getattr(node, part, None) if not part.startswith("_") else None
        if attr is None:
            where = ".".join(parts[:i])
            have = ", ".join(sorted(children)) or "nothing"
            raise UnknownParameterError(
                f"parameter {ref!r}: {where!r} has no parameter or submodule {part!r} "
                f"(it has: {have})"
            )
        node = attr
    if not isinstance(node, ParameterBase):
        raise UnknownParameterError(
            f"{ref!r} names a {type(node).__name__}, not a parameter; "
            f"its parameters are: {', '.join(sorted(_children(node))) or 'none'}"
        )
    return node
