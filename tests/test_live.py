"""Live plotting: the runner's subscriber hook and a LivePlot that works headless."""

from __future__ import annotations

import numpy as np
import pytest

from labstack.measure import Read, Sweep, run_sequence
from labstack.measure.live import LivePlot


def sweep() -> Sweep:
    return Sweep.over("v", "qdac1.ch01.dc_constant_V", np.linspace(-0.2, 0.2, 6),
                      Read("ls372.ch06.temperature", name="t_mc"), settle=0.5)


def test_liveplot_redraws_during_the_run_and_ends_with_all_data(virtual_station, tmp_path):
    station, _ = virtual_station(seed=3, cells=4)
    events = []
    plot = LivePlot("t_mc")
    run = run_sequence(sweep(), station, name="live", data_dir=tmp_path, progress=False,
                       flush_every=1, flush_interval=0.0, subscribers=[plot, events.append])
    assert len(events) >= 2 and events[-1].final and events[-1].status == "completed"
    assert [e.points_done for e in events] == sorted(e.points_done for e in events)
    assert any(not e.final and 0 < e.points_done < 6 for e in events)  # saw it mid-way
    assert plot.frames == len(events)
    line = plot.ax.get_lines()[0]
    np.testing.assert_array_equal(line.get_ydata(), run.dataset()["t_mc"].values)
    assert "6/6 points (done)" in plot.ax.get_title()


def test_a_broken_subscriber_is_dropped_with_a_warning_and_the_run_completes(virtual_station, tmp_path):
    station, _ = virtual_station(seed=3, cells=4)
    calls = []

    def broken(event):
        calls.append(event)
        raise RuntimeError("plot window closed")

    with pytest.warns(RuntimeWarning, match="plot window closed"):
        run = run_sequence(sweep(), station, name="live", data_dir=tmp_path, progress=False,
                           flush_interval=0.0, subscribers=[broken])
    assert run.status == "completed" and len(calls) == 1
    assert np.isfinite(run.dataset()["t_mc"].values).all()
