"""Rich display in notebooks: graph, calibration, node result, run and replay as HTML."""

from __future__ import annotations

from labstack.data import load_run
from labstack.presentation import to_html
from labstack.presentation.display import graph_svg
from labstack.session import calibrate_station
from labstack.session.replay import replay_run
from tests.golden.scripts import CALIBRATION_PARAMS

PNG = "data:image/png;base64,"


def test_graph_svg_places_dependencies_left_and_colours_status():
    svg = graph_svg(["a", "b", "c"], {"a": (), "b": ("a",), "c": ("a", "b")},
                    {"a": "fresh", "b": "stale", "c": "never"})
    assert svg.count("<rect") == 3 and svg.count("<line") == 3
    assert "#cfc" in svg and "#ffd98a" in svg and "#ddd" in svg


def test_calibration_objects_show_as_html_with_plots(virtual_station, tmp_path):
    station, lab = virtual_station(seed=7, cells=4)
    # the S-curves and what they need: what is shown below (every node's figures: test_figures.py)
    report = calibrate_station(station, data_dir=tmp_path, progress=False, params=CALIBRATION_PARAMS,
                               names=["bias_scurve"])

    graph = to_html(report.graph)
    assert "<svg" in graph and "bias_scurve" in graph and "fresh" in graph

    shown = to_html(report)
    assert PNG in shown and "bias_scurve" in shown and report.run_id in shown

    result = report.result("bias_scurve")
    assert len(result.results) == 4 and PNG in to_html(result)
    assert "V0 (mV)" in to_html(result)

    run_html = to_html(load_run(result.run_id, tmp_path))
    assert PNG in run_html and "samples" in run_html and "seed=7" in run_html
    calibration_html = to_html(load_run(report.run_id, tmp_path))
    # values pivoted per cell, to the digits their errors support
    assert "bias_offset_V" in calibration_html and "<th>cell 3</th>" in calibration_html
    assert "no stored result" not in to_html(report)



    station.close()
    replay = replay_run(report.run_id, tmp_path)
    assert "replay PASS" in to_html(replay)


def test_notebook_formatters_are_registered_from_presentation(tmp_path):
    """The engine knows no HTML: IPython shows its objects once presentation registers them."""
    from IPython.core.interactiveshell import InteractiveShell

    from labstack.calibrate import CalibrationState, StateChange
    from labstack.clock import VirtualClock
    from labstack.presentation import load_ipython_extension

    state = CalibrationState.load(tmp_path / "state")
    state.apply(StateChange().set("cells.0.bias_offset_V", 0.01, 0.001, "V"), clock=VirtualClock())
    shell = InteractiveShell.instance()
    before, _ = shell.display_formatter.format(state)
    assert "text/html" not in before
    load_ipython_extension(shell)
    after, _ = shell.display_formatter.format(state)
    assert "cells.0.bias_offset_V" in after["text/html"] and "<table" in after["text/html"]
