"""Attribute values that every reader accepts.

zarr takes any JSON, netCDF only numbers, strings and flat arrays of them. labstack
keeps attributes to scalars and strings (anything else JSON-encoded) so a run exports
to netCDF without loss of information and reads the same in every tool.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
from qcodes.utils import NumpyJSONEncoder


def attr_value(value: Any) -> Any:
    """``value`` if it is a str, int, float, bool or None; its JSON text otherwise."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    return json.dumps(value, cls=NumpyJSONEncoder)


def netcdf_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes netCDF can hold: bools as 0/1, None dropped, the rest as :func:`attr_value`."""
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        value = attr_value(value)
        if value is None:
            continue
        out[key] = int(value) if isinstance(value, bool) else value
    return out
