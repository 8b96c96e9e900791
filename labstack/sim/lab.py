"""The virtual lab: chip, readout chain and cryostat on one virtual clock, wired to DACs.

Pure physics and bookkeeping; the SCPI instruments in
:mod:`labstack.sim.instruments` are thin adapters over this object.

Wiring (fixed, so that station files can name it): bias line of cell ``i`` on
DAC ``i // 24 + 1`` channel ``i % 24 + 1``; couplers on the DACs after the bias
DACs, coupler ``k`` on channel ``k % 24 + 1`` of DAC ``n_bias_dacs + k // 24 + 1``.
DACs are numbered from 1 (``qdac1``, ``qdac2``, ...).

Time passes only through :meth:`VirtualLab.sleep` and acquisitions; the cells
are brought up to date lazily (before any field change and before sampling), so
setting 64 DAC channels costs no physics until something is measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from labstack.clock import VirtualClock
from labstack.sim.cryostat import Cryostat
from labstack.sim.dynamics import CellEnsemble, CouplingGraph
from labstack.sim.faults import DEFAULT_KINDS, FaultConfigError, FaultInjector, parse_kinds
from labstack.sim.readout import ReadoutChain
from labstack.sim.truth import GroundTruth, GroundTruthError

DAC_CHANNELS = 24
DEFAULT_SEED = 1234
DEFAULT_CELLS = 16


@dataclass(frozen=True)
class Wiring:
    n_cells: int
    n_couplers: int

    @property
    def n_bias_dacs(self) -> int:
        return max(1, -(-self.n_cells // DAC_CHANNELS))

    @property
    def n_coupler_dacs(self) -> int:
        return -(-self.n_couplers // DAC_CHANNELS)

    @property
    def n_dacs(self) -> int:
        return self.n_bias_dacs + self.n_coupler_dacs

    def bias_line(self, cell: int) -> tuple[int, int]:
        """(dac number from 1, channel from 1) of a cell's bias."""
        return cell // DAC_CHANNELS + 1, cell % DAC_CHANNELS + 1

    def coupler_line(self, k: int) -> tuple[int, int]:
        return self.n_bias_dacs + k // DAC_CHANNELS + 1, k % DAC_CHANNELS + 1

    def target(self, dac: int, channel: int) -> tuple[str, int] | None:
        """What a DAC channel drives: ("bias", cell), ("coupler", k) or None (unwired)."""
        index = (dac - 1) * DAC_CHANNELS + (channel - 1)
        if dac <= self.n_bias_dacs:
            return ("bias", index) if index < self.n_cells else None
        k = index - self.n_bias_dacs * DAC_CHANNELS
        return ("coupler", k) if k < self.n_couplers else None


class VirtualLab:
    """Everything the simulator knows. ``truth`` is hidden from calibrations."""

    #: longest stretch of time integrated at fixed temperature before re-reading the fridge
    THERMAL_CHUNK_S = 5.0

    def __init__(
        self, truth: GroundTruth, seed: int | None = None, *, start_utc: datetime | None = None
    ) -> None:
        self.truth = truth
        self.seed = seed if seed is not None else (truth.seed if truth.seed is not None else 0)
        streams = np.random.SeedSequence(self.seed).spawn(4)
        # start_utc: the calendar time of lab time 0; a lab service restarted on the same
        # directory continues the calendar, so calibration ages stay meaningful
        self.clock = VirtualClock(start_utc)
        self.cells = CellEnsemble(
            truth.cells.gamma0_Hz,
            truth.cells.barrier_K,
            truth.cells.stuck,
            np.random.default_rng(streams[0]),
        )
        self.readout = ReadoutChain(truth.cells, truth.amplifier, np.random.default_rng(streams[1]))
        self.cryostat = Cryostat(truth.cryostat, np.random.default_rng(streams[2]))
        self.instrument_rng = np.random.default_rng(streams[3])
        n_couplers = truth.couplers.n if truth.couplers is not None else 0
        self.wiring = Wiring(truth.n_cells, n_couplers)
        self.bias_V = np.zeros(truth.n_cells)
        self.coupler_V = np.zeros(n_couplers)
        self._graph: CouplingGraph | None = None
        self._graph_dirty = True
        self._cells_time = 0.0
        self.faults = FaultInjector(
            self.clock.now, on_excursion=self._excursion, on_cell_death=self._kill_cell
        )

    def configure_faults(self, rate: float, seed: int = 0, kinds: tuple[str, ...] = DEFAULT_KINDS) -> None:
        """Random faults: each message fails with probability ``rate`` (see :mod:`labstack.sim.faults`)."""
        self.faults = FaultInjector(
            self.clock.now, rate=rate, seed=seed, kinds=kinds,
            on_excursion=self._excursion, on_cell_death=self._kill_cell,
        )

    def _excursion(self, delta_K: float) -> None:
        self.cryostat.t_mc += delta_K

    def _kill_cell(self, cell: int | None) -> int | None:
        alive = np.flatnonzero(self.readout.amp != 0)
        if cell is None:
            if alive.size == 0:
                return None
            cell = int(alive[int(self.instrument_rng.integers(alive.size))])
        self._catch_up()
        self.readout.amp[cell] = 0.0
        return cell

    # ------------------------------------------------------------ construction
    @classmethod
    def from_description(cls, description: str, *, start_utc: datetime | None = None) -> VirtualLab:
        """Build a lab from the part of a VISA library path before ``@labstack``.

        ``""`` is the default chip (seed 1234, 16 cells, chain); a path to a
        ``.json`` ground-truth file loads that chip; otherwise comma-separated
        ``key=value`` pairs among ``seed``, ``cells``, ``topology``, ``dead``
        (fraction), ``stuck`` (fraction), ``crosstalk``, ``faults`` (probability
        per message), ``fault_seed``, ``fault_kinds`` (``+``-separated, see
        :mod:`labstack.sim.faults`) and ``instance``, a free label that makes a
        separate lab of the same chip (PyVISA shares one lab per description string).
        ``truth=<file.json>`` loads that chip and combines with ``instance`` (and
        ``seed``, which then seeds only the noise), so a replay can get a fresh lab of
        a chip stored in a file.
        """
        truth, seed = cls.truth_from_description(description)
        lab = cls(truth, seed=seed, start_utc=start_utc)
        options = _options(description)
        try:
            rate = float(options.get("faults", 0.0))
            fault_seed = int(options.get("fault_seed", 0))
            kinds = parse_kinds(options["fault_kinds"]) if "fault_kinds" in options else DEFAULT_KINDS
            if rate or "fault_kinds" in options:
                lab.configure_faults(rate, fault_seed, kinds)
        except (ValueError, FaultConfigError) as exc:
            raise GroundTruthError(f"virtual lab description {description!r}: {exc}") from None
        return lab

    @staticmethod
    def truth_from_description(description: str) -> tuple[GroundTruth, int | None]:
        """The chip (and seed) a description names, without building a lab."""
        text = description.strip()
        if text.endswith(".json"):
            return GroundTruth.load(Path(text)), None
        options = _options(text)
        allowed = {
            "seed", "cells", "topology", "dead", "stuck", "crosstalk", "instance", "truth",
            "faults", "fault_seed", "fault_kinds",
        }
        unknown = set(options) - allowed
        if unknown:
            raise GroundTruthError(
                f"virtual lab description {text!r}: unknown key(s) {sorted(unknown)}; use {sorted(allowed)}"
            )
        if "truth" in options:
            loaded = GroundTruth.load(Path(options["truth"]))
            return loaded, int(options["seed"]) if "seed" in options else None
        try:
            seed = int(options.get("seed", DEFAULT_SEED))
            truth = GroundTruth.from_seed(
                seed,
                int(options.get("cells", DEFAULT_CELLS)),
                options.get("topology", "chain"),
                dead_fraction=float(options.get("dead", 0.0)),
                stuck_fraction=float(options.get("stuck", 0.0)),
                crosstalk=float(options.get("crosstalk", 0.0)),
            )
        except ValueError as exc:
            raise GroundTruthError(f"virtual lab description {text!r}: {exc}") from None
        return truth, seed

    # ----------------------------------------------------------------- physics
    def fields(self) -> np.ndarray:
        """External field h_i in kelvin from the bias voltages (crosstalk included)."""
        c = self.truth.cells
        h = c.alpha_K_per_V * (self.bias_V - c.v0_V)
        if self.truth.crosstalk_K_per_V is not None:
            h = h + self.truth.crosstalk_K_per_V @ self.bias_V
        return h

    def coupling_graph(self) -> CouplingGraph | None:
        cp = self.truth.couplers
        if cp is None or cp.n == 0:
            return None
        if self._graph_dirty:
            j = cp.kappa_K_per_V * (self.coupler_V - cp.vc0_V)
            self._graph = CouplingGraph.build(self.truth.n_cells, cp.pairs, j)
            self._graph_dirty = False
        return self._graph

    def t_eff(self) -> float:
        return self.truth.noise.t_eff(self.cryostat.t_chip)

    def _catch_up(self) -> None:
        """Evolve cells from their last update to now at the current fields."""
        lag = self.clock.now() - self._cells_time
        if lag > 0:
            self.cells.evolve(lag, self.fields(), self.t_eff(), self.coupling_graph())
            self._cells_time = self.clock.now()

    # ------------------------------------------------------------------- time
    def sleep(self, seconds: float, *, chunk_s: float | None = None) -> None:
        """Let simulated time pass: the fridge integrates, cells thermalize, offsets drift.

        ``chunk_s`` (default :attr:`THERMAL_CHUNK_S`) is how long cells run at one
        temperature; a served lab idling at high speed passes a longer one, since
        nothing it is asked depends on the fridge's finer steps (labstack.service).
        """
        if seconds < 0:
            raise ValueError(f"cannot sleep a negative time ({seconds} s)")
        step = self.THERMAL_CHUNK_S if chunk_s is None else float(chunk_s)
        if not step > 0:
            raise ValueError(f"chunk_s must be > 0, got {chunk_s}")
        self._catch_up()
        remaining = float(seconds)
        while remaining > 0:
            chunk = min(remaining, step)
            self.cryostat.advance(chunk, self.clock.now())
            self.clock.sleep(chunk)
            self.readout.advance(chunk)
            self.cells.evolve(chunk, self.fields(), self.t_eff(), self.coupling_graph())
            self._cells_time = self.clock.now()
            remaining -= chunk

    # ------------------------------------------------------------------- DACs
    def set_dac(self, dac: int, channel: int, volts: float) -> None:
        target = self.wiring.target(dac, channel)
        if target is None:
            return
        self._catch_up()
        kind, index = target
        if kind == "bias":
            self.bias_V[index] = volts
        else:
            self.coupler_V[index] = volts
            self._graph_dirty = True

    def set_coupler(self, k: int, volts: float) -> None:
        """Coupler ``k``'s line at ``volts``, whatever source drives it (a second DAC family)."""
        if not 0 <= k < self.coupler_V.size:
            return  # an output wired to nothing
        self._catch_up()
        self.coupler_V[k] = volts
        self._graph_dirty = True

    # ---------------------------------------------------------------- readout
    def acquire(self, n_samples: int, period: float, cells: np.ndarray | None = None) -> np.ndarray:
        """Sample every cell ``n_samples`` times, ``period`` s apart; (n_samples, n_cells) float32.

        Simulated time advances by ``n_samples * period``.
        """
        self._catch_up()
        spins = self.cells.sample(n_samples, period, self.fields(), self.t_eff(), self.coupling_graph())
        duration = n_samples * period
        self.cryostat.advance(duration, self.clock.now())
        self.clock.sleep(duration)
        self._cells_time = self.clock.now()
        volts = self.readout.voltages(spins, period)
        self.readout.advance(duration)
        if cells is not None:
            volts = volts[:, cells]
        return volts


def _options(description: str) -> dict[str, str]:
    """``key=value`` pairs of a lab description (empty for a ``.json`` path)."""
    text = description.strip()
    if text.endswith(".json"):
        return {}
    options: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise GroundTruthError(f"virtual lab description {text!r}: '{item}' is not key=value")
        options[key.strip()] = value.strip()
    return options
