"""A day of hourly maintenance on a drifting chip, with an offset jump injected at a chosen time.

The week-long version, with the chip's own random jumps and the fridge time per
day, is ``bench/bench_maintain_week.py``. Here one 16-cell chip (realistic: offsets
random-walk, gains wander) gets the S-curve node and its dependencies calibrated,
then ``calibrate_station`` (Optimus maintain) every 6 lab hours for a day, with the
S-curve's timeout below the interval so that its cheap check runs on every pass.

Judged against the truth after every pass: every live cell's offset within the
node's tolerance (10 mV: P(+1) at a cell's centre moved by < 5 %); the injected
jump (30 mV, three tolerances) found by the first pass after it, that cell alone
re-measured in the same pass and its offset right again; no cell re-measured that
did not jump.
"""

from __future__ import annotations

import numpy as np
import pytest
from qcodes.instrument import Instrument

from labstack.calibrate import STATE_DIRNAME, CalibrationState
from labstack.session import calibrate_station
from labstack.visa import open_station
from tests.acquisition_truth import recalibrated_cells, swept_offsets_now
from tests.conftest import lab_description, lab_of

BIAS = "bias_scurve"
HOUR = 3600.0
EVERY = 6 * HOUR  # the bench maintains hourly for a week; a day here at a pass every 6 h
TIMEOUTS = {BIAS: 0.5 * EVERY}  # older than that at a pass: checked on every pass
JUMP_CELL, JUMP_V, JUMP_AFTER_H = 5, 0.030, 5.5
#: the cold calibration with half the samples per point (the checks keep theirs)
COLD = {BIAS: {"n_samples": 1500}}


def test_timeouts_override_a_routines_and_bad_ones_are_refused(virtual_station, tmp_path):
    """First in the module: the day's chip holds the instrument names while it lives."""
    from labstack.calibrate import Context
    from labstack.session.run import UnknownRoutineError, build_graph

    station, _ = virtual_station(seed=3, cells=16)
    ctx = Context.create(tmp_path, station, progress=False)
    graph = build_graph(ctx, [BIAS], timeouts={BIAS: 2700})
    assert graph[BIAS].timeout_s == 2700.0
    assert graph["readout"].timeout_s == 24 * HOUR  # the others keep their own
    with pytest.raises(UnknownRoutineError, match=r"timeouts given for routine\(s\) \['couplers'\]"):
        build_graph(ctx, [BIAS], timeouts={"couplers": 60})
    for bad in (0, -5, float("nan")):
        with pytest.raises(ValueError, match="timeout for bias_scurve"):
            build_graph(ctx, [BIAS], timeouts={BIAS: bad})


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    """(lab, passes): a day of passes every EVERY, each (lab hour, recalibrated cells, held offsets, truth)."""
    description = lab_description(seed=23, cells=16, crosstalk=0.04)
    station = open_station("virtual", lab=description)
    lab = lab_of(description)
    data = tmp_path_factory.mktemp("maintain")
    clock = station.clock
    calibrate_station(station, data_dir=data, names=[BIAS], timeouts=TIMEOUTS, progress=False, params=COLD)
    start = (np.floor(clock.now() / HOUR) + 1) * HOUR
    lab.drift.schedule_jump(JUMP_CELL, JUMP_V, at=start + JUMP_AFTER_H * HOUR)
    passes = []
    for k in range(int(24 * HOUR / EVERY)):
        clock.sleep(max(0.0, start + k * EVERY - clock.now()))
        hour = clock.now() / HOUR
        truth_before = swept_offsets_now(lab)
        report = calibrate_station(station, data_dir=data, names=[BIAS], timeouts=TIMEOUTS, progress=False)
        state = CalibrationState.load(data / STATE_DIRNAME)
        held = np.array([state.value(f"cells.{i}.bias_offset_V") for i in range(16)])
        cells = recalibrated_cells(report.calibrated, state).get(BIAS, [])
        passes.append((hour, cells, held, swept_offsets_now(lab), truth_before))
    yield lab, passes
    station.close()
    Instrument.close_all()


def test_every_live_cell_within_tolerance_after_every_pass(day):
    lab, passes = day
    live = ~lab.truth.cells.dead
    for hour, _, held, truth, _ in passes:
        error = np.abs(held - truth)[live]
        assert error.max() < 0.010, f"pass at {hour:.2f} h: cells {np.flatnonzero(live)[error >= 0.010]} off by > 10 mV"


def test_the_jump_is_found_at_the_first_pass_after_it_and_that_cell_alone_remeasured(day):
    lab, passes = day
    jump = next(j for j in lab.drift.jumps if j.scheduled)
    first = next(k for k, p in enumerate(passes) if p[0] * HOUR >= jump.time)
    hour, cells, held, truth, truth_before = passes[first]
    # the jump was real at that pass: before it, the held offset was off by over two tolerances
    before = passes[first - 1][2]
    assert abs(before[JUMP_CELL] - truth_before[JUMP_CELL]) > 0.020
    assert cells is not None and JUMP_CELL in cells, (hour, cells)
    assert abs(held[JUMP_CELL] - truth[JUMP_CELL]) < 0.005  # repaired in the same pass
    random_jumps = {j.cell for j in lab.drift.jumps if not j.scheduled and j.time <= hour * HOUR}
    assert set(cells) <= {JUMP_CELL} | random_jumps, cells


def test_only_cells_that_moved_are_remeasured(day):
    """A cell is re-measured only when the offset it held was truly off (by more than 3 mV,
    two of the check's standard errors): after a jump, or a drift that the guard band sends
    back before it crosses the 10 mV tolerance; the others are left alone."""
    lab, passes = day
    redone = []
    for k, (hour, cells, _, _, truth_before) in enumerate(passes):
        assert cells is not None, hour  # never the whole node
        if k and cells:
            held_before = passes[k - 1][2]
            off = {c: round(abs(held_before[c] - truth_before[c]) * 1e3, 1) for c in cells}
            redone.append((hour, off))
            assert all(v > 3.0 for v in off.values()), redone
    assert redone, "the injected jump, at least, is re-measured"
