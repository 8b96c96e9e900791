"""Ground truth of a virtual chip: the numbers the simulator knows and calibrations must find.

A :class:`GroundTruth` is drawn from a seed (:meth:`GroundTruth.from_seed`) or read
from a JSON file (:meth:`GroundTruth.load`). ``labstack sim ground-truth --seed S
--cells N`` writes one.

JSON format (``format: "labstack-ground-truth/1"``), all quantities in SI units
except energies, which are in kelvin (k_B = 1) as is usual for these chips::

    {
      "format": "labstack-ground-truth/1",
      "seed": 1234,                         # seed the chip was drawn from (null if hand-made)
      "n_cells": 16,
      "topology": "chain",                  # "none" | "chain" | "grid"
      "grid_shape": null,                   # [rows, cols] for "grid"
      "cells": {                            # one list entry per cell, index = cell number
        "alpha_K_per_V": [...],             # bias gain: h_i = alpha_i (V_i - V0_i) + sum_j Xt_ij V_j
        "v0_V": [...],                      # bias offset
        "gamma0_Hz": [...],                 # Kramers attempt rate
        "barrier_K": [...],                 # barrier height Delta U
        "readout_amp_V": [...],             # amplifier-output signal: state +1 reads offset + amp, -1 reads offset - amp
        "readout_offset_V": [...],
        "dead": [...],                      # a dead cell gives no signal (amp 0): only amplifier noise
        "stuck": [...]                      # 0 = healthy, +1 / -1 = frozen in that state
      },
      "crosstalk_K_per_V": [[...]],         # Xt, N x N, zero diagonal
      "couplers": {"pairs": [[i, j], ...], "kappa_K_per_V": [...], "vc0_V": [...]},
      "noise": {"t_excess_K": 0.03, "t_eff_exponent": 2.0},
      "amplifier": {"gain": 1e4, "noise_temperature_K": 3.0, "bandwidth_Hz": 1e6,
                    "source_impedance_ohm": 50.0, "drift_V_per_sqrt_s": 2e-6},
      "cryostat": {"mc_base_K": 0.010, "mc_heat_capacity_J_per_K": ..., "mc_cooling_W_per_K2": ...,
                   "chip_tau_s": 30.0, "heater_resistance_ohm": 120.0, ...}
    }

Effective temperature: ``T_eff = (T_chip**n + t_excess**n) ** (1/n)`` with ``n = t_eff_exponent``.
An isolated cell has ``P(+1) = 1 / (1 + exp(-2 h / T_eff))``: an S-curve in its
bias voltage of logistic width ``w = T_eff / (2 alpha)`` volts.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "labstack-ground-truth/1"


class GroundTruthError(ValueError):
    """A ground-truth file that cannot be used; the message names the file and key."""


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
    t_excess_K: float = 0.030
    t_eff_exponent: float = 2.0

    def t_eff(self, t_chip_K: float) -> float:
        n = self.t_eff_exponent
        return float((t_chip_K**n + self.t_excess_K**n) ** (1.0 / n))


@dataclass
class Amplifier:
    gain: float = 1.0e4
    noise_temperature_K: float = 3.0
    bandwidth_Hz: float = 1.0e6
    source_impedance_ohm: float = 50.0
    drift_V_per_sqrt_s: float = 2.0e-6

    @property
    def noise_rms_V(self) -> float:
        """Output-referred rms noise: gain * sqrt(4 k_B T_n R B) (Johnson-equivalent)."""
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
    """Lumped dilution refrigerator. Mixing chamber: C dT/dt = P_heater + P_load - a T^2."""

    mc_cooling_W_per_K2: float = 1.0e-2
    mc_load_W: float = 1.0e-6  # gives a 10 mK base temperature
    mc_heat_capacity_J_per_K: float = 0.2
    chip_tau_s: float = 30.0
    heater_resistance_ohm: float = 120.0
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

    # ----------------------------------------------------------------- derived
    def scurve_width_V(self, t_chip_K: float | None = None) -> np.ndarray:
        """Logistic width T_eff / (2 alpha) of each cell's S-curve at a chip temperature."""
        t_chip = self.cryostat.mc_base_K if t_chip_K is None else t_chip_K
        return self.noise.t_eff(t_chip) / (2.0 * self.cells.alpha_K_per_V)

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
    ) -> GroundTruth:
        """Draw a chip with realistic spreads.

        Spreads: gain 10 % (fabrication), offsets 0.15 V rms (trapped flux), barrier
        10 %, attempt rate a factor ~1.3, readout amplitude 15 %. ``crosstalk`` is the
        nearest-line DAC crosstalk as a fraction of the mean gain (0 for a clean chip).
        """
        if n_cells < 1:
            raise GroundTruthError(f"n_cells must be >= 1, got {n_cells}")
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
        return cls(
            n_cells=n,
            cells=Cells(alpha, v0, gamma0, barrier, amp, offset, dead, stuck),
            topology=topology,
            grid_shape=grid_shape,
            crosstalk_K_per_V=xt,
            couplers=couplers,
            seed=seed,
        )

    # --------------------------------------------------------------------- I/O
    def to_dict(self) -> dict[str, Any]:
        cells = {k: np.asarray(v).tolist() for k, v in asdict(self.cells).items()}
        couplers = self.couplers or Couplers(np.zeros((0, 2), int), np.zeros(0), np.zeros(0))
        xt = self.crosstalk_K_per_V if self.crosstalk_K_per_V is not None else np.zeros((self.n_cells,) * 2)
        return {
            "format": FORMAT,
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
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> GroundTruth:
        def need(mapping: dict[str, Any], key: str, where: str) -> Any:
            if key not in mapping:
                raise GroundTruthError(f"{source}: missing key '{where}{key}'")
            return mapping[key]

        if data.get("format") != FORMAT:
            raise GroundTruthError(
                f"{source}: key 'format' must be '{FORMAT}', got {data.get('format')!r}"
            )
        try:
            n = int(need(data, "n_cells", ""))
        except (TypeError, ValueError):
            raise GroundTruthError(f"{source}: key 'n_cells' must be a whole number, got {data['n_cells']!r}") from None
        cells_in = need(data, "cells", "")
        if not isinstance(cells_in, dict):
            raise GroundTruthError(f"{source}: key 'cells' must be an object of per-cell lists")
        arrays: dict[str, np.ndarray] = {}
        for name, dtype in (
            ("alpha_K_per_V", float),
            ("v0_V", float),
            ("gamma0_Hz", float),
            ("barrier_K", float),
            ("readout_amp_V", float),
            ("readout_offset_V", float),
            ("dead", bool),
            ("stuck", np.int8),
        ):
            try:
                values = np.asarray(need(cells_in, name, "cells."), dtype=dtype)
            except (TypeError, ValueError) as exc:
                raise GroundTruthError(f"{source}: key 'cells.{name}': {exc}") from None
            if values.shape != (n,):
                raise GroundTruthError(
                    f"{source}: key 'cells.{name}' has {values.size} entries, n_cells is {n}"
                )
            arrays[name] = values
        xt = np.asarray(data.get("crosstalk_K_per_V") or np.zeros((n, n)), dtype=float)
        if xt.shape != (n, n):
            raise GroundTruthError(f"{source}: key 'crosstalk_K_per_V' must be {n}x{n}, got {xt.shape}")
        cp = data.get("couplers") or {"pairs": [], "kappa_K_per_V": [], "vc0_V": []}
        pairs = np.asarray(cp.get("pairs", []), dtype=int).reshape(-1, 2)
        if pairs.size and (pairs.min() < 0 or pairs.max() >= n):
            raise GroundTruthError(f"{source}: key 'couplers.pairs' names a cell outside 0..{n - 1}")
        try:
            noise = Noise(**data.get("noise", {}))
            amplifier = Amplifier(**data.get("amplifier", {}))
            cryostat = CryostatTruth(**data.get("cryostat", {}))
        except TypeError as exc:
            raise GroundTruthError(f"{source}: {exc}") from None
        grid = data.get("grid_shape")
        return cls(
            n_cells=n,
            cells=Cells(**arrays),
            topology=str(data.get("topology", "chain")),
            grid_shape=tuple(grid) if grid else None,
            crosstalk_K_per_V=xt,
            couplers=Couplers(
                pairs,
                np.asarray(cp.get("kappa_K_per_V", []), dtype=float),
                np.asarray(cp.get("vc0_V", []), dtype=float),
            ),
            noise=noise,
            amplifier=amplifier,
            cryostat=cryostat,
            seed=data.get("seed"),
        )

    @classmethod
    def load(cls, path: str | Path) -> GroundTruth:
        path = Path(path)
        try:
            text = path.read_text()
            data = json.loads(text)
        except FileNotFoundError:
            raise GroundTruthError(f"{path}: no such ground-truth file") from None
        except json.JSONDecodeError as exc:
            raise GroundTruthError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(data, dict):
            raise GroundTruthError(f"{path}: top level must be a JSON object")
        try:
            return cls.from_dict(data, source=str(path))
        except GroundTruthError as exc:
            raise GroundTruthError(_with_line(str(exc), str(path), text)) from None


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
