"""A value and its standard error, written to the digits the error supports.

A fit gives ``V0 = 0.0123456789 ± 0.000234`` V; a person should read
``12.35 ± 0.23 mV``. The rule is the Particle Data Group's (Review of Particle
Physics, "Rounding"): take the error's three leading digits; 100-354 keep two
significant digits, 355-949 keep one, 950-999 round up to 1000 and keep two.
The value is then rounded to the same decimal place as the error.

Units that take an SI prefix (V, K, s, Hz, A, W) are scaled so the number sits
between 1 and 1000 (mV, mK, µs, GHz); compound units (K/V, 1/s, K^2/A^2) keep
their unit and switch to a power of ten outside 0.001-10 000. A value without an
error (``None`` or NaN) shows four significant digits; an error of exactly 0 (a
design value, not a measurement) shows the value as given.

Pure text, no labstack imports: the calibration nodes' figure titles, the
reports and the dashboard all use it, so a number reads the same everywhere.
"""

from __future__ import annotations

import math
from typing import Any

PREFIXABLE = frozenset({"V", "K", "s", "Hz", "A", "W"})
PREFIXES = {-9: "n", -6: "µ", -3: "m", 0: "", 3: "k", 6: "M", 9: "G"}
SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def error_digits(stderr: float) -> tuple[float, int]:
    """The error rounded by the PDG rule, and the decimal exponent of its last digit.

    ``error_digits(0.000234) == (0.00023, -5)``: two significant digits, the last
    in the 10^-5 place.
    """
    if not (math.isfinite(stderr) and stderr > 0):
        raise ValueError(f"an error to round must be finite and > 0, got {stderr!r}")
    exponent = math.floor(math.log10(stderr))
    leading = round(stderr / 10 ** (exponent - 2))  # three leading digits, 100..1000
    if leading >= 1000:  # 999.6 rounds to 1000: one order up
        exponent, leading = exponent + 1, 100
    if leading <= 354:
        last = exponent - 1
    elif leading <= 949:
        last = exponent
    else:  # 950..999: up to 1000, two significant digits
        exponent, last = exponent + 1, exponent
    return round(stderr / 10.0**last) * 10.0**last, last


def _engineering(x: float) -> int:
    if x == 0 or not math.isfinite(x):
        return 0
    return max(-9, min(9, 3 * math.floor(math.log10(abs(x)) / 3)))


def _fixed(x: float, decimals: int) -> str:
    text = f"{x:.{max(decimals, 0)}f}"
    return "0" + text[2:] if text.startswith("-0") and float(text) == 0 else text


def _scaled(value: float, stderr: float | None, unit: str) -> tuple[int, str]:
    """(power of ten to divide by, unit to print) for ``value``."""
    ref = value if value != 0 else (stderr or 0.0)
    if unit in PREFIXABLE:
        power = _engineering(ref)
        return power, PREFIXES[power] + unit
    if ref == 0 or 1e-3 <= abs(ref) < 1e4:
        return 0, unit
    return math.floor(math.log10(abs(ref))), unit


def format_value(value: Any, stderr: Any = None, unit: str = "") -> str:
    """``value ± stderr unit`` to the digits the error supports (see the module docstring).

    Non-numbers (text, booleans, lists) are returned as text; lists shortened.
    """
    if value is None:
        return "—"
    if isinstance(value, bool) or isinstance(value, str):
        return str(value)
    if isinstance(value, (list, tuple)):
        return _list_text(value, unit)
    value = float(value)
    if not math.isfinite(value):
        return f"{value} {unit}".strip()
    err = None if stderr is None or isinstance(stderr, (list, tuple)) else float(stderr)
    power, shown_unit = _scaled(value, err, unit)
    scientific = unit not in PREFIXABLE and power != 0
    scale = 10.0**power
    if err is None or not math.isfinite(err):
        digits = 4 - 1 - math.floor(math.log10(abs(value / scale))) if value else 3
        text = _fixed(round(value / scale, digits), digits)
    elif err == 0:
        text = f"{value / scale:.6g}"
    else:
        rounded, last = error_digits(err)
        decimals = power - last
        v = round(value / 10.0**last) * 10.0**last
        text = f"{_fixed(v / scale, decimals)} ± {_fixed(rounded / scale, decimals)}"
        if scientific:
            text = f"({text})"
    if scientific:
        text += "×10" + str(power).translate(SUPERSCRIPT)
    return f"{text} {shown_unit}".rstrip()


def _list_text(values: list | tuple, unit: str) -> str:
    flat = list(values)
    if flat and all(isinstance(v, (list, tuple)) for v in flat):
        return f"{len(flat)}×{len(flat[0])} matrix" + (f" ({unit})" if unit else "")
    if all(isinstance(v, bool) for v in flat):
        return f"{sum(flat)} of {len(flat)}"
    shown = ", ".join(str(v) if isinstance(v, int) else f"{float(v):.3g}" for v in flat[:8])
    return "[" + shown + (", …]" if len(flat) > 8 else "]") + (f" {unit}" if unit else "")
