"""Thermometry like a Lake Shore 372 with a scanner, through QCoDeS's unmodified driver.

One channel is measured at a time; after switching, its pause passes before a reading
is valid; every other channel reports what it read when the scanner left it. Each
sensor has its own calibration-curve error and self-heating (which the excitation
range changes), and the heater's closed loop acts on the *reading*. Each is checked
against the sensor model's closed form, and a wrong model (live, exact readings) is
shown to miss.
"""

from __future__ import annotations

import numpy as np
import pytest
from qcodes.instrument_drivers.Lakeshore import LakeshoreModel372
from scipy.optimize import brentq

from labstack.sim.thermometry import excitation_current_A, sensor_reading
from labstack.sim.truth import Sensor
from tests.conftest import lab_description, lab_of


@pytest.fixture
def lakeshore():
    description = lab_description(seed=11, cells=4)
    ls = LakeshoreModel372("ls_thermo", "TCPIP0::ls372.virtual::7777::SOCKET", visalib=f"{description}@labstack")
    yield ls, lab_of(description)
    ls.close()


def test_sensor_model_self_heating_and_calibration_error_closed_forms():
    sensor = Sensor(calibration_error_10mK=0.02, self_heating_K=0.003, noise_rel=0.0)
    for t in (0.007, 0.010, 0.040):
        t_s = (t**5 + 0.003**5) ** 0.2  # electron-phonon limited: P = Sigma V (T_s^5 - T^5)
        assert sensor_reading(sensor, t, 7) == pytest.approx(t_s * (1 + 0.02 * np.sqrt(0.010 / t_s)), rel=1e-12)
    # ten times the excitation current: a hundred times the power, T_sh up by 100^(1/5)
    assert excitation_current_A(9) == pytest.approx(10 * excitation_current_A(7))
    hot = sensor_reading(Sensor(0.0, 0.003, 0.0), 0.007, 9)
    assert hot == pytest.approx((0.007**5 + (0.003 * 100**0.2) ** 5) ** 0.2, rel=1e-12)


def test_a_reading_is_the_sensor_model_of_the_stage_and_the_excitation_range_heats_it(lakeshore):
    ls, lab = lakeshore
    mc = lab.truth.thermometry.sensors["mixing_chamber"]
    ls.write("SCAN 6,0")  # park the scanner on the mixing chamber
    lab.sleep(5.0)
    truth = lab.cryostat.t_mc
    readings = np.array([ls.ch06.temperature() for _ in range(50)])
    expected = sensor_reading(mc, truth, 7)
    assert readings.mean() == pytest.approx(expected, rel=4 * mc.noise_rel / np.sqrt(50))
    assert abs(readings.mean() / truth - 1) > 4 * mc.noise_rel / np.sqrt(50)  # not the exact stage
    ls.ch06.excitation_range_number(11)  # 100x the current: the sensor warms
    warm = np.array([ls.ch06.temperature() for _ in range(50)]).mean()
    assert warm == pytest.approx(sensor_reading(mc, truth, 11), rel=4 * mc.noise_rel / np.sqrt(50))
    assert warm > readings.mean() * (1 + 10 * mc.noise_rel / np.sqrt(50))


def test_one_channel_at_a_time_with_its_pause_and_held_readings(lakeshore):
    ls, lab = lakeshore
    # power-up: the mixing chamber (6) and chip (8) are scanned, dwell 10 s, pause 3 s
    assert ls.ch06.enabled() and ls.ch08.enabled() and not ls.ch02.enabled()
    assert ls.ch06.temperature() > 0
    assert ls.ch08.temperature() == 0.0 and "T. UNDER" in ls.ch08.sensor_status()  # not yet measured
    assert ls.ch02.temperature() == 0.0  # never scanned
    lab.sleep(13.0 + 3.0 + 0.5)  # 6 done (pause + dwell), then 8's pause
    assert ls.ch08.temperature() == pytest.approx(lab.cryostat.t_chip, rel=0.1)
    # heat the fridge and park the scanner on the chip: 6 holds what it read when it was left
    ls.ch08.pause(10)  # the driver's scanner settings matter: a 10 s pause from now on
    ls.write("SCAN 8,0")
    t_left = lab.clock.now()
    lab.cryostat.t_mc += 0.02  # a heat burst
    lab.sleep(60.0)
    held = ls.ch06.temperature()
    assert held == pytest.approx(lab.cryostat.history_at(t_left)[0], rel=0.05)
    assert abs(held - lab.cryostat.t_mc) > 0.2 * abs(lab.cryostat.history_at(t_left)[0] - lab.cryostat.t_mc)
    ls.write("SCAN 6,0")
    lab.sleep(5.0)  # 6's pause (3 s) is over: live again
    assert ls.ch06.temperature() == pytest.approx(lab.cryostat.t_mc, rel=0.05)
    t_back = lab.clock.now()
    ls.write("SCAN 8,0")
    lab.sleep(5.0)  # 8's new pause is 10 s: it still reports the reading it held (no new noise)
    first, second = ls.ch08.temperature(), ls.ch08.temperature()
    assert first == second == pytest.approx(lab.cryostat.history_at(t_back - 5.0)[1], rel=0.05)
    lab.sleep(6.0)  # past its pause: live, a fresh reading (and fresh noise) at every query
    assert ls.ch08.temperature() != ls.ch08.temperature()


def test_the_closed_loop_holds_the_reading_not_the_stage_at_its_setpoint(lakeshore):
    ls, lab = lakeshore
    mc = lab.truth.thermometry.sensors["mixing_chamber"]
    ls.write("SCAN 6,0")
    heater = ls.sample_heater
    heater.mode("closed_loop")
    heater.input_channel(6)
    heater.P(20)
    heater.I(5)
    heater.D(0)
    heater.output_range("1mA")
    heater.setpoint(0.050)
    lab.sleep(6000.0)
    readings = np.array([ls.ch06.temperature() for _ in range(100)])
    assert readings.mean() == pytest.approx(0.050, rel=3 * mc.noise_rel)
    # the stage sits where the sensor reads 50 mK, not at 50 mK
    quiet = Sensor(mc.calibration_error_10mK, mc.self_heating_K, 0.0)
    expected = brentq(lambda t: sensor_reading(quiet, t, 7) - 0.050, 0.02, 0.1)
    assert lab.cryostat.t_mc == pytest.approx(expected, rel=3 * mc.noise_rel)
    assert abs(expected / 0.050 - 1) > 5 * mc.noise_rel  # a loop on the true temperature would miss
