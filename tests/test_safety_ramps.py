"""Nothing outside the station file's limits, steps and rates reaches the chip, whatever the path.

Checked at the virtual lab (what the DACs actually applied, with lab times), not
against labstack's own bookkeeping.
"""

from __future__ import annotations

import numpy as np
import pytest
from qcodes.parameters import DelegateParameter
from safety_helpers import ChipRecorder, assert_within, write_station

from labstack.calibrate import Context, Mode
from labstack.measure import Read, Set, Sweep, run_sequence, step_from_json
from labstack.safety import SafetyError

LIMITS, STEP, RATE = (-1.2, 1.2), 0.05, 1.0


@pytest.fixture
def safe_station(virtual_station, tmp_path):
    station, lab = virtual_station(str(write_station(tmp_path)), seed=7, cells=4)
    return station, lab, ChipRecorder(lab)


def test_every_path_is_ramped_within_limits(safe_station, tmp_path):
    station, lab, rec = safe_station
    ch1 = station.parameter("qdac1.ch01.dc_constant_V")
    ch1(0.5)  # plain call
    ch1.set(-0.3)  # set
    DelegateParameter("virtual_bias", source=ch1)(0.2)  # delegate
    seq = Sweep("bias", {"qdac1.ch01.dc_constant_V": np.linspace(-1.0, 1.0, 5)}, body=[Read("ls372.ch06.temperature")])
    run_sequence(seq + Set("qdac1.ch01.dc_constant_V", 0.0), station, name="sweep", data_dir=tmp_path, progress=False)
    run_sequence(step_from_json(seq.to_json()), station, name="replay", data_dir=tmp_path, progress=False)
    n = assert_within(rec, 1, 1, 0.0, LIMITS, STEP, RATE)
    assert n > 60  # 0 -> 0.5 alone takes 10 steps
    t, v = rec.channel(1, 1)
    assert {-1.0, -0.5, 0.5, 1.0, 0.2, -0.3} <= set(np.round(v, 12))


def test_calibration_path_is_ramped(safe_station, tmp_path):
    from labstack.calibrations import bias_scurve

    station, lab, rec = safe_station
    params = bias_scurve.Parameters(n_points=5, n_samples=50, check_points=3, check_samples=20)
    bias_scurve.acquire(Context.create(tmp_path, station), params, Mode.CALIBRATE)
    for ch in range(1, 5):
        assert assert_within(rec, 1, ch, 0.0, LIMITS, STEP, RATE) >= 20 + 40  # -1 V then 0.5 V apart


def test_ramp_starts_from_the_instrument_not_a_stale_cache(safe_station):
    station, lab, rec = safe_station
    ch2 = station.parameter("qdac1.ch02.dc_constant_V")
    ch2(0.1)
    # someone turns the knob behind QCoDeS's back (front panel, another program)
    lab_device = station.components["qdac1"].visa_handle.visalib.instruments.get("qdac1")
    lab_device.handle("sour2:volt 0.3")
    assert ch2.cache.get(get_if_invalid=False) == pytest.approx(0.1)
    rec.writes.clear()
    ch2(0.0)
    t, v = rec.channel(1, 2)
    assert v[0] == pytest.approx(0.25) and len(v) == 6  # from 0.3, not from the cached 0.1


@pytest.mark.parametrize(
    "raw",
    ["sour1:volt 0.5", "SOURce1:VOLTage 0.04;sour1:volt 0.08", "sour1:volt:mode list", "sour1:list:volt 0.1,0.2",
     "sour1:volt:trig 0.4", "sour:volt 0.1,(@1)", "sour1:volt nan", "sour1:volt 9", "sour1:swe:star 1"],
)
def test_raw_scpi_that_breaks_a_rule_is_refused_before_sending(safe_station, raw):
    station, lab, rec = safe_station
    qdac = station.components["qdac1"]
    device = qdac.visa_handle.visalib.instruments.get("qdac1")
    device.log = []
    with pytest.raises(SafetyError, match="qdac1"):
        qdac.write(raw)
    assert [c for c in device.log if not c.endswith("?")] == [] and rec.writes == []


def test_raw_paths_within_the_rules_pass_and_driver_binary_lists_are_refused(safe_station):
    station, lab, rec = safe_station
    qdac = station.components["qdac1"]
    qdac.write("sour1:volt 0.05")  # one allowed step
    with pytest.raises(SafetyError, match="rate"):
        qdac.write("sour1:volt 0.1")  # too soon after the last step
    station.clock.sleep(0.05)
    qdac.write("sour1:volt 0.1")
    qdac.write("sour9:volt 3")  # an unguarded channel is the driver's business
    with pytest.raises(SafetyError):
        qdac.ch01.write_channel_floats("sour{0}:list:volt ", [0.1, 0.2])  # IEEE binary block
    with pytest.raises(SafetyError, match="RST"):
        qdac.write("*RST")  # ch01 would jump from 0.1 V to 0 V
    with pytest.raises(SafetyError):
        qdac.ch01.dc_constant_V.set_raw(1.0)
    assert [v for _, d, c, v in rec.writes if (d, c) == (1, 1)] == [0.05, 0.1]


def test_heater_interlocks_refuse_range_and_setpoint_on_every_path(safe_station, tmp_path):
    station, lab, rec = safe_station
    heater = station.components["ls372"].sample_heater
    device = station.components["ls372"].visa_handle.visalib.instruments.get("ls372")
    heater.output_range("100μA")  # 1.2 uW full scale: allowed
    for bad in ("1mA", "100mA"):  # 120 uW, 1.2 W: above heater_max_power_W
        with pytest.raises(ValueError):
            heater.output_range(bad)
    with pytest.raises(SafetyError, match="interlock"):
        station.components["ls372"].write("RANGE 0,8")
    with pytest.raises(ValueError):
        heater.setpoint(0.8)
    with pytest.raises(SafetyError, match="max_temperature_K"):
        station.components["ls372"].write("SETP 0,0.8")
    assert device.outputs[0].range == 2 and device.outputs[0].setpoint == 0.0
    # a plan that would break them is refused in its dry run, before any point
    from labstack.measure import SequenceError

    plan = Sweep("t", {"ls372.sample_heater.setpoint": [0.1, 0.6]}, body=[Read("ls372.ch06.temperature")])
    with pytest.raises(SequenceError, match="setpoint"):
        run_sequence(plan, station, name="too_hot", data_dir=tmp_path, progress=False)
    assert not (tmp_path / "too_hot").exists() and device.outputs[0].setpoint == 0.0


def test_a_ready_ramp_asks_the_clock_once_and_an_early_one_still_waits(safe_station):
    """The ramp asks the lab's clock only when the channel's next step might not be allowed
    yet (``clock.reached``, a time certainly passed, says when it is); the guard still
    stamps every write with a fresh reading, and the rate holds at the lab."""
    station, lab, rec = safe_station
    clock = station.clock
    ch1 = station.parameter("qdac1.ch01.dc_constant_V")
    ch1(0.05)
    asked = []
    original = clock.ask

    def counting(cmd: str) -> str:
        asked.append(cmd)
        return original(cmd)

    clock.ask = counting
    try:
        clock.sleep(1.0)
        assert -1e9 < clock.reached <= lab.clock.now()
        asked.clear()
        ch1(0.1)  # one step, long allowed: only the guard's stamp
        assert asked.count("CLOC:TIME?") == 1
        asked.clear()
        ch1(0.15)  # at once: the last step allows the next 0.05 s later, so the ramp asks and waits
        assert asked.count("CLOC:TIME?") == 2 and any(a.startswith("CLOC:ADV") for a in asked)
    finally:
        clock.ask = original
    assert_within(rec, 1, 1, 0.0, LIMITS, STEP, RATE)
    # another client moving the lab's clock leaves ``reached`` a lower bound, never ahead
    lab.clock.sleep(5.0)
    assert clock.reached < lab.clock.now()
    assert clock.now() == lab.clock.now() == clock.reached


def test_a_row_of_lines_ramps_side_by_side_within_every_rule(safe_station, tmp_path):
    """A sweep row moving four lines by 2 V costs one line's ramp (2 s at 1 V/s), not four,
    and each line still keeps its limits, steps and rate; a row with one value out of
    limits moves no line at all."""
    station, lab, rec = safe_station
    lines = [f"qdac1.ch0{c}.dc_constant_V" for c in range(1, 5)]
    seq = Sweep("row", {name: np.array([-1.0, 1.0]) for name in lines})
    start = station.clock.now()
    run_sequence(seq, station, name="rows", data_dir=tmp_path, progress=False)
    took = station.clock.now() - start
    one_line = (1.0 - STEP) / RATE + 2.0 / RATE  # 0 -> -1 V (its first step at once), then 2 V
    assert one_line - 1e-9 <= took < one_line + STEP / RATE, (took, one_line)  # one after another: 4x
    for ch in range(1, 5):
        assert assert_within(rec, 1, ch, 0.0, LIMITS, STEP, RATE) == 20 + 40
    rec.writes.clear()
    with pytest.raises(ValueError, match="1.5"):
        run_sequence(Sweep("row", {lines[0]: np.array([0.5]), lines[1]: np.array([1.5])}), station,
                     name="refused", data_dir=tmp_path, progress=False)
    assert not rec.writes


def test_a_row_reads_each_line_once_and_the_next_row_reads_again(safe_station, tmp_path):
    """Moving four lines by 2 V (40 steps each) reads each line back once, before its first
    step, not before every step; a knob turned between two rows is seen by the next."""
    from labstack.safety.ramp import set_together

    station, lab, rec = safe_station
    device = station.components["qdac1"].visa_handle.visalib.instruments.get("qdac1")
    queries: list[str] = []
    original = device.handle

    def counting(message: str, *args, **kwargs):
        if "volt?" in message.lower():
            queries.append(message)
        return original(message, *args, **kwargs)

    device.handle = counting
    lines = [station.parameter(f"qdac1.ch0{c}.dc_constant_V") for c in range(1, 5)]
    set_together(lines, [-1.0] * 4)
    set_together(lines, [1.0] * 4)
    assert len(queries) == 8, queries  # two moves of four lines, each line read once a move
    for ch in range(1, 5):
        assert assert_within(rec, 1, ch, 0.0, LIMITS, STEP, RATE) == 20 + 40
    original("sour2:volt 0.8")  # someone turns line 2's knob between rows
    rec.writes.clear()
    set_together(lines, [0.0] * 4)
    t, v = rec.channel(1, 2)
    assert v[0] == pytest.approx(0.75) and len(v) == 16  # from 0.8, not from the 1.0 it wrote
