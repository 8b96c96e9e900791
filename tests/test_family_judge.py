"""The family's per-chip criterion: every accepted value of a chip against one family-wise threshold.

No calibration here: made-up pulls show what the judge passes and what it names.
"""

from __future__ import annotations

import math

from labstack.calibrate import family_n_sigma
from tests import family


def _inspection(chip: str, **pulls: list[float]) -> dict:
    values = {p: pulls.get(p, []) for p in family.PARAMETERS}
    return {"chip": chip, "pulls": values, "stderr": {p: [1.0] * len(v) for p, v in values.items()},
            "scalars": {"t_excess": 0.0, "t_eff_exponent": 0.0}, "kl": 0.001, "broken": [], "flagged": []}


def test_threshold_counts_every_accepted_value_of_the_chip():
    ins = _inspection("a", V0=[0.1] * 16, alpha=[0.2] * 16, coupler_zero=[0.3] * 14 + [-0.5], width=[9.0] * 16)
    (row,) = family.chip_rows([ins])
    assert row.n == 47  # width is shown, not accepted
    assert math.isclose(row.threshold, family_n_sigma(47))
    assert row.ok and row.worst == "coupler_zero #14"


def test_a_value_past_its_parameters_threshold_but_within_the_chips_passes_and_past_both_fails():
    z = 3.6  # beyond family_n_sigma(16) = 3.42, within family_n_sigma(48) = 3.73
    ins = _inspection("a", V0=[0.0] * 15 + [z], alpha=[0.0] * 16, barrier=[0.0] * 16)
    assert not [r for r in family.rows([ins]) if r.parameter == "V0"][0].ok
    assert family.chip_rows([ins])[0].ok
    assert not any("|pull|" in f for f in family.failures([ins]))
    bad = _inspection("b", V0=[0.0] * 15 + [4.2], alpha=[0.0] * 16, barrier=[0.0] * 16)
    (line,) = [f for f in family.failures([bad]) if "|pull|" in f]
    assert line.startswith("b: |pull| 4.20 (V0 #15) > family-wise")


def test_a_live_cell_without_a_value_fails_its_chip():
    ins = _inspection("c", V0=[0.0] * 15 + [math.inf])
    assert not family.chip_rows([ins])[0].ok
