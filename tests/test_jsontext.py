"""The fast JSON encoder reads back as the standard library's did (labstack.data.jsontext)."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import UTC, datetime

import numpy as np
from qcodes.utils import NumpyJSONEncoder

from labstack.data.jsontext import dumps, holds_nonfinite


def _as_before(data: object) -> object:
    return json.loads(json.dumps(data, cls=NumpyJSONEncoder))


@dataclasses.dataclass
class _Point:
    x: float


def test_non_finite_floats_read_back_as_floats_not_none() -> None:
    data = {"a": math.nan, "b": [1.0, math.inf, 2.0], "c": None, "d": {"e": [[0.5, -math.inf]]}}
    back = json.loads(dumps(data))
    assert math.isnan(back["a"]) and back["b"][1] == math.inf and back["c"] is None
    assert back["d"]["e"][0][1] == -math.inf
    # a None alone is not a NaN: the fast text stands (compact, no spaces)
    assert dumps({"c": None, "v": [1.0, 2.0]}) == '{"c":null,"v":[1.0,2.0]}'


def test_snapshot_mode_writes_standard_json() -> None:
    assert json.loads(dumps({"value": math.nan}, exact_nan=False)) == {"value": None}


def test_types_the_fast_encoder_does_not_know_go_the_old_way() -> None:
    when = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    data = {
        "np_scalars": [np.float32(0.25), np.int16(3), np.bool_(True)],
        "array": np.arange(4.0).reshape(2, 2),
        "complex": 1 + 2j,
        "complex_array": np.array([1 + 1j]),
        "when": when,
        "point": _Point(0.5),
        "big": 2**70,
        7: "int key",
    }
    back = json.loads(dumps(data))
    before = _as_before(data)
    assert back == before, (back, before)


def test_holds_nonfinite_finds_nan_anywhere() -> None:
    assert not holds_nonfinite({"a": [1, 2.0, "x", {"b": (3, 4.5)}], "c": np.arange(3.0)})
    assert holds_nonfinite({"a": [1, "x", {"b": (3, math.nan)}]})
    assert holds_nonfinite([np.array([1.0, np.inf])])
    assert holds_nonfinite(np.float32("nan"))
    assert holds_nonfinite([complex(1, math.nan)])
    assert not holds_nonfinite([1e308, 1e308])  # a sum that overflows: checked item by item
    assert not holds_nonfinite([[1e308], [1e308], 2**1100])
