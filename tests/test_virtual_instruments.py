"""The unmodified QCoDeS / contrib drivers against the virtual lab, over PyVISA."""

from __future__ import annotations

import numpy as np
import pytest
from qcodes.instrument_drivers.Lakeshore import LakeshoreModel372
from qcodes_contrib_drivers.drivers.QDevil.QDAC2 import QDac2

from tests.conftest import lab_description, lab_of


@pytest.fixture
def lab_desc():
    # the driver-to-instrument plumbing on the ideal chip; the realistic outputs and
    # thermometers are tested through the same drivers in test_sim_dac / test_sim_thermometry
    return lab_description(seed=11, cells=16, realism="ideal")


def test_qdac2_driver_sets_and_reads_voltages_that_bias_the_cells(lab_desc):
    qdac = QDac2("qdac_t", "TCPIP0::qdac1.virtual::5025::SOCKET", visalib=f"{lab_desc}@labstack")
    try:
        lab = lab_of(lab_desc)
        qdac.ch03.dc_constant_V(0.25)
        assert qdac.ch03.dc_constant_V() == pytest.approx(0.25)
        assert lab.bias_V[2] == pytest.approx(0.25)
        qdac.ch03.dc_slew_rate_V_per_s(100.0)
        assert qdac.ch03.dc_slew_rate_V_per_s() == pytest.approx(100.0)
        assert qdac.ch03.output_range() == "high"
        assert qdac.errors() == '0,"No error"'
    finally:
        qdac.close()


def test_qdac2_unimplemented_command_gives_scpi_error_like_hardware(lab_desc):
    qdac = QDac2("qdac_t", "TCPIP0::qdac1.virtual::5025::SOCKET", visalib=f"{lab_desc}@labstack")
    try:
        qdac.write("sour1:swe:star 0.1")
        errors = qdac.errors()
        assert errors.startswith("-113") and "Undefined header" in errors
        qdac.write("sour1:volt 12")  # beyond the +-10 V high range: the instrument refuses
        assert qdac.errors().startswith("-222")
        assert lab_of(lab_desc).bias_V[0] == 0.0
    finally:
        qdac.close()


def test_lakeshore372_driver_reads_temperatures_and_heats_the_mixing_chamber(lab_desc):
    ls = LakeshoreModel372("ls_t", "TCPIP0::ls372.virtual::7777::SOCKET", visalib=f"{lab_desc}@labstack")
    try:
        lab = lab_of(lab_desc)
        base = ls.ch06.temperature()
        assert base == pytest.approx(lab.truth.cryostat.mc_base_K, rel=0.01)
        assert ls.ch02.temperature() == pytest.approx(3.2, rel=0.01)
        assert ls.ch06.sensor_raw() > ls.ch02.sensor_raw()  # RuOx: colder reads higher
        heater = ls.sample_heater
        heater.mode("closed_loop")
        heater.input_channel(6)
        heater.P(20)
        heater.I(5)
        heater.D(0)
        heater.output_range("1mA")
        heater.setpoint(0.050)
        lab.sleep(3000.0)
        assert ls.ch06.temperature() == pytest.approx(0.050, rel=0.05)
        assert heater.output() > 1.0
        assert lab.cryostat.t_chip == pytest.approx(0.050, rel=0.05)
    finally:
        ls.close()


def test_sampler_returns_a_binary_block_of_every_cell(virtual_station):
    station, lab = virtual_station(seed=5, cells=16)
    station.sampler.n_samples(500)
    station.sampler.sample_rate(10e3)
    t0 = station.clock.now()
    data = station.sampler.samples()
    assert data.shape == (16, 500) and data.dtype == np.float32
    assert station.clock.now() - t0 == pytest.approx(500 / 10e3)
    # every live cell's readings sit near offset +- amplitude
    amp = lab.truth.cells.readout_amp_V
    spread = np.ptp(np.percentile(data, [5, 95], axis=1), axis=0)
    assert np.all(spread < 2 * amp + 8 * lab.truth.amplifier.noise_rms_V)


def test_sampler_transfers_the_chosen_cells_only_and_the_same_readings(virtual_station):
    """Two labs of one seed: the chosen cells' rows are the full block's rows, bit for bit,
    and the axis says which cells they are; a bad channel list is refused by the instrument."""

    full_station, _ = virtual_station(seed=5, cells=16)
    full_station.sampler.n_samples(300)
    full_station.sampler.sample_rate(10e3)
    full = full_station.sampler.samples()
    full_time = full_station.clock.now()
    full_station.close()  # the same instrument names, on a second lab of the same seed
    part_station, _ = virtual_station(seed=5, cells=16)
    part_station.sampler.n_samples(300)
    part_station.sampler.sample_rate(10e3)
    part_station.sampler.channels([7, 0, 3, 4, 5])
    assert part_station.sampler.channels() == (7, 0, 3, 4, 5)
    assert part_station.sampler.ask("SAMP:CHAN?") == "(@7,0,3,4,5)"
    part = part_station.sampler.samples()
    assert part.shape == (5, 300)
    np.testing.assert_array_equal(part, full[[7, 0, 3, 4, 5]])
    np.testing.assert_array_equal(part_station.sampler.cell(), [7, 0, 3, 4, 5])
    assert part_station.clock.now() == pytest.approx(full_time)
    # the instrument refuses a cell it does not have, and keeps the list it had
    part_station.sampler.write("SAMP:CHAN (@0,16)")
    assert "-222" in part_station.sampler.ask("SYST:ERR?")
    assert part_station.sampler.ask("SAMP:CHAN?") == "(@7,0,3,4,5)"
    part_station.sampler.channels(None)
    assert part_station.sampler.samples().shape == (16, 300)


def test_virtual_clock_advances_without_wall_time(virtual_station):
    import time

    station, lab = virtual_station(seed=5, cells=16)
    start = time.perf_counter()
    station.clock.sleep(3600.0)
    assert time.perf_counter() - start < 5.0
    assert station.clock.now() == pytest.approx(3600.0)
    assert lab.clock.now() == pytest.approx(3600.0)
