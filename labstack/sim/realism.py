"""What a realistic virtual chip draws per seed, from which range, and why that range.

:data:`RANGES` is the single table of the realistic magnitudes: the ground-truth
docstring (:mod:`labstack.sim.truth`) and the README's table quote it, and
``tests/test_sim_realism_truth.py`` checks that every draw of many seeds stays
inside it. A range is ``(low, high, law, source)``: ``law`` is ``"uniform"`` or
``"log"`` (log-uniform). Quantities a real lab knows from a datasheet (the QDAC-II's
25 bits and filter corners, the heater resistor) are not drawn; they are constants
of the instrument models (:mod:`labstack.sim.dac`) or of the ideal truth.

The draws come from their own random stream (the seed's ``SeedSequence`` with spawn
key 7), after and apart from the cells', so a realistic chip and the ideal chip of
the same seed have the same cells (gains, offsets, barriers, couplers).
"""

from __future__ import annotations

from typing import Any

import numpy as np

HOUR = 3600.0
DAY = 86400.0

#: (low, high, law, source) of every realistic magnitude, by ground-truth key
RANGES: dict[str, tuple[float, float, str, str]] = {
    # fridge
    "cryostat.mc_base_K": (0.007, 0.015, "uniform", "dry dilution fridges with wiring load: base 7-15 mK (DESIGN.md, Realism)"),
    "cryostat.mc_cooling_W_per_K2": (5e-3, 1.5e-2, "log", "dilution cooling 84 n3 T^2 W at n3 = 60-180 umol/s, 50-150 uW at 100 mK: a small dry fridge (Pobell, Matter and Methods at Low Temperatures, ch. 7)"),
    "cryostat.mc_tau_base_s": (200.0, 1500.0, "log", "heater steps settle over minutes at base (DESIGN.md); sets the heat capacity C = 2 a T_base tau"),
    "cryostat.chip_tau_s": (10.0, 100.0, "log", "chip-to-mixing-chamber lag, tens of seconds (DESIGN.md; the issue: 10-100 s)"),
    "cryostat.bias_heating_W_per_V2": (1e-10, 1e-9, "log", "10-100 nW per bias line at 10 V: a full bank at full range dissipates microwatts (the issue)"),
    "cryostat.stage_50K": (40.0, 50.0, "uniform", "pulse-tube first stage"),
    "cryostat.stage_4K": (3.0, 3.5, "uniform", "pulse-tube second stage"),
    "cryostat.stage_still": (0.7, 0.9, "uniform", "still plate"),
    "cryostat.stage_cold_plate": (0.08, 0.12, "uniform", "cold plate"),
    # effective temperature
    "noise.t_excess_K": (0.027, 0.032, "uniform", "excess noise floor of tens of mK (DESIGN.md); below 27 mK the slowest cells' correlation times (ms) reach the sample periods of the routines, above 32 mK the fastest cells switch faster than a 1-2 MHz readout resolves: a chip this readout could not calibrate"),
    "noise.t_eff_exponent": (2.0, 5.0, "uniform", "2: independent noises add in quadrature; 5: electron-phonon-limited hot electrons, T_e^5 = T^5 + P / Sigma V (Wellstood, Urbina & Clarke, PRB 49, 5942 (1994))"),
    # readout chain
    "amplifier.gain": (5e3, 2e4, "log", "cryogenic HEMT plus room-temperature stages, 74-86 dB"),
    "amplifier.noise_temperature_K": (4.0, 8.0, "uniform", "system noise temperature of a 4 K HEMT chain with cable losses (HEMT datasheets: 2-5 K)"),
    "amplifier.bandwidth_Hz": (1.0e6, 2.0e6, "uniform", "readout bandwidth of the demodulation chain"),
    "amplifier.drift_V_per_sqrt_s": (1e-6, 5e-6, "log", "offset random walk of the demodulated output"),
    "amplifier.flicker_corner_Hz": (300.0, 3000.0, "log", "1/f corner of a HEMT's output noise: hundreds of Hz to kHz"),
    "amplifier.gain_drift_per_sqrt_s": (1e-4 / 60, 1e-3 / 60, "log", "slow gain drift, 0.01-0.1 % per sqrt(hour)"),
    "readout_crosstalk": (0.005, 0.03, "uniform", "a few % leakage between neighbouring readout lines (DESIGN.md)"),
    # DACs and bias lines
    "dac.line_tau_s": (1e-3, 20e-3, "log", "cryogenic RC and copper-powder filters on the bias lines, cut-off 8-160 Hz; each line +-5 % (components)"),
    "dac.white_V_per_rtHz": (5e-9, 20e-9, "log", "QDAC-II output noise: low microvolts rms in its 300 kHz band"),
    "dac.flicker_corner_Hz": (3.0, 30.0, "log", "1/f corner of a precision DAC's output"),
    # thermometry (per sensor)
    "thermometry.calibration_error_10mK": (-0.04, 0.04, "normal(0, 0.015)", "RuOx calibration-curve error of a few % at 10 mK, shrinking as sqrt(10 mK / T) above (calibration certificates)"),
    "thermometry.self_heating_K": (0.001, 0.003, "uniform", "excitation heating at the default 1 nA: the sensor reads (T^5 + T_sh^5)^(1/5), electron-phonon limited"),
    "thermometry.noise_rel": (5e-4, 2e-3, "log", "reading noise of an AC resistance bridge at millikelvin"),
    # chip drift
    "drift.v0_walk_V_per_sqrt_s": (1e-4 / 60, 1e-3 / 60, "log", "flux-noise-like offset diffusion, 0.1-1 mV per sqrt(hour), per cell (DESIGN.md)"),
    "drift.alpha_walk_per_sqrt_s": (1e-4 / 60, 1e-3 / 60, "log", "gains drift far more slowly: 0.01-0.1 % per sqrt(hour), per cell"),
    "drift.jump_rate_per_s": (0.5 / DAY, 2.0 / DAY, "log", "two-level defects switching: of order once per chip-day"),
    "drift.jump_V": (3e-3, 30e-3, "log", "a switching defect moves one cell's offset by a few to tens of mV"),
}

STAGES = ("50K", "4K", "still", "cold_plate", "mixing_chamber", "chip")
SENSORS = STAGES
"""Thermometers: one per stage, all on the Lake Shore 372's scanner."""


def rng_for(seed: int) -> np.random.Generator:
    """The realism stream of a seed: independent of the cells' draws."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(7,)))


def draw(rng: np.random.Generator, key: str, size: int | None = None) -> Any:
    """One value (or ``size`` values) of ``key`` from its range in :data:`RANGES`."""
    low, high, law, _ = RANGES[key]
    if law == "uniform":
        return rng.uniform(low, high, size)
    if law == "log":
        return np.exp(rng.uniform(np.log(low), np.log(high), size))
    if law.startswith("normal"):
        sd = float(law.split(",")[1].rstrip(") "))
        return np.clip(rng.normal(0.0, sd, size), low, high)
    raise ValueError(f"unknown law {law!r} for {key}")


def draw_sections(seed: int, n_cells: int, n_couplers: int) -> dict[str, Any]:
    """The realistic sections of a ground truth (plain values, as in the JSON file)."""
    rng = rng_for(seed)
    a = float(draw(rng, "cryostat.mc_cooling_W_per_K2"))
    base = float(draw(rng, "cryostat.mc_base_K"))
    tau_base = float(draw(rng, "cryostat.mc_tau_base_s"))
    cryostat = {
        "mc_cooling_W_per_K2": a,
        "mc_load_W": a * base**2,
        "mc_heat_capacity_J_per_K": 2.0 * a * base * tau_base,
        "chip_tau_s": float(draw(rng, "cryostat.chip_tau_s")),
        "heater_resistance_ohm": 120.0,
        "bias_heating_W_per_V2": float(draw(rng, "cryostat.bias_heating_W_per_V2")),
        "stage_temperatures_K": {
            stage: float(draw(rng, f"cryostat.stage_{stage}")) for stage in ("50K", "4K", "still", "cold_plate")
        },
    }
    noise = {
        "t_excess_K": float(draw(rng, "noise.t_excess_K")),
        "t_eff_exponent": float(draw(rng, "noise.t_eff_exponent")),
    }
    amplifier = {
        "gain": float(draw(rng, "amplifier.gain")),
        "noise_temperature_K": float(draw(rng, "amplifier.noise_temperature_K")),
        "bandwidth_Hz": float(draw(rng, "amplifier.bandwidth_Hz")),
        "source_impedance_ohm": 50.0,
        "drift_V_per_sqrt_s": float(draw(rng, "amplifier.drift_V_per_sqrt_s")),
        "flicker_corner_Hz": float(draw(rng, "amplifier.flicker_corner_Hz")),
        "gain_drift_per_sqrt_s": float(draw(rng, "amplifier.gain_drift_per_sqrt_s")),
    }
    crosstalk = draw(rng, "readout_crosstalk", max(n_cells - 1, 0))
    line_tau = float(draw(rng, "dac.line_tau_s"))
    spread = np.clip(rng.normal(1.0, 0.05, n_cells + n_couplers), 0.85, 1.15)
    dac = {
        "resolution_bits": 25,
        "bias_line_tau_s": (line_tau * spread[:n_cells]).tolist(),
        "coupler_line_tau_s": (line_tau * spread[n_cells:]).tolist(),
        "white_V_per_rtHz": float(draw(rng, "dac.white_V_per_rtHz")),
        "flicker_corner_Hz": float(draw(rng, "dac.flicker_corner_Hz")),
    }
    sensors = {
        name: {
            "calibration_error_10mK": float(draw(rng, "thermometry.calibration_error_10mK")),
            "self_heating_K": float(draw(rng, "thermometry.self_heating_K")),
            "noise_rel": float(draw(rng, "thermometry.noise_rel")),
        }
        for name in SENSORS
    }
    low, high, _, _ = RANGES["drift.jump_V"]
    drift = {
        "v0_walk_V_per_sqrt_s": draw(rng, "drift.v0_walk_V_per_sqrt_s", n_cells).tolist(),
        "alpha_walk_per_sqrt_s": draw(rng, "drift.alpha_walk_per_sqrt_s", n_cells).tolist(),
        "jump_rate_per_s": float(draw(rng, "drift.jump_rate_per_s")),
        "jump_min_V": low,
        "jump_max_V": high,
    }
    return {
        "cryostat": cryostat,
        "noise": noise,
        "amplifier": amplifier,
        "readout_crosstalk": np.asarray(crosstalk, dtype=float).tolist(),
        "dac": dac,
        "thermometry": {"scanner": True, "sensors": sensors},
        "drift": drift,
        "dynamics": {"bounded_kramers": True},
    }
