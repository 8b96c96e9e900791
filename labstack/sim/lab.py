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

A realistic chip (``truth.realism == "realistic"``) adds, each in its own module:
DAC outputs that are quantised, slewed and filtered before they reach the chip
(:mod:`labstack.sim.dac`), offsets and gains that drift and jump
(:mod:`labstack.sim.drift`), bias lines that warm the mixing chamber, a readout
chain with 1/f noise, gain drift and crosstalk (:mod:`labstack.sim.readout`), and
thermometers behind a scanner (:mod:`labstack.sim.thermometry`, in the Lake Shore
adapter). Fields are taken from the DAC outputs at the time they act: an
acquisition that starts while a DAC is still settling is cut into stretches over
which no field moves by more than 1 % of ``T_eff``, each sampled at its own
fields; a wait is integrated at the fields of its end (the cells relax in
micro- to milliseconds). Because the chip moves, :meth:`VirtualLab.truth_at` gives
what it was at any lab time.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from labstack.clock import VirtualClock
from labstack.sim.cryostat import Cryostat
from labstack.sim.dac import FILTER_TAU_S, DacLines
from labstack.sim.drift import ChipDrift
from labstack.sim.dynamics import CellEnsemble, CouplingGraph
from labstack.sim.faults import DEFAULT_KINDS, FaultConfigError, FaultInjector, parse_kinds
from labstack.sim.readout import ReadoutChain
from labstack.sim.realism import draw_sections
from labstack.sim.truth import REALISM, GroundTruth, GroundTruthError

DAC_CHANNELS = 24
DEFAULT_SEED = 1234
DEFAULT_CELLS = 16
DEFAULT_REALISM = "realistic"
#: a DAC transient moves no field by more than this fraction of T_eff within one stretch
FIELD_TOLERANCE = 0.01
#: at most this many evaluation times per acquisition when cutting it into stretches
MAX_STRETCH_PROBES = 2000
#: a coupler line's output must move this far (V) before the coupling graph is rebuilt
COUPLER_REBUILD_V = 1e-7

DESCRIPTION_KEYS = (
    "seed", "cells", "topology", "dead", "stuck", "crosstalk", "instance", "truth",
    "faults", "fault_seed", "fault_kinds", "realism", "drift",
)


@dataclass(frozen=True)
class TruthAt:
    """What the chip and its readout were at one lab time (:meth:`VirtualLab.truth_at`)."""

    time: float
    v0_V: np.ndarray
    alpha_K_per_V: np.ndarray
    t_mc_K: float
    t_chip_K: float
    t_eff_K: float
    readout_amp_V: np.ndarray  # at the amplifier output, with the gain of then (0 for dead cells)
    readout_offset_V: np.ndarray
    #: the mixing chamber's base with the heater off and the bias lines as they were then
    mc_base_K: float = 0.0

    def scurve_width_V(self) -> np.ndarray:
        """Logistic width ``T_eff / (2 alpha)`` of each cell's S-curve then."""
        return self.t_eff_K / (2.0 * self.alpha_K_per_V)


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
        self,
        truth: GroundTruth,
        seed: int | None = None,
        *,
        start_utc: datetime | None = None,
        drift: bool = True,
    ) -> None:
        self.truth = truth
        self.seed = seed if seed is not None else (truth.seed if truth.seed is not None else 0)
        self.realistic = truth.realism == "realistic"
        # the first four streams are those of every lab before realism (spawn keys 0-3)
        streams = np.random.SeedSequence(self.seed).spawn(8)
        # start_utc: the calendar time of lab time 0; a lab service restarted on the same
        # directory continues the calendar, so calibration ages stay meaningful
        self.clock = VirtualClock(start_utc)
        self.cells = CellEnsemble(
            truth.cells.gamma0_Hz,
            truth.cells.barrier_K,
            truth.cells.stuck,
            np.random.default_rng(streams[0]),
            bounded=truth.dynamics.bounded_kramers,
        )
        self.readout = ReadoutChain(
            truth.cells, truth.amplifier, np.random.default_rng(streams[1]),
            realistic=self.realistic, crosstalk=truth.readout_crosstalk,
        )
        self.cryostat = Cryostat(truth.cryostat, np.random.default_rng(streams[2]))
        self.cryostat.record_history(0.0)
        self.instrument_rng = np.random.default_rng(streams[3])
        n_couplers = truth.couplers.n if truth.couplers is not None else 0
        self.wiring = Wiring(truth.n_cells, n_couplers)
        self.bias_V = np.zeros(truth.n_cells)
        self.coupler_V = np.zeros(n_couplers)
        self._graph: CouplingGraph | None = None
        self._graph_dirty = True
        self._graph_coupler_V = self.coupler_V.copy()
        self._cells_time = 0.0
        self.dacs: DacLines | None = None
        self.drift: ChipDrift | None = None
        self._dac_noise: np.ndarray | None = None
        #: rng of the thermometers' reading noise (used by the Lake Shore adapter)
        self.thermometer_rng = np.random.default_rng(streams[6])
        if self.realistic:
            d = truth.dac
            self.dacs = DacLines(
                np.concatenate([d.bias_line_tau_s, d.coupler_line_tau_s]),
                bits=d.resolution_bits,
                white_V_per_rtHz=d.white_V_per_rtHz,
                flicker_corner_Hz=d.flicker_corner_Hz,
                rng=np.random.default_rng(streams[4]),
            )
            self.drift = ChipDrift(
                truth.cells.v0_V, truth.cells.alpha_K_per_V, truth.drift,
                np.random.default_rng(streams[5]), enabled=drift,
            )
        self._readout_times = [0.0]
        self._readout_levels = [self.readout.levels()]
        self._bias_power_times = [0.0]
        self._bias_power = [0.0]
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
        a chip stored in a file. ``realism=ideal`` gives the ideal chip of that seed or
        file (``realistic``, the default, the chip with every effect of
        :mod:`labstack.sim.truth`); ``drift=off`` keeps a realistic chip's offsets and
        gains still.
        """
        truth, seed = cls.truth_from_description(description)
        options = _options(description)
        lab = cls(truth, seed=seed, start_utc=start_utc, drift=options.get("drift", "on") == "on")
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
        unknown = set(options) - set(DESCRIPTION_KEYS)
        if unknown:
            raise GroundTruthError(
                f"virtual lab description {text!r}: unknown key(s) {sorted(unknown)}; use {sorted(DESCRIPTION_KEYS)}"
            )
        realism = options.get("realism")
        if realism is not None and realism not in REALISM:
            raise GroundTruthError(
                f"virtual lab description {text!r}: realism={realism!r}; use one of {', '.join(REALISM)}"
            )
        if options.get("drift", "on") not in ("on", "off"):
            raise GroundTruthError(f"virtual lab description {text!r}: drift={options['drift']!r}; use on or off")
        if "truth" in options:
            loaded = GroundTruth.load(Path(options["truth"]))
            try:
                noise_seed = int(options["seed"]) if "seed" in options else None
            except ValueError as exc:
                raise GroundTruthError(f"virtual lab description {text!r}: {exc}") from None
            return _with_realism(loaded, realism, text), noise_seed
        try:
            seed = int(options.get("seed", DEFAULT_SEED))
            truth = GroundTruth.from_seed(
                seed,
                int(options.get("cells", DEFAULT_CELLS)),
                options.get("topology", "chain"),
                dead_fraction=float(options.get("dead", 0.0)),
                stuck_fraction=float(options.get("stuck", 0.0)),
                crosstalk=float(options.get("crosstalk", 0.0)),
                realism=realism or DEFAULT_REALISM,
            )
        except ValueError as exc:
            raise GroundTruthError(f"virtual lab description {text!r}: {exc}") from None
        return truth, seed

    @staticmethod
    def recorded_description(description: str) -> str:
        """``description`` as a run records it: its seed, size and realism level written out.

        A description without ``realism=`` means the default (realistic) chip today, so
        that is written out, and so are the default seed and cell count, so that a later
        change of defaults cannot change what a stored run replays; one that names a
        ground-truth file leaves the chip to the file. Runs stored before realism existed
        lack the key and replay as ideal chips (:func:`labstack.session.replay.fresh_lab`).
        """
        text = description.strip()
        options = _options(text)
        if text.endswith(".json") or "truth" in options:
            return text
        items = list(filter(None, (p.strip() for p in text.split(","))))
        defaults = (("seed", DEFAULT_SEED), ("cells", DEFAULT_CELLS), ("realism", DEFAULT_REALISM))
        return ",".join([*items, *(f"{k}={v}" for k, v in defaults if k not in options)])

    # ----------------------------------------------------------------- physics
    def fields(self) -> np.ndarray:
        """External field h_i in kelvin from the bias voltages (crosstalk included)."""
        c = self.truth.cells
        if self.drift is not None:
            h = self.drift.alpha * (self.bias_V - self.drift.v0)
        else:
            h = c.alpha_K_per_V * (self.bias_V - c.v0_V)
        if self.truth.crosstalk_K_per_V is not None:
            h = h + self.truth.crosstalk_K_per_V @ self.bias_V
        return h

    def _refresh(self, t: float, *, noise: bool = False) -> None:
        """Realistic chip: drift up to ``t`` and the DAC outputs the chip sees at ``t``.

        The DACs' sub-microvolt noise is drawn anew for acquisitions (``noise=True``) and
        held through waits, where it could not change what the cells do.
        """
        assert self.dacs is not None and self.drift is not None
        self.drift.update(self.clock.now())
        n = self.truth.n_cells
        out = self.dacs.output(t)
        if noise or self._dac_noise is None:
            self._dac_noise = self.dacs.noise(t)
        self.bias_V = out[:n] + self._dac_noise[:n]
        couplers = out[n:]  # their microvolt noise moves J by ~1e-8 K: left out
        if couplers.size and np.max(np.abs(couplers - self._graph_coupler_V)) > COUPLER_REBUILD_V:
            self.coupler_V = couplers
            self._graph_dirty = True

    def coupling_graph(self) -> CouplingGraph | None:
        cp = self.truth.couplers
        if cp is None or cp.n == 0:
            return None
        if self._graph_dirty:
            j = cp.kappa_K_per_V * (self.coupler_V - cp.vc0_V)
            self._graph = CouplingGraph.build(self.truth.n_cells, cp.pairs, j)
            self._graph_dirty = False
            self._graph_coupler_V = self.coupler_V.copy()
        return self._graph

    def t_eff(self) -> float:
        return self.truth.noise.t_eff(self.cryostat.t_chip)

    def _catch_up(self) -> None:
        """Evolve cells from their last update to now at the current fields."""
        lag = self.clock.now() - self._cells_time
        if lag > 0:
            if self.realistic:
                self._refresh(self.clock.now())
            self.cells.evolve(lag, self.fields(), self.t_eff(), self.coupling_graph())
            self._cells_time = self.clock.now()

    def _record_readout(self) -> None:
        self._readout_times.append(self.clock.now())
        self._readout_levels.append(self.readout.levels())

    # ------------------------------------------------------------------ truth
    def truth_at(self, t: float | None = None) -> TruthAt:
        """The chip, fridge and readout as the simulator had them at lab time ``t`` (default now).

        Exact, not interpolated, for what moves in steps (offsets, gains, readout levels:
        the values of the last update at or before ``t``); temperatures are linear
        between the fridge's 0.5 s control steps. Compare a fit with the truth at the
        time of its acquisition (a run's ``clock_start``, a point's ``<dim>_clock``).
        """
        now = self.clock.now()
        t = now if t is None else float(t)
        if t > now + 1e-9:
            raise ValueError(f"lab time {t} s is in the future (the lab is at {now} s)")
        c = self.truth.cells
        if self.drift is not None:
            self.drift.update(now)
            v0, alpha = self.drift.at(t)
        else:
            v0, alpha = c.v0_V.copy(), c.alpha_K_per_V.copy()
        t_mc, t_chip = self.cryostat.history_at(t)
        k = bisect.bisect_right(self._readout_times, t) - 1
        amp, offset = self._readout_levels[max(k, 0)]
        power = self._bias_power[max(bisect.bisect_right(self._bias_power_times, t) - 1, 0)]
        cryo = self.truth.cryostat
        return TruthAt(
            time=t, v0_V=v0, alpha_K_per_V=alpha, t_mc_K=float(t_mc), t_chip_K=float(t_chip),
            t_eff_K=self.truth.noise.t_eff(float(t_chip)), readout_amp_V=amp.copy(), readout_offset_V=offset.copy(),
            mc_base_K=float(np.sqrt((cryo.mc_load_W + power) / cryo.mc_cooling_W_per_K2)),
        )

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
            self._record_readout()
            if self.realistic:
                self._refresh(self.clock.now())
            self.cells.evolve(chunk, self.fields(), self.t_eff(), self.coupling_graph())
            self._cells_time = self.clock.now()
            remaining -= chunk

    # ------------------------------------------------------------------- DACs
    def set_dac(
        self, dac: int, channel: int, volts: float, *, slew_V_per_s: float = 2e7, filter_name: str = "high"
    ) -> None:
        """A DAC channel commanded to ``volts`` (its slew rate and output filter as the QDAC has them)."""
        target = self.wiring.target(dac, channel)
        if target is None:
            return
        self._catch_up()
        kind, index = target
        if self.dacs is not None:
            line = index if kind == "bias" else self.truth.n_cells + index
            self.dacs.command(
                line, volts, self.clock.now(), slew_V_per_s=slew_V_per_s, filter_tau_s=FILTER_TAU_S[filter_name]
            )
            self.cryostat.bias_power_W = self.truth.cryostat.bias_heating_W_per_V2 * float(
                np.sum(self.dacs.target**2)
            )
            self._bias_power_times.append(self.clock.now())
            self._bias_power.append(self.cryostat.bias_power_W)
            return  # the chip feels the new output as time passes (_refresh)
        if kind == "bias":
            self.bias_V[index] = volts
        else:
            self.coupler_V[index] = volts
            self._graph_dirty = True

    # ---------------------------------------------------------------- readout
    def acquire(self, n_samples: int, period: float, cells: np.ndarray | None = None) -> np.ndarray:
        """Sample every cell ``n_samples`` times, ``period`` s apart; (n_samples, n_cells) float32.

        Simulated time advances by ``n_samples * period``.
        """
        self._catch_up()
        if self.dacs is not None and self.dacs.settling():
            spins = np.empty((n_samples, self.truth.n_cells), dtype=np.int8)
            for start, count, t_fields in self._stretches(n_samples, period):
                self._refresh(t_fields, noise=True)
                spins[start : start + count] = self.cells.sample(
                    count, period, self.fields(), self.t_eff(), self.coupling_graph()
                )
        else:
            if self.realistic:
                self._refresh(self.clock.now(), noise=True)
            spins = self.cells.sample(n_samples, period, self.fields(), self.t_eff(), self.coupling_graph())
        duration = n_samples * period
        self.cryostat.advance(duration, self.clock.now())
        self.clock.sleep(duration)
        self._cells_time = self.clock.now()
        volts = self.readout.voltages(spins, period)
        self.readout.advance(duration, flicker=False)
        self._record_readout()
        if cells is not None:
            volts = volts[:, cells]
        return volts

    def _stretches(self, n_samples: int, period: float) -> list[tuple[int, int, float]]:
        """(first sample, count, time of its fields) of stretches over which no DAC transient
        moves a field by more than ``FIELD_TOLERANCE * T_eff``."""
        assert self.dacs is not None and self.drift is not None
        t0 = self.clock.now()
        alpha = np.abs(self.drift.alpha)
        if self.truth.crosstalk_K_per_V is not None:
            alpha = alpha + np.abs(self.truth.crosstalk_K_per_V).sum(axis=0)
        cp = self.truth.couplers
        kappa = 2 * np.abs(cp.kappa_K_per_V) if cp is not None else np.zeros(0)
        gain = np.concatenate([alpha, kappa])
        tol = FIELD_TOLERANCE * self.t_eff()
        if n_samples > MAX_STRETCH_PROBES:
            probes = np.unique(np.round(np.geomspace(1, n_samples, MAX_STRETCH_PROBES)).astype(int)) - 1
        else:
            probes = np.arange(n_samples)
        field_dev = self.dacs.deviation(t0 + (probes + 1.0) * period) * gain
        out: list[tuple[int, int, float]] = []
        start = 0
        while start < probes.size:
            ref = field_dev[start]
            if np.max(np.abs(ref)) < 0.1 * tol:  # settled: the rest is one stretch
                end = probes.size
            else:
                moved = np.max(np.abs(field_dev[start:] - ref), axis=1) > tol
                end = start + (int(np.argmax(moved)) if moved.any() else probes.size - start)
                end = max(end, start + 1)
            first = int(probes[start])
            last = int(probes[end]) if end < probes.size else n_samples
            mid = 0.5 * (first + last)  # sample k is the state at t0 + (k + 1) period
            out.append((first, last - first, t0 + (mid + 0.5) * period))
            start = end
        return out


def _with_realism(truth: GroundTruth, realism: str | None, text: str) -> GroundTruth:
    """A loaded chip at the realism a description asks for (None: as the file says)."""
    if realism is None or realism == truth.realism:
        return truth
    if realism == "ideal":
        return truth.idealized()
    if truth.seed is None:
        raise GroundTruthError(
            f"virtual lab description {text!r}: realism=realistic needs the chip's seed to draw its "
            "fridge and readout, and the ground-truth file has none"
        )
    truth.set_realism(draw_sections(truth.seed, truth.n_cells, truth.n_couplers), text)
    return truth


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
