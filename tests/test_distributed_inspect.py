"""A batch's ``inspect`` runs in the worker with the chip's station still open."""

from __future__ import annotations

from labstack.distributed.chips import calibrate_chips, parse_chips
from labstack.distributed.cluster import SERIAL


def _look(chip, station, report):
    """What a benchmark does: read the lab behind the open station, return plain data."""
    state_keys = [k for k in report.graph.context.state.keys() if k.startswith("cells.0.")]
    return {"chip": chip.chip_id, "cells": station.layout.n_cells, "keys": state_keys,
            "readout": station.layout.readout in station.components}


def test_inspect_sees_the_open_station_and_its_answer_travels_back(tmp_path):
    chips = parse_chips(["seed=3,cells=4", "seed=4,cells=4"])
    report = calibrate_chips(chips, tmp_path, scheduler=SERIAL, names=["readout"], inspect=_look)
    assert [r.inspection["chip"] for r in report.results] == ["seed-3", "seed-4"]
    assert all(r.inspection["cells"] == 4 for r in report.results)
    assert all(r.inspection["readout"] for r in report.results)  # instruments still open
    assert all("cells.0.readout_amp_V" in r.inspection["keys"] for r in report.results)


def test_without_inspect_there_is_no_inspection(tmp_path):
    report = calibrate_chips(parse_chips(["seed=3,cells=4"]), tmp_path, scheduler=SERIAL, names=["readout"])
    assert report.results[0].inspection is None and report.results[0].ok
