"""Ground truth of a virtual chip: the numbers the simulator knows and calibrations must find.

A :class:`GroundTruth` is drawn from a seed (:meth:`GroundTruth.from_seed`) or read
from a JSON file (:meth:`GroundTruth.load`). ``labstack sim ground-truth --seed S
--cells N`` writes one.

Realism. A chip is ``realistic`` (the default) or ``ideal``. Both have the same cells
for the same seed (gains, offsets, barriers, attempt rates, readout amplitudes,
couplers); the ideal chip has today's fixed fridge and amplifier and none of the
effects below, which is what unit tests of other things use (``realism=ideal`` in a
lab description). A realistic chip draws, per seed, from these ranges
(:data:`labstack.sim.realism.RANGES` is the table the draws use; log = log-uniform):

======================================  ==================  =====  ================================================
key                                     range               law    source
======================================  ==================  =====  ================================================
cryostat.mc_base_K                      7 - 15 mK           unif.  dry dilution fridges with wiring load
cryostat.mc_cooling_W_per_K2            5e-3 - 1.5e-2 W/K^2 log    84 n3 T^2 at n3 = 60-180 umol/s (Pobell, ch. 7)
cryostat.mc_tau_base_s (-> heat cap.)   200 - 1500 s        log    heater steps settle over minutes at base
cryostat.chip_tau_s                     10 - 100 s          log    chip-to-mixing-chamber lag
cryostat.bias_heating_W_per_V2          1e-10 - 1e-9        log    10-100 nW per bias line at 10 V
cryostat.stage_temperatures_K           40-50/3-3.5/0.7-0.9/0.08-0.12 K  unif.  50 K, 4 K, still, cold plate
noise.t_excess_K                        27 - 32 mK          unif.  tens of mK, where this readout resolves the cells
noise.t_eff_exponent                    2 - 5               unif.  2: quadrature; 5: e-ph hot electrons (Wellstood 1994)
amplifier.gain                          5e3 - 2e4           log    HEMT + room-temperature stages
amplifier.noise_temperature_K           4 - 8 K             unif.  4 K HEMT chain with cable losses
amplifier.bandwidth_Hz                  1 - 2 MHz           unif.  demodulation chain
amplifier.drift_V_per_sqrt_s            1 - 5 uV/sqrt(s)    log    output offset random walk
amplifier.flicker_corner_Hz             0.3 - 3 kHz         log    HEMT 1/f corner
amplifier.gain_drift_per_sqrt_s         0.01 - 0.1 %/sqrt(h) log   slow gain drift
readout_crosstalk                       0.5 - 3 %           unif.  leakage between neighbouring readout lines
dac.line_tau_s                          1 - 20 ms, +-5 %    log    cryogenic RC / copper-powder line filters
dac.white_V_per_rtHz                    5 - 20 nV/sqrt(Hz)  log    QDAC-II output noise
dac.flicker_corner_Hz                   3 - 30 Hz           log    precision DAC 1/f corner
thermometry.calibration_error_10mK      N(0, 1.5 %), +-4 %  norm.  RuOx calibration certificates
thermometry.self_heating_K              1 - 3 mK at 1 nA    unif.  excitation heating, (T^5 + T_sh^5)^(1/5)
thermometry.noise_rel                   0.05 - 0.2 %        log    AC bridge reading noise
drift.v0_walk_V_per_sqrt_s              0.1 - 1 mV/sqrt(h)  log    flux-noise-like offset diffusion, per cell
drift.alpha_walk_per_sqrt_s             0.01 - 0.1 %/sqrt(h) log   gain drift, per cell
drift.jump_rate_per_s                   0.5 - 2 per day     log    two-level defects switching
drift.jump_min_V / jump_max_V           3 - 30 mV           log    size of one offset jump
======================================  ==================  =====  ================================================

Fixed datasheet values (not drawn): the QDAC-II's 25 bits over +-10 V and its filter
corners (:mod:`labstack.sim.dac`), the heater's 120 ohm, the amplifier's 50 ohm source.

JSON format (``format: "labstack-ground-truth/2"``), all quantities in SI units
except energies, which are in kelvin (k_B = 1) as is usual for these chips. Every key
is required and range-checked on loading (:meth:`GroundTruth.from_dict`)::

    {
      "format": "labstack-ground-truth/2",
      "realism": "realistic",               # "ideal" | "realistic"
      "seed": 1234,                         # seed the chip was drawn from (null if hand-made)
      "n_cells": 16,
      "topology": "chain",                  # "none" | "chain" | "grid"
      "grid_shape": null,                   # [rows, cols] for "grid"
      "cells": {                            # one list entry per cell, index = cell number
        "alpha_K_per_V": [...],             # bias gain: h_i = alpha_i (V_i - V0_i) + sum_j Xt_ij V_j
        "v0_V": [...],                      # bias offset at lab time 0 (it drifts: VirtualLab.truth_at)
        "gamma0_Hz": [...],                 # Kramers attempt rate
        "barrier_K": [...],                 # barrier height Delta U
        "readout_amp_V": [...],             # signal at the nominal gain 1e4: state +-1 reads offset +- amp * gain / 1e4
        "readout_offset_V": [...],
        "dead": [...],                      # a dead cell gives no signal (amp 0): only amplifier noise
        "stuck": [...]                      # 0 = healthy, +1 / -1 = frozen in that state
      },
      "crosstalk_K_per_V": [[...]],         # Xt, N x N, zero diagonal
      "couplers": {"pairs": [[i, j], ...], "kappa_K_per_V": [...], "vc0_V": [...]},
      "noise": {"t_excess_K": 0.03, "t_eff_exponent": 2.0},
      "amplifier": {"gain": 1e4, "noise_temperature_K": 3.0, "bandwidth_Hz": 1e6,
                    "source_impedance_ohm": 50.0, "drift_V_per_sqrt_s": 2e-6,
                    "flicker_corner_Hz": 0.0, "gain_drift_per_sqrt_s": 0.0},
      "cryostat": {"mc_cooling_W_per_K2": ..., "mc_load_W": ..., "mc_heat_capacity_J_per_K": ...,
                   "chip_tau_s": 30.0, "heater_resistance_ohm": 120.0, "bias_heating_W_per_V2": 0.0,
                   "stage_temperatures_K": {"50K": 45.0, "4K": 3.2, "still": 0.8, "cold_plate": 0.1}},
      "readout_crosstalk": [...],           # N - 1 leak fractions between readout channels i, i+1
      "dac": {"resolution_bits": 25, "bias_line_tau_s": [...], "coupler_line_tau_s": [...],
              "white_V_per_rtHz": 1e-8, "flicker_corner_Hz": 10.0},
      "thermometry": {"scanner": true, "sensors": {"<stage>":
                      {"calibration_error_10mK": 0.01, "self_heating_K": 0.002, "noise_rel": 1e-3}}},
      "drift": {"v0_walk_V_per_sqrt_s": [...], "alpha_walk_per_sqrt_s": [...],
                "jump_rate_per_s": 1e-5, "jump_min_V": 0.003, "jump_max_V": 0.03},
      "dynamics": {"bounded_kramers": true}
    }

Format ``labstack-ground-truth/1`` (no realism keys, ``noise``/``amplifier``/``cryostat``
optional) still loads, as the ideal chip it described.

Effective temperature: ``T_eff = (T_chip**n + t_excess**n) ** (1/n)`` with ``n = t_eff_exponent``.
An isolated cell has ``P(+1) = 1 / (1 + exp(-2 h / T_eff))``: an S-curve in its
bias voltage of logistic width ``w = T_eff / (2 alpha)`` volts.
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from labstack.sim import realism as realism_draws

FORMAT = "labstack-ground-truth/2"
FORMAT_V1 = "labstack-ground-truth/1"
REALISM = ("ideal", "realistic")
NOMINAL_GAIN = 1.0e4
"""Gain at which ``cells.readout_amp_V`` is given; the output signal scales with the gain."""


class GroundTruthError(ValueError):
    """A ground-truth file that cannot be used; the message names the file and key."""


def _range(low: float, high: float) -> dict[str, tuple[float, float]]:
    """Field metadata: the physically meaningful range, checked on loading."""
    return {"range": (low, high)}


@dataclass
class Cells:
    alpha_K_per_V: np.ndarray
    v0_V: np.ndarray
    gamma0_Hz: np.ndarray
    barrier_K: np.ndarray
    readout_amp_V: np.ndarray
    readout_offset_V: np.ndarray
    dead: np.ndarray
    stuck: np.ndarray

    @property
    def n(self) -> int:
        return len(self.alpha_K_per_V)


#: allowed range of each per-cell list (dead and stuck are checked by type and value)
CELL_RANGES: dict[str, tuple[float, float]] = {
    "alpha_K_per_V": (1e-6, 100.0),
    "v0_V": (-10.0, 10.0),
    "gamma0_Hz": (1.0, 1e13),
    "barrier_K": (1e-4, 100.0),
    "readout_amp_V": (0.0, 10.0),
    "readout_offset_V": (-10.0, 10.0),
}


@dataclass
class Couplers:
    pairs: np.ndarray  # (M, 2) int
    kappa_K_per_V: np.ndarray
    vc0_V: np.ndarray

    @property
    def n(self) -> int:
        return len(self.pairs)


@dataclass
class Noise:
    t_excess_K: float = field(default=0.030, metadata=_range(0.0, 10.0))
    t_eff_exponent: float = field(default=2.0, metadata=_range(0.5, 20.0))

    def t_eff(self, t_chip_K: float) -> float:
        n = self.t_eff_exponent
        return float((t_chip_K**n + self.t_excess_K**n) ** (1.0 / n))


@dataclass
class Amplifier:
    gain: float = field(default=NOMINAL_GAIN, metadata=_range(1e-3, 1e9))
    noise_temperature_K: float = field(default=3.0, metadata=_range(0.0, 1e4))
    bandwidth_Hz: float = field(default=1.0e6, metadata=_range(1.0, 1e10))
    source_impedance_ohm: float = field(default=50.0, metadata=_range(1e-3, 1e6))
    drift_V_per_sqrt_s: float = field(default=2.0e-6, metadata=_range(0.0, 1.0))
    #: 1/f corner of the output noise (0: white only)
    flicker_corner_Hz: float = field(default=0.0, metadata=_range(0.0, 1e8))
    #: relative random walk of the gain (0: constant gain)
    gain_drift_per_sqrt_s: float = field(default=0.0, metadata=_range(0.0, 0.1))

    @property
    def noise_rms_V(self) -> float:
        """Output-referred rms white noise: gain * sqrt(4 k_B T_n R B) (Johnson-equivalent)."""
        k_b = 1.380649e-23
        return float(
            self.gain
            * np.sqrt(4 * k_b * self.noise_temperature_K * self.source_impedance_ohm * self.bandwidth_Hz)
        )

    @property
    def lowpass_tau_s(self) -> float:
        return float(1.0 / (2 * np.pi * self.bandwidth_Hz))


@dataclass
class CryostatTruth:
    """Lumped dilution refrigerator. Mixing chamber: C dT/dt = P_heater + P_bias + P_load - a T^2."""

    mc_cooling_W_per_K2: float = field(default=1.0e-2, metadata=_range(1e-8, 1e3))
    mc_load_W: float = field(default=1.0e-6, metadata=_range(1e-15, 1.0))  # 10 mK base
    mc_heat_capacity_J_per_K: float = field(default=0.2, metadata=_range(1e-9, 1e6))
    chip_tau_s: float = field(default=30.0, metadata=_range(1e-3, 1e6))
    heater_resistance_ohm: float = field(default=120.0, metadata=_range(1e-3, 1e6))
    #: power each bias or coupler line dissipates per V^2 of its output (0: no bias heating)
    bias_heating_W_per_V2: float = field(default=0.0, metadata=_range(0.0, 1e-3))
    stage_temperatures_K: dict[str, float] = field(
        default_factory=lambda: {"50K": 45.0, "4K": 3.2, "still": 0.8, "cold_plate": 0.1}
    )

    @property
    def mc_base_K(self) -> float:
        return float(np.sqrt(self.mc_load_W / self.mc_cooling_W_per_K2))

    def mc_tau_s(self, temperature_K: float) -> float:
        """Small-signal time constant C / (2 a T) around ``temperature_K``."""
        return float(self.mc_heat_capacity_J_per_K / (2 * self.mc_cooling_W_per_K2 * temperature_K))


@dataclass
class DacTruth:
    """DAC outputs and bias lines (:mod:`labstack.sim.dac`). Zeros: instant, exact outputs."""

    resolution_bits: int = field(default=0, metadata=_range(0, 64))  # 0: unquantised
    bias_line_tau_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    coupler_line_tau_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    white_V_per_rtHz: float = field(default=0.0, metadata=_range(0.0, 1e-3))
    flicker_corner_Hz: float = field(default=0.0, metadata=_range(0.0, 1e6))

    @property
    def ideal(self) -> bool:
        return (
            self.resolution_bits == 0
            and not np.any(self.bias_line_tau_s)
            and not np.any(self.coupler_line_tau_s)
            and self.white_V_per_rtHz == 0
        )


@dataclass
class Sensor:
    """One resistance thermometer (:mod:`labstack.sim.thermometry`)."""

    calibration_error_10mK: float = field(default=0.0, metadata=_range(-0.5, 0.5))
    self_heating_K: float = field(default=0.0, metadata=_range(0.0, 1.0))
    noise_rel: float = field(default=1e-3, metadata=_range(0.0, 0.5))


@dataclass
class ThermometryTruth:
    """The Lake Shore 372's sensors; ``scanner`` False: every channel read live, exactly."""

    scanner: bool = False
    sensors: dict[str, Sensor] = field(
        default_factory=lambda: {name: Sensor() for name in realism_draws.SENSORS}
    )


@dataclass
class DriftTruth:
    """Chip drift (:mod:`labstack.sim.drift`). Zeros: a chip that never moves."""

    v0_walk_V_per_sqrt_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    alpha_walk_per_sqrt_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    jump_rate_per_s: float = field(default=0.0, metadata=_range(0.0, 1.0))
    jump_min_V: float = field(default=0.003, metadata=_range(0.0, 10.0))
    jump_max_V: float = field(default=0.030, metadata=_range(0.0, 10.0))

    @property
    def active(self) -> bool:
        return bool(np.any(self.v0_walk_V_per_sqrt_s) or np.any(self.alpha_walk_per_sqrt_s) or self.jump_rate_per_s)


@dataclass
class DynamicsTruth:
    #: total switching rate saturates at the attempt rate (:func:`labstack.sim.dynamics.kramers_rates`)
    bounded_kramers: bool = False


@dataclass
class GroundTruth:
    n_cells: int
    cells: Cells
    topology: str = "chain"
    grid_shape: tuple[int, int] | None = None
    crosstalk_K_per_V: np.ndarray | None = None
    couplers: Couplers | None = None
    noise: Noise = field(default_factory=Noise)
    amplifier: Amplifier = field(default_factory=Amplifier)
    cryostat: CryostatTruth = field(default_factory=CryostatTruth)
    seed: int | None = None
    realism: str = "ideal"
    readout_crosstalk: np.ndarray = field(default_factory=lambda: np.zeros(0))
    dac: DacTruth = field(default_factory=DacTruth)
    thermometry: ThermometryTruth = field(default_factory=ThermometryTruth)
    drift: DriftTruth = field(default_factory=DriftTruth)
    dynamics: DynamicsTruth = field(default_factory=DynamicsTruth)

    # ----------------------------------------------------------------- derived
    def scurve_width_V(self, t_chip_K: float | None = None) -> np.ndarray:
        """Logistic width T_eff / (2 alpha) of each cell's S-curve at a chip temperature."""
        t_chip = self.cryostat.mc_base_K if t_chip_K is None else t_chip_K
        return self.noise.t_eff(t_chip) / (2.0 * self.cells.alpha_K_per_V)

    def readout_amp_out_V(self) -> np.ndarray:
        """Each cell's signal at the amplifier output (its amplitude times gain / 1e4; 0 if dead)."""
        amp = np.where(self.cells.dead, 0.0, self.cells.readout_amp_V)
        return amp * (self.amplifier.gain / NOMINAL_GAIN)

    @property
    def n_couplers(self) -> int:
        return self.couplers.n if self.couplers is not None else 0

    def idealized(self) -> GroundTruth:
        """The same cells on today's ideal fridge, readout and DACs, with none of the realism."""
        return GroundTruth(
            n_cells=self.n_cells,
            cells=copy.deepcopy(self.cells),
            topology=self.topology,
            grid_shape=self.grid_shape,
            crosstalk_K_per_V=None if self.crosstalk_K_per_V is None else self.crosstalk_K_per_V.copy(),
            couplers=copy.deepcopy(self.couplers),
            seed=self.seed,
        )

    def swept_scurve_width_V(self, t_chip_K: float | None = None) -> np.ndarray:
        """Width of the S-curve measured with every bias line stepped together (bias_scurve).

        Line ``j`` moves cell ``i`` by ``Xt_ij`` K/V, so a common step moves it by
        ``alpha_i + X_i`` with ``X_i = sum_j Xt_ij``: ``w'_i = T_eff / (2 (alpha_i + X_i))``,
        narrower than :meth:`scurve_width_V` wherever there is crosstalk.
        """
        t_chip = self.cryostat.mc_base_K if t_chip_K is None else t_chip_K
        xt = self.crosstalk_K_per_V
        total = self.cells.alpha_K_per_V + (xt.sum(axis=1) if xt is not None else 0.0)
        return self.noise.t_eff(t_chip) / (2.0 * total)

    # ------------------------------------------------------------------- draw
    @classmethod
    def from_seed(
        cls,
        seed: int,
        n_cells: int = 16,
        topology: str = "chain",
        *,
        dead_fraction: float = 0.0,
        stuck_fraction: float = 0.0,
        crosstalk: float = 0.0,
        realism: str = "realistic",
    ) -> GroundTruth:
        """Draw a chip with realistic spreads.

        Spreads: gain 10 % (fabrication), offsets 0.15 V rms (trapped flux), barrier
        10 %, attempt rate a factor ~1.3, readout amplitude 15 %. ``crosstalk`` is the
        nearest-line DAC crosstalk as a fraction of the mean gain (0 for a clean chip).
        ``realism="realistic"`` adds the per-seed fridge, readout, DACs, thermometry and
        drift of the module docstring (drawn from a stream of their own, so the cells
        are those of the ideal chip of the same seed).
        """
        if n_cells < 1:
            raise GroundTruthError(f"n_cells must be >= 1, got {n_cells}")
        if realism not in REALISM:
            raise GroundTruthError(f"realism must be one of {', '.join(REALISM)}, got {realism!r}")
        for name, value in (("dead", dead_fraction), ("stuck", stuck_fraction)):
            if not 0.0 <= value <= 1.0:
                raise GroundTruthError(f"{name} fraction must be within 0..1, got {value}")
        if not math.isfinite(crosstalk) or abs(crosstalk) > 1.0:
            raise GroundTruthError(f"crosstalk must be a fraction of the gain within -1..1, got {crosstalk}")
        rng = np.random.default_rng(seed)
        n = n_cells
        alpha = rng.normal(0.30, 0.03, n).clip(0.15, None)
        v0 = rng.normal(0.0, 0.15, n).clip(-0.5, 0.5)
        gamma0 = 1.0e9 * np.exp(rng.normal(0.0, 0.25, n))
        barrier = rng.normal(0.25, 0.025, n).clip(0.1, None)
        amp = rng.normal(5.0e-3, 0.75e-3, n).clip(2.0e-3, None)
        offset = rng.normal(0.0, 2.0e-3, n)
        dead = np.zeros(n, dtype=bool)
        stuck = np.zeros(n, dtype=np.int8)
        n_dead = int(round(dead_fraction * n))
        n_stuck = int(round(stuck_fraction * n))
        if n_dead + n_stuck:
            chosen = rng.choice(n, size=min(n, n_dead + n_stuck), replace=False)
            dead[chosen[:n_dead]] = True
            stuck[chosen[n_dead:]] = rng.choice(np.array([-1, 1], dtype=np.int8), size=len(chosen) - n_dead)
        xt = np.zeros((n, n))
        if crosstalk:
            for i in range(n):
                for j in (i - 1, i + 1):
                    if 0 <= j < n:
                        xt[i, j] = crosstalk * 0.30 * rng.uniform(0.5, 1.5)
        grid_shape = None
        if topology == "grid":
            side = int(round(np.sqrt(n)))
            if side * side != n:
                raise GroundTruthError(f"a grid chip needs a square cell count, got {n}")
            grid_shape = (side, side)
        pairs = _coupler_pairs(n, topology, grid_shape)
        couplers = Couplers(
            pairs=pairs,
            kappa_K_per_V=rng.normal(0.05, 0.005, len(pairs)),
            vc0_V=rng.normal(0.0, 0.01, len(pairs)),  # near-zero idle coupling at 0 V
        )
        truth = cls(
            n_cells=n,
            cells=Cells(alpha, v0, gamma0, barrier, amp, offset, dead, stuck),
            topology=topology,
            grid_shape=grid_shape,
            crosstalk_K_per_V=xt,
            couplers=couplers,
            seed=seed,
        )
        if realism == "realistic":
            truth.set_realism(realism_draws.draw_sections(seed, n, len(pairs)), "<drawn>")
        return truth

    def set_realism(self, sections: dict[str, Any], source: str) -> None:
        """Make this chip realistic with ``sections`` (as in the JSON file; range-checked),
        e.g. :func:`labstack.sim.realism.draw_sections` of its seed."""
        parsed = _parse_sections(sections, source, self.n_cells, self.n_couplers, strict=True)
        for key, value in parsed.items():
            setattr(self, key, value)
        self.realism = "realistic"

    # --------------------------------------------------------------------- I/O
    def to_dict(self) -> dict[str, Any]:
        cells = {k: np.asarray(v).tolist() for k, v in asdict(self.cells).items()}
        couplers = self.couplers or Couplers(np.zeros((0, 2), int), np.zeros(0), np.zeros(0))
        xt = self.crosstalk_K_per_V if self.crosstalk_K_per_V is not None else np.zeros((self.n_cells,) * 2)
        n, m = self.n_cells, self.n_couplers
        dac = asdict(self.dac)
        dac["bias_line_tau_s"] = _padded(self.dac.bias_line_tau_s, n)
        dac["coupler_line_tau_s"] = _padded(self.dac.coupler_line_tau_s, m)
        drift = asdict(self.drift)
        drift["v0_walk_V_per_sqrt_s"] = _padded(self.drift.v0_walk_V_per_sqrt_s, n)
        drift["alpha_walk_per_sqrt_s"] = _padded(self.drift.alpha_walk_per_sqrt_s, n)
        return {
            "format": FORMAT,
            "realism": self.realism,
            "seed": self.seed,
            "n_cells": self.n_cells,
            "topology": self.topology,
            "grid_shape": list(self.grid_shape) if self.grid_shape else None,
            "cells": cells,
            "crosstalk_K_per_V": np.asarray(xt).tolist(),
            "couplers": {
                "pairs": np.asarray(couplers.pairs).tolist(),
                "kappa_K_per_V": np.asarray(couplers.kappa_K_per_V).tolist(),
                "vc0_V": np.asarray(couplers.vc0_V).tolist(),
            },
            "noise": asdict(self.noise),
            "amplifier": asdict(self.amplifier),
            "cryostat": asdict(self.cryostat),
            "readout_crosstalk": _padded(self.readout_crosstalk, max(n - 1, 0)),
            "dac": dac,
            "thermometry": {
                "scanner": self.thermometry.scanner,
                "sensors": {k: asdict(v) for k, v in self.thermometry.sensors.items()},
            },
            "drift": drift,
            "dynamics": asdict(self.dynamics),
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> GroundTruth:
        """A chip from its JSON document; every field is range-checked, errors name ``source`` and key."""
        fmt = data.get("format")
        if fmt not in (FORMAT, FORMAT_V1):
            raise GroundTruthError(
                f"{source}: key 'format' must be '{FORMAT}' (or '{FORMAT_V1}'), got {fmt!r}"
            )
        strict = fmt == FORMAT
        bad = _Checker(source)
        raw_n = bad.need(data, "n_cells", "")
        if isinstance(raw_n, bool) or not isinstance(raw_n, int | float) or raw_n != int(raw_n) or raw_n < 1:
            raise GroundTruthError(f"{source}: key 'n_cells' must be a whole number >= 1, got {raw_n!r}")
        n = int(raw_n)
        topology = str(data.get("topology", "chain")) if not strict else str(bad.need(data, "topology", ""))
        if topology not in ("none", "chain", "grid"):
            raise GroundTruthError(f"{source}: key 'topology' must be none, chain or grid, got {topology!r}")
        grid = data.get("grid_shape")
        if grid is not None:
            if not (isinstance(grid, list) and len(grid) == 2 and all(isinstance(g, int) and g > 0 for g in grid)):
                raise GroundTruthError(f"{source}: key 'grid_shape' must be [rows, cols], got {grid!r}")
            if grid[0] * grid[1] < n:
                raise GroundTruthError(f"{source}: key 'grid_shape' {grid} holds fewer than {n} cells")
        cells_in = bad.need(data, "cells", "")
        if not isinstance(cells_in, dict):
            raise GroundTruthError(f"{source}: key 'cells' must be an object of per-cell lists")
        arrays: dict[str, np.ndarray] = {}
        for name, (low, high) in CELL_RANGES.items():
            arrays[name] = bad.array(cells_in, name, "cells.", (n,), low, high)
        dead = bad.need(cells_in, "dead", "cells.")
        if not isinstance(dead, list) or len(dead) != n or not all(isinstance(d, bool) or d in (0, 1) for d in dead):
            raise GroundTruthError(f"{source}: key 'cells.dead' must be {n} booleans")
        stuck = bad.need(cells_in, "stuck", "cells.")
        if not isinstance(stuck, list) or len(stuck) != n or not all(s in (-1, 0, 1) and not isinstance(s, bool) for s in stuck):
            raise GroundTruthError(f"{source}: key 'cells.stuck' must be {n} values of -1, 0 or +1")
        arrays["dead"] = np.asarray(dead, dtype=bool)
        arrays["stuck"] = np.asarray(stuck, dtype=np.int8)
        if strict or data.get("crosstalk_K_per_V") is not None:
            xt = bad.array(data, "crosstalk_K_per_V", "", (n, n), -100.0, 100.0)
        else:
            xt = np.zeros((n, n))
        if strict or data.get("couplers") is not None:
            cp = bad.need(data, "couplers", "")
            if not isinstance(cp, dict):
                raise GroundTruthError(f"{source}: key 'couplers' must be an object")
            pairs_raw = bad.need(cp, "pairs", "couplers.")
            try:
                pairs = np.asarray(pairs_raw, dtype=float).reshape(-1, 2)
            except (TypeError, ValueError):
                raise GroundTruthError(f"{source}: key 'couplers.pairs' must be a list of [i, j] pairs") from None
            if pairs.size and (not np.all(np.isfinite(pairs)) or np.any(pairs != np.round(pairs))):
                raise GroundTruthError(f"{source}: key 'couplers.pairs' must hold whole cell numbers")
            pairs = pairs.astype(int)
            if pairs.size and (pairs.min() < 0 or pairs.max() >= n):
                raise GroundTruthError(f"{source}: key 'couplers.pairs' names a cell outside 0..{n - 1}")
            m = len(pairs)
            kappa = bad.array(cp, "kappa_K_per_V", "couplers.", (m,), -100.0, 100.0)
            vc0 = bad.array(cp, "vc0_V", "couplers.", (m,), -10.0, 10.0)
        else:
            pairs, kappa, vc0 = np.zeros((0, 2), int), np.zeros(0), np.zeros(0)
        realism = str(bad.need(data, "realism", "")) if strict else "ideal"
        if realism not in REALISM:
            raise GroundTruthError(f"{source}: key 'realism' must be one of {', '.join(REALISM)}, got {realism!r}")
        seed = data.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise GroundTruthError(f"{source}: key 'seed' must be a whole number or null, got {seed!r}")
        truth = cls(
            n_cells=n,
            cells=Cells(**arrays),
            topology=topology,
            grid_shape=tuple(grid) if grid else None,
            crosstalk_K_per_V=xt,
            couplers=Couplers(pairs, kappa, vc0),
            seed=seed,
            realism=realism,
        )
        sections = _parse_sections(data, source, n, len(pairs), strict=strict)
        for key, value in sections.items():
            setattr(truth, key, value)
        return truth

    @classmethod
    def load(cls, path: str | Path) -> GroundTruth:
        path = Path(path)
        try:
            text = path.read_text()
            data = json.loads(text)
        except FileNotFoundError:
            raise GroundTruthError(f"{path}: no such ground-truth file") from None
        except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
            raise GroundTruthError(f"{path}: cannot read the ground-truth file ({exc})") from None
        except json.JSONDecodeError as exc:
            raise GroundTruthError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(data, dict):
            raise GroundTruthError(f"{path}: top level must be a JSON object")
        try:
            return cls.from_dict(data, source=str(path))
        except GroundTruthError as exc:
            raise GroundTruthError(_with_line(str(exc), str(path), text)) from None


# ----------------------------------------------------------------- checking
class _Checker:
    """Reads keys of a JSON document, naming the file and key in every error."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, why: str) -> GroundTruthError:
        return GroundTruthError(f"{self.source}: key '{key}' {why}")

    def need(self, mapping: Any, key: str, where: str) -> Any:
        if not isinstance(mapping, dict) or key not in mapping:
            raise GroundTruthError(f"{self.source}: missing key '{where}{key}'")
        return mapping[key]

    def number(self, mapping: Any, key: str, where: str, low: float, high: float) -> float:
        value = self.need(mapping, key, where)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(where + key, f"must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise self.fail(where + key, f"must be finite, got {value}")
        if not low <= value <= high:
            raise self.fail(where + key, f"is {value:g}, outside its range {low:g} .. {high:g}")
        return value

    def array(self, mapping: Any, key: str, where: str, shape: tuple[int, ...], low: float, high: float) -> np.ndarray:
        raw = self.need(mapping, key, where)
        try:
            values = np.asarray(raw, dtype=float)
        except (TypeError, ValueError):
            raise self.fail(where + key, "must be a list of numbers") from None
        if raw is None or (isinstance(raw, list) and any(isinstance(v, bool) for v in np.ravel(np.asarray(raw, dtype=object)))):
            raise self.fail(where + key, "must be a list of numbers")
        if values.shape != shape:
            what = f"{shape[0]} entries" if len(shape) == 1 else "x".join(map(str, shape))
            raise self.fail(where + key, f"has shape {values.shape}, expected {what} (n_cells is the reference)")
        if not np.all(np.isfinite(values)):
            index = int(np.flatnonzero(~np.isfinite(values.ravel()))[0])
            raise self.fail(where + key, f"entry {index} is {values.ravel()[index]}, not a finite number")
        outside = (values < low) | (values > high)
        if np.any(outside):
            index = int(np.flatnonzero(outside.ravel())[0])
            raise self.fail(where + key, f"entry {index} is {values.ravel()[index]:g}, outside its range {low:g} .. {high:g}")
        return values

    def dataclass(self, mapping: Any, key: str, klass: type, *, required: bool, where: str = "") -> Any:
        """A section of scalar fields; a missing field is an error only when ``required``.

        ``where`` is the path of ``mapping`` in the document (``"thermometry.sensors."``),
        so that errors name the full key.
        """
        if key not in mapping and not required:
            return klass()
        section = self.need(mapping, key, where)
        key = where + key
        if not isinstance(section, dict):
            raise self.fail(key, "must be an object")
        known = {f.name for f in fields(klass)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise self.fail(f"{key}.{unknown[0]}", f"is not a field of '{key}' (fields: {', '.join(sorted(known))})")
        values: dict[str, Any] = {}
        for f in fields(klass):
            if "range" not in f.metadata:
                continue
            if f.name not in section and not required:
                continue
            low, high = f.metadata["range"]
            values[f.name] = self.number(section, f.name, f"{key}.", low, high)
            if f.type in ("int", int):
                if values[f.name] != int(values[f.name]):
                    raise self.fail(f"{key}.{f.name}", "must be a whole number")
                values[f.name] = int(values[f.name])
        return klass(**values)


def _parse_sections(data: dict[str, Any], source: str, n: int, m: int, *, strict: bool) -> dict[str, Any]:
    """The fridge, readout and realism sections of a document, checked."""
    bad = _Checker(source)
    out: dict[str, Any] = {
        "noise": bad.dataclass(data, "noise", Noise, required=strict),
        "amplifier": bad.dataclass(data, "amplifier", Amplifier, required=strict),
        "cryostat": bad.dataclass(data, "cryostat", CryostatTruth, required=strict),
    }
    cryo_in = data.get("cryostat", {})
    if strict or "stage_temperatures_K" in cryo_in:
        stages = bad.need(cryo_in, "stage_temperatures_K", "cryostat.")
        defaults = CryostatTruth().stage_temperatures_K
        if not isinstance(stages, dict) or set(stages) != set(defaults):
            raise bad.fail("cryostat.stage_temperatures_K", f"must name the stages {', '.join(defaults)}")
        out["cryostat"].stage_temperatures_K = {
            s: bad.number(stages, s, "cryostat.stage_temperatures_K.", 1e-3, 400.0) for s in defaults
        }
    if not strict:
        return out
    out["readout_crosstalk"] = bad.array(data, "readout_crosstalk", "", (max(n - 1, 0),), 0.0, 0.5)
    dac = bad.dataclass(data, "dac", DacTruth, required=True)
    dac_in = data["dac"]
    dac.bias_line_tau_s = bad.array(dac_in, "bias_line_tau_s", "dac.", (n,), 0.0, 100.0)
    dac.coupler_line_tau_s = bad.array(dac_in, "coupler_line_tau_s", "dac.", (m,), 0.0, 100.0)
    out["dac"] = dac
    therm_in = bad.need(data, "thermometry", "")
    scanner = bad.need(therm_in, "scanner", "thermometry.")
    if not isinstance(scanner, bool):
        raise bad.fail("thermometry.scanner", f"must be true or false, got {scanner!r}")
    sensors_in = bad.need(therm_in, "sensors", "thermometry.")
    if not isinstance(sensors_in, dict) or set(sensors_in) != set(realism_draws.SENSORS):
        raise bad.fail("thermometry.sensors", f"must name the sensors {', '.join(realism_draws.SENSORS)}")
    sensors = {
        name: bad.dataclass(sensors_in, name, Sensor, required=True, where="thermometry.sensors.")
        for name in realism_draws.SENSORS
    }
    out["thermometry"] = ThermometryTruth(scanner=scanner, sensors=sensors)
    drift = bad.dataclass(data, "drift", DriftTruth, required=True)
    drift_in = data["drift"]
    drift.v0_walk_V_per_sqrt_s = bad.array(drift_in, "v0_walk_V_per_sqrt_s", "drift.", (n,), 0.0, 1.0)
    drift.alpha_walk_per_sqrt_s = bad.array(drift_in, "alpha_walk_per_sqrt_s", "drift.", (n,), 0.0, 1.0)
    if drift.jump_min_V > drift.jump_max_V:
        raise bad.fail("drift.jump_min_V", f"({drift.jump_min_V:g}) exceeds drift.jump_max_V ({drift.jump_max_V:g})")
    out["drift"] = drift
    dyn_in = bad.need(data, "dynamics", "")
    bounded = bad.need(dyn_in, "bounded_kramers", "dynamics.")
    if not isinstance(bounded, bool):
        raise bad.fail("dynamics.bounded_kramers", f"must be true or false, got {bounded!r}")
    out["dynamics"] = DynamicsTruth(bounded_kramers=bounded)
    return out


def _padded(values: np.ndarray, size: int) -> list[float]:
    """``values`` as a list of ``size`` numbers (an ideal chip's empty array as zeros)."""
    arr = np.asarray(values, dtype=float)
    return (arr if arr.size == size else np.zeros(size)).tolist()


def _with_line(message: str, source: str, text: str) -> str:
    """Add the line of the key a message names (``key 'cells.v0_V'``) after the file name."""
    match = re.search(r"key '([^']+)'", message)
    if not match or not message.startswith(source + ":"):
        return message
    *parents, last = match.group(1).split(".")
    start = 0
    for part in parents:  # the key's own line, under its parents
        found = text.find(f'"{part}"', start)
        start = found if found >= 0 else start
    found = text.find(f'"{last}"', start)
    if found < 0:  # a missing key: point at its parent
        found = start
    line = text.count("\n", 0, found) + 1
    return f"{source}:{line}:{message[len(source) + 1:]}"


def _coupler_pairs(n: int, topology: str, grid_shape: tuple[int, int] | None) -> np.ndarray:
    if topology == "none":
        return np.zeros((0, 2), dtype=int)
    if topology == "chain":
        return np.array([[i, i + 1] for i in range(n - 1)], dtype=int).reshape(-1, 2)
    if topology == "grid":
        assert grid_shape is not None
        rows, cols = grid_shape
        pairs = []
        for r in range(rows):
            for c in range(cols):
                i = r * cols + c
                if c + 1 < cols:
                    pairs.append([i, i + 1])
                if r + 1 < rows:
                    pairs.append([i, i + cols])
        return np.array(pairs, dtype=int).reshape(-1, 2)
    raise GroundTruthError(f"unknown topology {topology!r}: use 'none', 'chain' or 'grid'")
