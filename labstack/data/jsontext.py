"""JSON text for what a run writes: its snapshot, sequence, attributes and index.

Every run encodes a handful of JSON documents before its first point (the station
snapshot, the sequence with all its setpoints, the dataset attributes that hold both,
``run.json``, the zarr metadata). With the standard library's encoder that was about
a tenth of a short sweep's wall time: its C encoder still formats each float through
Python's ``float.__repr__``. orjson writes the same documents 5–20x faster.

The text reads back as it did: orjson writes NaN and infinities as ``null``, the
standard library as the tokens ``NaN``/``Infinity`` that ``json.loads`` (and so every
labstack reader) turns back into floats. So where the fast text holds a ``null`` and
the data a non-finite float, the standard library writes the document, exactly as
before. A station snapshot is the one exception (``exact_nan=False``): it is a record
read by people and by tools that take JSON as the standard defines it, and a NaN in it
becomes ``null``. The text is compact (no spaces). Types orjson does not know (complex numbers,
``uncertainties`` values, QCoDeS objects) go through QCoDeS' ``NumpyJSONEncoder``,
as they did before, and from there to ``str``; datetimes and dataclasses too, so a
document reads as it did with ``json.dumps(..., default=str)``. What orjson refuses
outright (integers past 64 bits, nesting deeper than 254) is written by the standard
library as before.
"""

from __future__ import annotations

import cmath
import json
import math
from typing import Any, Final

import numpy as np
import orjson
from qcodes.utils import NumpyJSONEncoder

_OPTIONS: Final = (
    orjson.OPT_SERIALIZE_NUMPY
    | orjson.OPT_NON_STR_KEYS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
)
_FALLBACK = NumpyJSONEncoder()


def _default(value: Any) -> Any:
    """What orjson cannot encode: QCoDeS' rules (complex, arrays of odd dtypes), else str."""
    try:
        return _FALLBACK.default(value)
    except TypeError:
        return str(value)


def holds_nonfinite(data: Any) -> bool:
    """Whether ``data`` (nested dicts, lists, arrays) holds a NaN or an infinity."""
    kind = type(data)
    if kind is str or kind is int or kind is bool or data is None:  # most of what is walked
        return False
    if isinstance(data, float):
        return not math.isfinite(data)
    if isinstance(data, dict):
        return any(holds_nonfinite(v) for v in data.values())
    if isinstance(data, list | tuple):
        try:  # a list of numbers in one C call: a finite sum means finite items
            if math.isfinite(sum(data, 0.0)):
                return False
        except (TypeError, OverflowError):  # not all numbers (or ints too large for a float)
            pass
        return any(holds_nonfinite(v) for v in data)  # a NaN, or only a sum too large?
    if isinstance(data, np.ndarray):
        return data.dtype.kind in "fc" and not bool(np.isfinite(data).all())
    if isinstance(data, np.inexact):
        return not bool(np.isfinite(data))
    if isinstance(data, complex):
        return not cmath.isfinite(data)
    return False


def dumps(data: Any, *, exact_nan: bool = True) -> str:
    """``data`` as JSON text; with ``exact_nan`` it reads back as the standard library's would."""
    try:
        text = orjson.dumps(data, default=_default, option=_OPTIONS)
    except orjson.JSONEncodeError:  # refused (an integer past 64 bits, deep nesting)
        return json.dumps(data, cls=NumpyJSONEncoder)
    if exact_nan and b"null" in text and holds_nonfinite(data):
        return json.dumps(data, cls=NumpyJSONEncoder)
    return text.decode()
