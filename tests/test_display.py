"""Rich display in notebooks: graph, calibration, node result, run and replay as HTML."""

from __future__ import annotations

from labstack.calibration_run import calibrate_station
from labstack.data import load_run
from labstack.display import graph_svg
from labstack.replay import replay_run
from tests.golden.scripts import CALIBRATION_PARAMS

PNG = "data:image/png;base64,"


def test_graph_svg_places_dependencies_left_and_colours_status():
    svg = graph_svg(["a", "b", "c"], {"a": (), "b": ("a",), "c": ("a", "b")},
                    {"a": "fresh", "b": "stale", "c": "never"})
    assert svg.count("<rect") == 3 and svg.count("<line") == 3
    assert "#cfc" in svg and "#ffd98a" in svg and "#ddd" in svg


def test_calibration_objects_show_as_html_with_plots(virtual_station, tmp_path):
    station, lab = virtual_station(seed=7, cells=4)
    report = calibrate_station(station, data_dir=tmp_path, progress=False, params=CALIBRATION_PARAMS)

    graph = report.graph._repr_html_()
    assert "<svg" in graph and "bias_scurve" in graph and "fresh" in graph

    shown = report._repr_html_()
    assert PNG in shown and "bias_scurve" in shown and report.run_id in shown

    result = report.result("bias_scurve")
    assert len(result.results) == 4 and PNG in result._repr_html_()
    assert "V0 (mV)" in result._repr_html_()

    run_html = load_run(result.run_id, tmp_path)._repr_html_()
    assert PNG in run_html and "samples" in run_html and "seed=7" in run_html
    calibration_html = load_run(report.run_id, tmp_path)._repr_html_()
    assert "cells.3.bias_offset_V" in calibration_html

    from labstack.station import close_station

    close_station(station)
    replay = replay_run(report.run_id, tmp_path)
    assert "replay PASS" in replay._repr_html_()
