"""The on-chip DAC array: its twin's SCPI, the driver's block round trip, the element-wise guard,
the ``virtual_array`` station (any chip size, bad wiring refused) and a routine run through it."""

from __future__ import annotations

import numpy as np
import pytest
import pyvisa

from labstack.calibrate import CalibrationState
from labstack.safety import SafetyError
from labstack.session import calibrate_station
from labstack.sim.instruments.array_dac import VirtualArrayDac
from labstack.sim.instruments.scpi import binary_block
from labstack.station import StationConfigError, station_path
from labstack.visa import open_station
from tests.acquisition_truth import idle_coupling, runs_of, scurve_truth, within
from tests.conftest import lab_description, lab_of


def _twin(n_bias: int = 4, n_couplers: int = 3) -> tuple[VirtualArrayDac, list[tuple[int, float]]]:
    moves: list[tuple[int, float]] = []
    twin = VirtualArrayDac(lambda i, v, _slew, _filt: moves.append((i, v)), n_bias, n_couplers)
    moves.clear()  # power-on zeros
    return twin, moves


def _block(values) -> bytes:
    return b"SOUR:VOLT:ARR " + binary_block(np.asarray(values, dtype="<f4").tobytes()) + b"\n"


def _ask(twin: VirtualArrayDac, command: str) -> str:
    answer = twin.handle(command)
    assert answer is not None, command
    return answer.decode().strip()


# ------------------------------------------------------------------------ twin
def test_twin_answers_size_elements_and_blocks():
    twin, moves = _twin()
    assert _ask(twin, "*IDN?").startswith("labstack,VARRAYDAC-1")
    assert (_ask(twin, "ARR:SIZE?"), _ask(twin, "ARRay:SIZE:BIAS?"), _ask(twin, "ARR:SIZE:COUP?")) == ("7", "4", "3")
    twin.handle("SOURce:VOLTage:ELEMent 5,-0.25")
    assert float(_ask(twin, "SOUR:VOLT:ELEM? 5")) == -0.25
    assert moves == [(5, -0.25)]
    values = np.array([0.1, -0.2, 0.3, 0.0, 1.5, -0.25, -1.0], dtype="<f4")
    moves.clear()
    assert twin.handle_binary(_block(values)) is None
    assert _ask(twin, "SYST:ERR?") == '0,"No error"'
    assert sorted(i for i, _ in moves) == [0, 1, 2, 4, 6]  # 3 and 5 already there: not commanded
    reply = twin.handle("SOUR:VOLT:ARR?")
    assert reply == binary_block(values.tobytes()) + b"\n"


def test_twin_refuses_a_block_of_the_wrong_length_and_nothing_moves():
    twin, moves = _twin()
    twin.handle_binary(_block(np.full(5, 0.1)))
    error = _ask(twin, "SYST:ERR?")
    assert error.startswith("-161") and "5 elements" in error and "has 7" in error, error
    assert moves == [] and np.all(twin.volts == 0.0)


def test_twin_refuses_out_of_range_elements_bad_indices_and_text_arrays():
    twin, moves = _twin()
    values = np.zeros(7)
    values[2], values[6] = 0.5, 2.5
    twin.handle_binary(_block(values))
    error = _ask(twin, "SYST:ERR?")
    assert error.startswith("-222") and "element 6" in error, error
    twin.handle("SOUR:VOLT:ELEM 7,0.1")
    assert "no element 7" in _ask(twin, "SYST:ERR?")
    twin.handle("SOUR:VOLT:ELEM 1,-2.01")
    assert _ask(twin, "SYST:ERR?").startswith("-222")
    twin.handle("SOUR:VOLT:ARR 0.1,0.2")
    assert _ask(twin, "SYST:ERR?").startswith("-161")
    twin.handle_binary(b"SOUR:VOLT:ARR #240" + b"\x00" * 8 + b"\n")  # announces 40, sends 8
    assert "announces 40" in _ask(twin, "SYST:ERR?")
    assert moves == [] and np.all(twin.volts == 0.0)


# -------------------------------------------------------------- the station
@pytest.fixture
def array_station():
    """The shipped ``virtual_array`` station on a lab of its own: (station, lab, twin)."""
    description = lab_description(seed=3, cells=16)
    station = open_station("virtual_array", lab=description)
    twin = pyvisa.ResourceManager(f"{description}@labstack").visalib.instruments.get("arraydac")
    yield station, lab_of(description), twin
    station.close()


def _targets(lab) -> np.ndarray:
    """What every bias and coupler line of the lab is commanded to (bias lines first)."""
    return lab.dacs.target.copy()


def test_driver_writes_and_reads_every_element_as_one_block(array_station):
    station, lab, twin = array_station
    dacs = station.dacs
    assert (dacs.n_elements, dacs.n_bias, dacs.n_couplers) == (31, 16, 15)
    values = np.linspace(-0.04, 0.04, 31)
    twin.log = []
    dacs.voltages(values)
    assert [c for c in twin.log if c.startswith("SOUR:VOLT:ARR <")] == ["SOUR:VOLT:ARR <block of 124 bytes>"]  # 31 float32
    np.testing.assert_array_equal(dacs.voltages(), values.astype(np.float32))
    # bias lines, then coupler lines, within the lab DACs' quantisation (0.6 uV steps)
    np.testing.assert_allclose(_targets(lab), values, atol=1e-6)
    assert dacs.coupler002.volt() == pytest.approx(values[18], abs=1e-7)
    # the guard committed every element, as the same values written one by one would be
    for i, name in enumerate([*station.layout.bias, *station.layout.couplers]):
        assert station.safety.channels[name].known == pytest.approx(values[i], abs=1e-7)


def test_array_write_of_the_wrong_length_is_refused_before_anything_is_sent(array_station):
    station, lab, twin = array_station
    twin.log = []
    with pytest.raises(ValueError, match=r"dacs: an array write needs 31 values .* got 16"):
        station.dacs.voltages(np.zeros(16))
    assert twin.log == [] and np.all(_targets(lab) == 0.0)


@pytest.mark.parametrize(
    ("element", "value", "why"),
    [(4, 1.6, r"dacs\.bias004\.volt: refused 1\.6 V: outside the limits"),
     (20, 0.3, r"dacs\.coupler004\.volt: refused 0\.3 V: a step of 0\.28 V from 0\.02 V exceeds max_step")],
)
def test_guard_refuses_a_block_with_one_bad_element_and_nothing_moves(array_station, element, value, why):
    station, lab, twin = array_station
    values = np.full(31, 0.02)
    station.dacs.voltages(values)
    before = _targets(lab)
    values[element] = value
    twin.log = []
    with pytest.raises(SafetyError, match=why):
        station.dacs.visa_handle.write_binary_values(
            "SOUR:VOLT:ARR ", values.astype("<f4"), datatype="f", is_big_endian=False
        )  # a raw block, bypassing the parameter's validators: the guard alone stands
    assert twin.log == []
    np.testing.assert_array_equal(_targets(lab), before)
    np.testing.assert_array_equal(twin.volts.astype(np.float32), np.float32(0.02))


def test_guard_checks_single_element_writes_and_blocks_alike(array_station):
    station, lab, twin = array_station
    dacs = station.dacs
    with pytest.raises(SafetyError, match=r"dacs\.bias001\.volt: refused 1\.2 V: a step"):
        dacs.write("SOUR:VOLT:ELEM 1,1.2")
    with pytest.raises(SafetyError, match=r"dacs\.coupler000\.volt: refused -1\.5 V: outside"):
        dacs.write("SOUR:VOLT:ELEM 16,-1.5")
    with pytest.raises(SafetyError, match="could move guarded elements unchecked"):
        dacs.write("SOUR:VOLT:ARR 0.1,0.2")
    dacs.bias001.volt(0.3)  # ramped element by element, the guard satisfied at every step
    steps = [v for _, v in station.safety.channels["dacs.bias001.volt"].history]
    assert max(np.diff([0.0, *steps])) <= 0.05 + 1e-9 and steps[-1] == pytest.approx(0.3)
    # a block repeating bias001's value right after its last step is not held to the rate
    values = dacs.voltages()
    values[0] = 0.01
    dacs.voltages(values)
    assert lab.dacs.target[1] == pytest.approx(0.3, abs=1e-6)
    assert lab.dacs.target[0] == pytest.approx(0.01, abs=1e-6)


def test_array_writes_are_ramped_in_blocks_within_every_elements_step_and_rate(array_station):
    station, lab, twin = array_station
    target = np.linspace(-0.4, 0.4, 31)
    target[3] = 1.2  # the farthest: 24 steps of 0.05 V
    twin.log = []
    t0 = station.clock.now()
    station.dacs.voltages(target)
    blocks = [c for c in twin.log if c.startswith("SOUR:VOLT:ARR <")]
    assert len(blocks) == 24 and not any(c.startswith("SOUR:VOLT:ELEM ") for c in twin.log)
    np.testing.assert_allclose(_targets(lab), target, atol=1e-6)
    for name in [*station.layout.bias, *station.layout.couplers]:
        times, volts = np.array(station.safety.channels[name].history).T
        steps = np.abs(np.diff(volts, prepend=0.0))  # every line started at 0 V
        assert steps.max() <= 0.05 + 1e-6, name
        assert np.all(np.diff(times) >= steps[:-1] / 1.0 - 1e-9), name  # 1 V/s: a step waits for the last
    assert station.clock.now() - t0 >= 1.15 - 1e-6  # 23 waits of 0.05 s: the farthest element sets the pace
    with pytest.raises(SafetyError, match=r"dacs\.coupler001\.volt: refused 1\.2 V: outside the limits"):
        station.dacs.voltages(np.where(np.arange(31) == 17, 1.2, target))
    np.testing.assert_allclose(_targets(lab), target, atol=1e-6)  # refused before anything moved


def test_safe_state_ramps_every_element_to_zero_in_blocks(array_station):
    station, lab, twin = array_station
    station.dacs.voltages(np.linspace(-0.3, 0.3, 31))
    twin.log = []
    assert station.safe_state() == []
    assert not any(c.startswith("SOUR:VOLT:ELEM ") for c in twin.log)
    assert sum(c.startswith("SOUR:VOLT:ARR <") for c in twin.log) == 6  # 0.3 V in 0.05 V steps
    np.testing.assert_array_equal(station.dacs.voltages(), 0.0)
    assert np.all(_targets(lab) == 0.0)


# ----------------------------------------------------------- wiring refused
def test_a_station_wiring_more_cells_than_the_array_has_is_refused(tmp_path):
    text = (
        station_path("virtual_array").read_text()
        .replace("cells: 16", "cells: 20")
        .replace("bias000-bias015]", "bias000-bias019]")
        .replace("coupler000-coupler014]", "coupler000-coupler018]")
    )
    path = tmp_path / "too_many.yaml"
    path.write_text(text)
    line = text.splitlines().index("    bias: [dacs.bias000-bias019]") + 1
    with pytest.raises(StationConfigError, match=rf"too_many\.yaml:{line}: labstack\.chip\.bias: dacs\.bias016\.volt "
                       r"is not a line of instrument 'dacs' \(its 31 channels"):
        open_station(path, lab=lab_description(seed=3, cells=16))


def test_a_chip_with_more_cells_than_the_station_wires_is_refused(tmp_path):
    path = tmp_path / "sixteen.yaml"
    path.write_text(station_path("virtual_array").read_text())
    with pytest.raises(StationConfigError, match=r"sixteen\.yaml:\d+: labstack\.chip\.cells: the virtual chip .* has 32 cells, this station wires 16"):
        open_station(path, lab=lab_description(seed=3, cells=32))


def test_virtual_array_opens_chips_of_any_size():
    station = open_station("virtual_array", lab=lab_description(seed=3, cells=40))
    try:
        layout = station.layout
        assert (station.dacs.n_elements, layout.n_cells, len(layout.couplers)) == (79, 40, 39)
        assert layout.bias[-1] == "dacs.bias039.volt" and layout.couplers[0] == "dacs.coupler000.volt"
        assert station.safety.channels["dacs.coupler038.volt"].high == 1.0
    finally:
        station.close()


# ------------------------------------------------------------ the routines
#: lighter S-curves than the routine's own acceptance (tests/test_bias_scurve.py): fewer
#: samples, narrower and shorter windows for cells the chip-wide sweep does not resolve
LIGHT = {
    "bias_scurve": dict(n_points=41, n_samples=400, sample_rate_Hz=50.0, window_points=15, window_widths=5.0),
    "readout": dict(trace_points=10),
}


def test_bias_scurve_runs_on_the_array_wiring_through_the_same_roles(virtual_station, tmp_path):
    station, lab = virtual_station("virtual_array", seed=5, cells=16)
    assert "qdac1" not in station.components  # every line is an element of the array
    report = calibrate_station(station, data_dir=tmp_path, progress=False, names=["bias_scurve"], params=LIGHT)
    assert report.calibrated == ["bias_scurve", "cryostat", "readout"]
    state = CalibrationState.load(tmp_path / "calibration_state")
    entries = [state.get(f"cells.{i}.bias_offset_V") for i in range(16)]
    v0 = np.array([e.value for e in entries])
    stderr = np.array([e.stderr for e in entries])
    runs = runs_of(tmp_path, "bias_scurve")
    run = runs[-1]
    assert "dacs" in run.attrs["snapshot"]
    true_v0, _ = scurve_truth(lab, run, v0)
    # couplers idle at 0 V in this first pass (no coupler node): their coupling moves the centres
    true_v0 = true_v0 + idle_coupling(lab, v0, true_v0)[0]
    # a defect that switched during the node's own sweeps (a 3-30 mV jump of that cell's
    # offset) leaves it no single truth to be judged against: seed 5's cell 10 jumps -25 mV
    # halfway through its window run once the rows ramp side by side
    span = (float(runs[0].attrs["clock_start"]), float(run.attrs["clock_start"]) + float(run["bias_clock"].values.max()))
    jumped = sorted({j.cell for j in lab.drift.jumps if span[0] <= j.time <= span[1]})
    assert len(jumped) <= 1, jumped
    still = np.setdiff1d(np.arange(16), jumped)
    assert within(v0[still], stderr[still], true_v0[still]) == 1.0, (v0 - true_v0) / stderr
    assert np.all(stderr < 5e-3), stderr  # and the errors are those of a real measurement
