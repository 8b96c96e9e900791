"""Reports and the dashboard past a few hundred cells: summaries, histograms and maps, no per-cell walls.

No calibration: a state of a 1 024-cell chip is written directly (values, errors,
health, a few flagged cells), then each view is checked for what a reader of a big
chip gets, and a 16-cell chip for what it keeps (a row per cell, labelled cells).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from labstack.calibrate import CalibrationState, StateChange
from labstack.clock import VirtualClock
from labstack.presentation.dashboard.views import cells_view
from labstack.presentation.figures import (
    LABELLED_CELLS,
    chip_figure,
    group_histograms,
    history_figure,
)
from labstack.presentation.tables import MAX_ROWS, entries_html, summary_rows
from labstack.station.geometry import cell_positions
from tests.test_figures import labelled_problems

FLAGGED = (3, 500, 1000)


def _entries(n: int) -> dict[str, dict]:
    rng = np.random.default_rng(1)
    out = {}
    for i in range(n):
        out[f"cells.{i}.bias_offset_V"] = {"value": float(rng.normal(0, 0.1)), "stderr": 0.001, "unit": "V",
                                           "valid": i not in FLAGGED, "node": "bias_scurve"}
        out[f"cells.{i}.scurve_width_V"] = {"value": float(rng.normal(0.045, 0.005)), "stderr": 0.0005,
                                            "unit": "V", "valid": True, "node": "bias_scurve"}
        out[f"cells.{i}.health"] = {"value": "dead" if i in FLAGGED else "ok", "valid": True, "node": "readout"}
    return out


def test_a_big_chips_values_are_summarised_per_quantity_and_a_small_chip_keeps_its_rows():
    big = entries_html(_entries(1024))
    assert "<th>cell 0</th>" not in big and "summarised per quantity" in big
    rows = {r["quantity"]: r for r in summary_rows({i: {"V0": e} for i, e in enumerate(
        v for k, v in _entries(1024).items() if k.endswith("bias_offset_V"))})}
    assert rows["V0"]["values"] == 1024 and rows["V0"]["flagged"] == len(FLAGGED)
    lo, hi = (float(x.split()[0]) * {"mV": 1e-3, "V": 1.0}[x.split()[1]] for x in rows["V0"]["spread"].split(" … "))
    assert -0.2 < lo < -0.12 and 0.12 < hi < 0.2  # the 5-95 % of N(0, 0.1 V): +-0.16 V
    health = summary_rows({i: {"health": e} for i, e in enumerate(
        v for k, v in _entries(1024).items() if k.endswith("health"))})[0]
    assert health["spread"] == f"ok {1024 - len(FLAGGED)}, dead {len(FLAGGED)}"
    small = entries_html(_entries(16))
    assert small.count("<th>cell ") == 16 and "summarised" not in small
    assert len(big) < 5_000


def test_a_big_group_gets_one_labelled_histogram_per_numeric_quantity():
    figs = group_histograms(_entries(1024), node="bias_scurve")
    assert len(figs) == 2  # offset and width; health is words
    for fig in figs:
        assert not labelled_problems(fig)
        assert sum(p.get_height() for p in fig.axes[0].patches) == pytest.approx(
            1024 - len(FLAGGED) if "offset" in fig.axes[0].get_title() else 1024)
    assert group_histograms(_entries(16)) == []


def test_a_big_chip_map_is_drawn_without_per_cell_labels():
    n = 1024
    side = 32
    pairs = [(i, i + 1) for i in range(n) if (i + 1) % side] + [(i, i + side) for i in range(n - side)]
    positions = cell_positions(n, pairs)
    fig = chip_figure(positions, pairs, title="chip: V0", values=list(np.linspace(-0.1, 0.1, n)), label="V0",
                      unit="V")
    fig.canvas.draw()
    assert not labelled_problems(fig)
    assert len(fig.axes[0].texts) == 0  # 1 024 overlapping index labels before (and 4 s to draw)
    small = chip_figure(cell_positions(16, [(i, i + 1) for i in range(15)]), [(i, i + 1) for i in range(15)],
                        title="chip: health", health=["ok"] * 16)
    assert len(small.axes[0].texts) == 16 <= LABELLED_CELLS


def _series(n_cells: int) -> dict:
    rng = np.random.default_rng(2)
    utcs = ["2026-12-01T00:00:00+00:00", "2026-12-01T01:00:00+00:00", "2026-12-01T02:00:00+00:00"]
    cells = {str(i): [{"utc": u, "value": float(rng.normal(0.1, 0.01)), "stderr": 0.001, "valid": True}
                      for u in utcs] for i in range(n_cells)}
    return {"cells": cells, "events": [{"utc": utcs[1], "failed": False}], "unit": "V", "label": "V0",
            "description": "bias offset per cell"}


def test_a_big_chips_history_is_its_median_and_band_a_small_chips_a_line_per_cell():
    big = history_figure(_series(300))
    ax = big.axes[0]
    assert [line.get_gid() for line in ax.lines if line.get_gid()] == ["history-median"]
    median = next(line for line in ax.lines if line.get_gid() == "history-median")
    assert len(median.get_xdata()) == 3 and np.allclose(median.get_ydata(), 100, atol=3)  # mV
    assert not labelled_problems(big)
    small = history_figure(_series(4))
    gids = [c.get_gid() for c in small.axes[0].lines if c.get_gid()]
    assert sorted(gids) == [f"history-cell-{i}" for i in range(4)]


def test_the_dashboard_lists_only_the_cells_that_need_a_look_on_a_big_chip(tmp_path):
    state = CalibrationState.load(tmp_path / "state")
    change = StateChange()
    for key, e in _entries(MAX_ROWS + 44).items():
        if not e["valid"]:
            change.flag(key, "fit failed", e.get("unit", ""))
        else:
            change.set(key, e["value"], e.get("stderr"), e.get("unit", ""))
    state.apply(change, clock=VirtualClock(), node="bias_scurve")
    view = cells_view(state)
    assert [r["cell"] for r in view["rows"]] == [3]  # cells 500 and 1000 are beyond this chip
    assert view["n_cells"] == MAX_ROWS + 44 and re.search(r"listing the 1 of 1", view["note"])
    small = CalibrationState.load(tmp_path / "small")
    change = StateChange()
    for key, e in _entries(16).items():
        change.set(key, e["value"], e.get("stderr"), e.get("unit", ""))
    small.apply(change, clock=VirtualClock(), node="bias_scurve")
    assert len(cells_view(small)["rows"]) == 16 and cells_view(small)["note"] == ""
