"""Every node's result displays, in a report of a whole (small) calibration and in a notebook.

One calibration of every installed node on a 4-cell chip (module fixture, fast
parameters); then: each node contributes figures of its own, every figure has a
title and labelled axes and something drawn, nodes made of several runs display
(their merged acquisition is stored as a run), values carry no more digits than
their errors support, and the report stays a sane size.
"""

from __future__ import annotations

import re

import pytest
from matplotlib.figure import Figure
from qcodes.instrument import Instrument

from labstack.calibrate import CalibrationState
from labstack.data import list_runs, load_run
from labstack.fit.precision import format_value
from labstack.presentation import report_html, to_html
from labstack.presentation.figures import chip_figure, history_figure, node_figures
from labstack.presentation.history import PARAMETERS, StateHistory
from labstack.presentation.results import node_runs, refit
from labstack.session import calibrate_station, routines
from labstack.station.geometry import cell_positions
from labstack.visa import open_station
from tests.conftest import lab_description
from tests.dashboard_helpers import FULL_FAST

MAX_REPORT_BYTES = 3_000_000


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("figures")
    station = open_station("virtual", lab=lab_description(seed=7, cells=4, instance="figures"))
    report = calibrate_station(station, data_dir=data_dir, params=FULL_FAST, progress=False)
    yield data_dir, report
    station.close()
    Instrument.close_all()


def labelled_problems(fig: Figure) -> list[str]:
    """What a reader would miss: a title, axis labels, anything drawn (empty list: none)."""
    problems = []
    sup = fig._suptitle.get_text() if fig._suptitle is not None else ""
    for k, ax in enumerate(fig.axes):
        if not ax.get_visible():
            continue
        if ax.get_label() == "<colorbar>":
            if not (ax.get_ylabel() or ax.get_xlabel()):
                problems.append(f"colour bar {k} unlabelled")
            continue
        if not (ax.get_title() or ax.get_title(loc="left") or ax.get_title(loc="right") or sup):
            problems.append(f"axes {k} has no title")
        if not ax.get_xlabel() and not _shares_labelled_x(fig, ax):
            problems.append(f"axes {k} has no x label")
        if not ax.get_ylabel():
            problems.append(f"axes {k} has no y label")
        drawn = len(ax.lines) + len(ax.collections) + len(ax.images) + len(ax.patches) + len(ax.texts)
        if drawn == 0:
            problems.append(f"axes {k} is empty")
    return problems


def _shares_labelled_x(fig: Figure, ax) -> bool:
    """A data panel above its residual panel: the residuals' x label serves both."""
    return any(other is not ax and other.get_visible() and other.get_xlabel()
               and ax in other.get_shared_x_axes().get_siblings(other) for other in fig.axes)


def test_every_node_draws_labelled_figures_of_its_stored_result(calibrated):
    data_dir, report = calibrated
    runs = [load_run(r, data_dir) for r in _session_runs(data_dir, report.run_id)]
    chosen = node_runs(runs)
    assert set(chosen) == set(routines()), set(routines()) - set(chosen)
    for name, run in chosen.items():
        data = refit(run)
        assert data.ok, data.error
        figures = node_figures(name, data.results, data.dataset)
        assert figures, f"{name} drew no figure"
        for fig in figures:
            title = fig._suptitle.get_text() if fig._suptitle is not None else fig.axes[0].get_title()
            assert name in title, (name, title)  # titled by node
            assert labelled_problems(fig) == [], (name, title, labelled_problems(fig))


def _session_runs(data_dir, run_id) -> list[str]:
    from labstack.session.record import session_of

    return session_of(load_run(run_id, data_dir))["runs"]


def test_nodes_made_of_several_runs_store_their_merged_acquisition(calibrated):
    data_dir, _ = calibrated
    state = CalibrationState.load(data_dir / "calibration_state")
    for name in ("effective_temperature", "thermalization"):
        key = "cells.0.tau_c_s" if name == "thermalization" else "noise.t_excess_K"
        run_id = state.get(key).run_id
        assert "+" not in run_id
        run = load_run(run_id, data_dir)  # the value's run id names a stored dataset
        parts = run.metadata["derived_from"]
        assert len(parts) >= 2 and all(load_run(p, data_dir).metadata["calibration"] == name for p in parts)
        assert run.metadata["mode"] == "calibrate"
        # the node record names the node's last acquisition: the calibration itself, or,
        # for a member the bias_loop carries (effective_temperature), the check of a later
        # pass that found it in spec -- itself a merged, stored run of the same node
        last = load_run(state.node_record(name).run_id, data_dir)
        assert "+" not in last.id and last.metadata["calibration"] == name
        assert last.id == run_id or last.metadata["mode"] == "check"
        # re-fitted from disk, it gives the values in the state
        data = refit(run)
        if name == "effective_temperature":
            assert data.results.alpha["t_excess_K"] == pytest.approx(state.value("noise.t_excess_K"), rel=1e-9)
        else:
            assert data.results.cells[0].fit["tau_c_s"] == pytest.approx(state.value("cells.0.tau_c_s"), rel=1e-9)


def test_the_report_of_a_full_calibration_shows_every_node(calibrated):
    data_dir, report = calibrated
    text = report_html(load_run(report.run_id, data_dir), data_dir)
    assert "no stored result" not in text and "cannot re-fit" not in text
    for name in routines():
        section = text.split(f"<h2>{name} ")[1].split("<h2>")[0]
        assert "data:image/png;base64," in section, f"{name} shows no figure in the report"
    assert len(text.encode()) < MAX_REPORT_BYTES, len(text.encode())
    assert "samples, mean over sample" not in text  # no raw auto-plots of calibration data
    assert "http://" not in text and "https://" not in text  # stands alone
    # no value printed to more digits than its error supports (17-digit floats were the symptom)
    assert not re.search(r"\d\.\d{9,}", re.sub(r"base64,[^\"]*", "", text))
    state = CalibrationState.load(data_dir / "calibration_state")
    v0 = state.get("cells.2.bias_offset_V")
    assert format_value(v0.value, v0.stderr, v0.unit) in text


def test_the_notebook_shows_every_calibrated_node(calibrated):
    _, report = calibrated
    shown = to_html(report)
    assert "no stored result" not in shown and "cannot be shown" not in shown
    for name in report.calibrated:
        assert f"<h4>{name}" in shown


def test_chip_and_history_figures_are_labelled(calibrated):
    data_dir, _ = calibrated
    history = StateHistory(data_dir / "calibration_state")
    for name in PARAMETERS:
        series = history.series(name)
        assert series["cells"], name
        assert labelled_problems(history_figure(series)) == [], name
    pairs = [(0, 1), (1, 2), (2, 3)]
    health = chip_figure(cell_positions(4, pairs), pairs, title="chip", health=["ok", "dead", "ok", "flagged"])
    values = chip_figure(cell_positions(4, pairs), pairs, title="chip", values=[0.1, None, 0.2, 0.3],
                         errors=[0.01, None, 0.02, 0.03], label="V0", unit="V")
    assert labelled_problems(health) == [] and labelled_problems(values) == []
    # the checker itself catches what it is for
    bare = Figure()
    bare.add_subplot().plot([1, 2])
    assert set(labelled_problems(bare)) == {"axes 0 has no title", "axes 0 has no x label", "axes 0 has no y label"}
    assert list_runs(data_dir, name="calibration")


def test_plain_runs_get_labelled_variable_plots_and_nothing_empty():
    from pathlib import Path

    import numpy as np
    import xarray as xr

    from labstack.presentation.figures import variable_figure

    golden = Path(__file__).parent / "golden" / "runs"
    (sweep,) = [r for r in list_runs(golden) if r.name == "golden_sweep"]
    ds = sweep.dataset()
    figures = [variable_figure(ds[name]) for name in ds.data_vars if not str(name).endswith("_clock")]
    assert figures and all(f is not None for f in figures)
    for fig in figures:
        assert labelled_problems(fig) == [], labelled_problems(fig)
    nothing = xr.DataArray(np.full((3, 2), np.nan), dims=("v", "cell"), name="unmeasured")
    assert variable_figure(nothing) is None  # no empty plot
