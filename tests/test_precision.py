"""Values and their errors written to the digits the error supports (PDG rounding)."""

from __future__ import annotations

import math

import pytest

from labstack.fit.precision import error_digits, format_value


@pytest.mark.parametrize(
    ("value", "stderr", "unit", "expected"),
    [
        (0.0123456789, 0.000234, "V", "12.35 ± 0.23 mV"),  # 234: two significant digits
        (0.0123456789, 0.000456, "V", "12.3 ± 0.5 mV"),  # 456: one
        (0.0123456789, 0.000987, "V", "12.3 ± 1.0 mV"),  # 987: up to 1000, two
        (0.0123456789, 0.000354, "V", "12.35 ± 0.35 mV"),  # the 354/355 boundary
        (0.0123456789, 0.000355, "V", "12.3 ± 0.4 mV"),
        (1.23456e9, 3.59e8, "Hz", "1.2 ± 0.4 GHz"),
        (0.2462, 0.0253, "K", "246 ± 25 mK"),
        (-0.00612, 0.00821, "V", "-6 ± 8 mV"),
        (1.6e-6, 2e-8, "s", "1.600 ± 0.020 µs"),
        (0.049, 0.0012, "V/V", "0.0490 ± 0.0012 V/V"),  # compound units take no prefix
        (123456.0, 2345.0, "1/s", "(1.235 ± 0.023)×10⁵ 1/s"),
        (3.2e-5, 1e-6, "K^2/A^2", "(3.20 ± 0.10)×10⁻⁵ K^2/A^2"),
        (0.0017, 0.0007, "nats", "0.0017 ± 0.0007 nats"),
        (0.0313, None, "K", "31.30 mK"),  # no error: four significant digits
        (0.0313, math.nan, "K", "31.30 mK"),
        (2.0, 0.0, "", "2"),  # a design value
        (None, None, "V", "—"),
        ("ok", None, "", "ok"),
    ],
)
def test_value_and_error_to_supported_digits(value, stderr, unit, expected):
    assert format_value(value, stderr, unit) == expected


def test_the_error_never_shows_more_than_two_significant_digits():
    for stderr in (1.234e-7, 9.99e-3, 0.1, 3.549, 355.0, 949.9, 951.0):
        rounded, last = error_digits(stderr)
        digits = round(rounded / 10.0**last)
        assert 1 <= digits <= 99, (stderr, rounded, last)
        assert abs(rounded - stderr) <= 0.5 * 10.0**last + 1e-12 or digits in (10,)


def test_lists_and_matrices_are_summarised_not_dumped():
    assert format_value([[0.1, 0.2], [0.3, 0.4]], None, "V/V") == "2×2 matrix (V/V)"
    assert format_value([True, False, True]) == "2 of 3"
    assert format_value([1, 2]) == "[1, 2]"


def test_a_bad_error_is_refused_where_it_would_mislead():
    with pytest.raises(ValueError):
        error_digits(0.0)
    with pytest.raises(ValueError):
        error_digits(-1.0)
