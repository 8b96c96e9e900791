"""One heat–cool cycle shared by every node that needs several fridge temperatures.

Not a node (no ``NAME``). On hardware the scarce resource is fridge time, and nearly
all of it is cooling: at base the mixing chamber's time constant is ~1000 s, so one
trip back from a 40 mK plateau alone costs most of an hour, while heating takes
seconds. So the cryostat's heater step, the effective-temperature plateaus and the
thermalization plateaus share one cycle:

1. at base: the thermometers' baseline, thermalization's base bursts (which measure
   every cell's correlation time ``tau_c``; the S-curves are then sampled a few
   ``tau_c`` apart instead of at a fixed slow rate) and the base S-curves;
2. one constant-current heater step to the hottest plateau, traced (the cryostat's
   warm-up: heating coefficient, time constant when warm, chip lag), then a hold there
   at the current the trace predicts, until the chip caught up; S-curves;
3. heater off: the free cool-down, traced (the cryostat's cool-down: base, time constant
   at base, chip lag), measuring at each lower plateau as the chip passes it. The
   plateaus are not held: a measurement lasts seconds and the chip thermometer is read
   right before and after it, while the chip cools by a fraction of a per cent;
4. after the last effective-temperature plateau, its widths are fitted (``T_x``, ``n``),
   and thermalization's plateaus (multiples of the base ``T_eff``) are chosen from that
   fit and measured as the chip passes them (their dependency on the fit stays honest);
5. the trace ends when the chip is within :data:`~.fridge.BACK_AT_BASE_REL` of its own
   baseline reading: the cool-down every later base-temperature node would otherwise wait
   for, paid once.

The traces are stored in the effective-temperature node's dataset (``fridge_*``, in the
cryostat node's format, fitted by :func:`labstack.calibrations.cryostat.fit`) with the
thermalization bursts (``therm_*``), which the thermalization node reads back instead of
heating the fridge again.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from labstack.calibrate import Context
from labstack.calibrations._common import run, sample_cells, settle_time
from labstack.calibrations.fridge import (
    BACK_AT_BASE_REL,
    SCAN_MARGIN_S,
    closed_loop,
    max_heater_current,
    read_fresh,
    scan_pause,
    set_heater_current,
    set_loop,
)
from labstack.fit import two_level_threshold
from labstack.fit.telegraph import switching_rates
from labstack.measure import Sweep

#: heater current of the warm-up step (A), or less: what the interlocks and the heater's ranges allow
COLD_RISE_CURRENT_A = 3.16e-3


@dataclass
class FridgeTrace:
    """Mixing-chamber and chip readings in pairs, grouped in phases (base, heat, cool)."""

    ctx: Context
    mc: str
    chip: str | None
    phases: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)
    offsets: dict[str, float] = field(default_factory=dict)

    def pair(self, phase: str) -> tuple[float, float]:
        """One fresh reading of each thermometer; (T_mc, T_chip) (T_chip = T_mc without a chip sensor)."""
        start = self.ctx.clock.now()
        t_mc = read_fresh(self.ctx, self.mc)
        self.offsets["T_mc"] = scan_pause(self.ctx, self.mc) + SCAN_MARGIN_S
        t_chip = t_mc
        if self.chip:
            t_chip = read_fresh(self.ctx, self.chip)
            self.offsets["T_chip"] = self.offsets["T_mc"] + scan_pause(self.ctx, self.chip) + SCAN_MARGIN_S
        self.phases.setdefault(phase, []).append((start, t_mc, t_chip))
        return t_mc, t_chip

    def dataset(self, **attrs: Any) -> xr.Dataset:
        """The traces in the cryostat node's format (``T_mc_<phase>``, ``t_<phase>_clock``)."""
        data: dict[str, Any] = {}
        for phase, rows in self.phases.items():
            arr = np.asarray(rows, dtype=float)
            dim = f"t_{phase}"
            data[f"fridge_{dim}_clock"] = ((dim,), arr[:, 0])
            data[f"fridge_T_mc_{phase}"] = ((dim,), arr[:, 1], {"units": "K"})
            if self.chip:
                data[f"fridge_T_chip_{phase}"] = ((dim,), arr[:, 2], {"units": "K"})
        return xr.Dataset(data, attrs={"fridge_read_offset_s": json.dumps(self.offsets), **attrs})


def fridge_part(dataset: xr.Dataset) -> xr.Dataset | None:
    """The cryostat-format traces of a ladder dataset (``fridge_`` prefix removed), or None."""
    names = [v for v in dataset.data_vars if str(v).startswith("fridge_")]
    if not names:
        return None
    part = dataset[names].rename({v: str(v)[len("fridge_"):] for v in names})
    part = part.assign_coords({d: part[f"{d}_clock"].values - part[f"{d}_clock"].values[0] for d in part.dims})
    attrs = {k[len("fridge_"):]: v for k, v in dataset.attrs.items() if str(k).startswith("fridge_")}
    return part.assign_attrs(attrs)


@dataclass
class Bursts:
    """Thermalization's single-shot bursts taken during the ladder."""

    states: list[np.ndarray] = field(default_factory=list)  # (cell, sample) 0/1 each
    t_chip: list[float] = field(default_factory=list)
    bias_widths: list[float] = field(default_factory=list)
    period_s: float = math.nan
    run_ids: list[str] = field(default_factory=list)

    def take(
        self, ctx: Context, rate_Hz: float, n_samples: int, v0: np.ndarray, width: np.ndarray,
        good: np.ndarray, ks: tuple[float, ...], t_chip: float, meta: dict[str, Any], settle_s: float,
    ) -> None:
        """Bursts at bias points ``v0 + k width`` (one per ``k``), thresholded per cell as the
        thermalization node does (halfway between the two levels of this very run)."""
        layout = ctx.station.layout
        read = sample_cells(ctx.station, layout, rate_Hz, n_samples)
        self.period_s = 1.0 / float(ctx.station.components[layout.readout].sample_rate())
        setpoints = {
            name: np.clip([v0[i] + k * width[i] if good[i] else 0.0 for k in ks], -1.5, 1.5)
            for i, name in enumerate(layout.bias)
        }
        seq = Sweep("bias_point", setpoints, body=[read], settle=settle_time(ctx, settle_s), coord=np.asarray(ks, float))
        ds = run(ctx, "thermalization", seq, {**meta, "ladder": True})
        self.run_ids.append(ds.attrs["run_id"])
        readings = ds["samples"].transpose("bias_point", "cell", "sample").values
        thresholds = np.array([two_level_threshold(readings[:, c].ravel())[0] for c in range(readings.shape[1])])
        states = readings > thresholds[None, :, None]
        for j, k in enumerate(ks):
            self.states.append(states[j].astype(np.uint8))
            self.t_chip.append(float(t_chip))
            self.bias_widths.append(float(k))

    def slowest_tau_c(self, good: np.ndarray, quantile: float = 1.0) -> float:
        """The longest correlation time among the cells at the zero-width points (s), nan if none."""
        taus = []
        for st, k in zip(self.states, self.bias_widths, strict=True):
            if k != 0.0:
                continue
            for c in np.flatnonzero(good):
                tau = switching_rates(st[c], self.period_s, 20).tau_c_s
                if np.isfinite(tau) and tau > 0:
                    taus.append(tau)
        return float(np.quantile(taus, quantile)) if taus else math.nan

    def dataset(self) -> xr.Dataset:
        if not self.states:
            return xr.Dataset()
        return xr.Dataset(
            {
                "therm_states": (("therm_point", "cell", "therm_sample"), np.stack(self.states)),
                "therm_T_chip": (("therm_point",), np.asarray(self.t_chip), {"units": "K"}),
                "therm_bias_widths": (("therm_point",), np.asarray(self.bias_widths)),
            },
            attrs={"therm_sample_period_s": self.period_s, "therm_run_ids": "+".join(self.run_ids)},
        )


@dataclass
class Ladder:
    """Drives one heat–cool cycle; the nodes' measurements are callbacks."""

    ctx: Context
    trace: FridgeTrace
    #: the held top's temperature when the warm-up trace cannot be fitted: this times the top
    rise_overshoot: float = 1.25
    cold_rise_current_A: float = COLD_RISE_CURRENT_A
    #: the warm-up ends when the chip is within this fraction of the top plateau
    hold_rel: float = 0.02
    #: a lower plateau is steady enough once the chip is within this fraction of it
    settle_rel: float = 0.015
    max_hold_s: float = 300.0
    cool_interval_s: float = 20.0
    max_cool_s: float = 6 * 3600.0
    heater_current_A: float = math.nan
    setpoints: list[float] = field(default_factory=list)
    base_chip_K: float = math.nan
    _rise: tuple[float, float] | None = None

    def baseline(self, n: int) -> None:
        """Heater off; ``n`` reading pairs at base."""
        self.log("baseline")
        set_heater_current(self.ctx, 0.0)
        for _ in range(n):
            self.base_chip_K = self.trace.pair("base")[1]
        self.base_chip_K = float(np.mean([r[2] for r in self.trace.phases["base"]]))

    def heat_to_top(self, top_K: float) -> float:
        """Constant-current warm-up (traced) until the *chip* is within ``hold_rel`` of ``top_K``,
        then the current holding ``top_K``; the chip's reading.

        The warm-up current is the largest the interlocks and heater ranges allow (the
        fastest approach), so the mixing chamber overshoots the plateau while the chip,
        lagging, catches up; the hold current then brings the mixing chamber back down as
        the chip rises into the plateau: no wait for the chip's lag at the top. A closed
        loop (Triton) is given the set-point and its own PID does the same.
        """
        base = float(np.mean([r[1] for r in self.trace.phases["base"]]))
        if closed_loop(self.ctx):
            set_loop(self.ctx, top_K)
            self.setpoints.append(top_K)
            self.heater_current_A = math.nan
        else:
            most = max_heater_current(self.ctx)
            current = min(self.cold_rise_current_A, most) if most else self.cold_rise_current_A
            set_heater_current(self.ctx, current)
            self.setpoints.append(current)
            self.heater_current_A = current
        start = self.ctx.clock.now()
        t_chip = base
        while t_chip < (1 - self.hold_rel) * top_K and self.ctx.clock.now() - start < self.max_hold_s * 3:
            _, t_chip = self.trace.pair("heat")
            rows = self.trace.phases["heat"]
            if len(rows) > 4 and rows[-1][2] < rows[-4][2] * 1.005:
                top_K = t_chip  # a weak heater: the warm-up has stalled below the plateau; hold here
                break
        if not closed_loop(self.ctx):
            hold = self._hold_current(top_K, base)
            set_heater_current(self.ctx, hold)
            self.setpoints.append(hold)
        self.log(f"warm-up done, holding {top_K * 1e3:.1f} mK")
        return self.trace.pair("hold")[1]

    @property
    def base_mc_K(self) -> float:
        return float(np.mean([r[1] for r in self.trace.phases["base"]]))

    def _fit_rise(self, top_K: float) -> tuple[float, float]:
        """(heating coefficient K^2/A^2, time constant at base s) from the warm-up traced so far:
        the mixing chamber's dilution settling towards ``T_inf`` at a known current, its time
        constant there scaled to base (``tau`` goes as ``1 / T``)."""
        from labstack.calibrations.fridge_fit import fit_dilution

        if self._rise is None:
            rows = np.asarray(self.trace.phases["heat"], float)
            t = rows[:, 0] + self.trace.offsets.get("T_mc", 0.0)
            f = fit_dilution(t, rows[:, 1]) if rows.shape[0] > 3 else None
            ok = f is not None and f.success and f["T_inf"] > top_K
            t_inf = f["T_inf"] if ok else self.rise_overshoot * top_K
            tau = f["tau"] if ok else float(np.ptp(t)) / 2
            base = self.base_mc_K
            self._rise = ((t_inf**2 - base**2) / self.heater_current_A**2, tau * t_inf / base)
        return self._rise

    def _hold_current(self, top_K: float, base: float) -> float:
        """The current holding ``top_K``: heating coefficient from the warm-up traced so far."""
        k, _ = self._fit_rise(top_K)
        return math.sqrt(max(top_K**2 - base**2, 0.0) / k)

    def off(self) -> None:
        """Heater off: a free cool-down begins. The cryostat's fit wants one free decay, so
        only the last one keeps the name ``cool``; earlier ones become ``fall<k>``."""
        if "cool" in self.trace.phases:
            self.trace.phases[f"fall{len(self.setpoints)}"] = self.trace.phases.pop("cool")
        set_heater_current(self.ctx, 0.0)
        self.setpoints.append(0.0)
        self.log("heater off")

    def hold_at(self, target_K: float) -> float:
        """Reach ``target_K`` on the way down and hold it; the chip's reading once it is within
        ``settle_rel`` of the target.

        A plateau's S-curves take a minute (each point waits for every bias line's ramp), so
        the chip must not drift meanwhile. Cooling freely is the fastest way down and heating
        takes seconds, but the chip lags the mixing chamber: holding the mixing chamber at the
        target as it gets there would leave the chip's whole lag to wait for. So the mixing
        chamber falls on past the target until the chip, by the lag and time constant the
        trace shows, would reach the target during a full-current boost of the mixing chamber
        back up to it; then the boost, then the hold current.
        """
        closed = closed_loop(self.ctx)
        k, tau_base = self._fit_rise(target_K)
        most = max_heater_current(self.ctx) or self.heater_current_A
        t_inf = math.sqrt(k * most**2 + self.base_mc_K**2)
        start = self.ctx.clock.now()
        boost = 0.0
        while self.ctx.clock.now() - start < self.max_cool_s:
            t_mc, t_chip = self.trace.pair("cool")
            rows = self.trace.phases["cool"]
            if closed or len(rows) < 2 or t_mc >= target_K:
                if t_chip <= target_K * (1 + 0.5 * self.settle_rel):
                    break
                continue
            slope = (rows[-1][2] - rows[-2][2]) / (rows[-1][0] - rows[-2][0])
            lag = t_chip - t_mc
            if slope >= 0 or lag <= 0:
                continue
            tau_chip = lag / -slope  # first-order lag: dT_chip/dt = (T_mc - T_chip) / tau
            boost = (math.atanh(min(target_K / t_inf, 0.999)) - math.atanh(t_mc / t_inf)) * 2 * tau_base * self.base_mc_K / t_inf
            # the chip while the mixing chamber climbs back, roughly linearly, to the target
            end = t_chip + boost * (0.5 * (t_mc + target_K) - t_chip) / tau_chip
            if end <= target_K * (1 + 0.5 * self.settle_rel):
                break
        if closed:
            set_loop(self.ctx, target_K)
            self.setpoints.append(target_K)
        else:
            if boost > 0:
                set_heater_current(self.ctx, most)
                self.setpoints.append(most)
                self.ctx.clock.sleep(boost)
            hold = math.sqrt(max(target_K**2 - self.base_mc_K**2, 0.0) / k)
            set_heater_current(self.ctx, hold)
            self.setpoints.append(hold)
        start = self.ctx.clock.now()
        while True:
            _, t_chip = self.trace.pair(f"hold{len(self.setpoints)}")
            if abs(t_chip - target_K) <= self.settle_rel * target_K or self.ctx.clock.now() - start > self.max_hold_s:
                self.log(f"holding {target_K * 1e3:.2f} mK (boost {boost:.0f} s), chip {t_chip * 1e3:.2f} mK")
                return t_chip

    def log(self, what: str) -> None:
        """One line per stage with the lab clock: where the fridge time goes."""
        self.ctx.logger.info("ladder %s at lab %.0f s", what, self.ctx.clock.now())

    def cool_until(self, chip_K: float, mc: bool = False) -> float:
        """Trace the free cool-down until the chip (``mc``: the mixing chamber) reads ``chip_K``
        or less; that reading."""
        start = self.ctx.clock.now()
        which = 1 if mc else 2
        while True:
            rep = self.ctx.clock.now()
            pair = self.trace.pair("cool")
            t_chip = pair[which - 1]
            if t_chip <= chip_K or self.ctx.clock.now() - start > self.max_cool_s:
                self.log(f"chip at {t_chip * 1e3:.2f} mK (wanted {chip_K * 1e3:.2f})")
                return t_chip
            wait = max(0.0, self.cool_interval_s - (self.ctx.clock.now() - rep))
            rows = self.trace.phases["cool"]
            offset = self.trace.offsets.get("T_chip" if which == 2 else "T_mc", 0.0)
            if len(rows) >= 2 and rows[-1][which] < rows[-2][which]:  # crossing before the next pair?
                rate = (rows[-1][which] - rows[-2][which]) / (rows[-1][0] - rows[-2][0])
                due = (t_chip - chip_K) / -rate - (self.ctx.clock.now() - rep - offset)
                if due < wait + 2 * self.trace.offsets.get("T_chip", 0.0):
                    self.ctx.clock.sleep(max(0.0, due))
                    self.log(f"chip near {chip_K * 1e3:.2f} mK (extrapolated)")
                    return chip_K
            self.ctx.clock.sleep(wait)

    def back_at_base(self) -> float:
        """Trace on until the chip is within :data:`BACK_AT_BASE_REL` of its baseline."""
        return self.cool_until(self.base_chip_K * (1 + BACK_AT_BASE_REL))


#: settle after each burst's bias point (s): a burst lasts milliseconds
BURST_SETTLE_S = 1e-3


def burst_rate(ctx: Context, max_memory: float = 0.25, max_rate_Hz: float = 10e6, fallback_Hz: float = 4e6) -> float:
    """The fastest sample rate whose samples the readout's low-pass keeps apart: the
    amplifier leaves ``exp(-Delta / tau_a)`` of the previous reading in a sample, at most
    ``max_memory`` (its calibrated ``readout.lowpass_tau_s``; ``fallback_Hz`` without it)."""
    key = "readout.lowpass_tau_s"
    if key not in ctx.state or not ctx.state.get(key).valid:
        return fallback_Hz
    tau = float(ctx.state.value(key))
    return float(min(max_rate_Hz, 1.0 / (tau * math.log(1.0 / max_memory))))


def plateau_temperatures(t_base_K: float, t_x: float, n: float, steps: tuple[float, ...]) -> list[float]:
    """Chip temperatures whose T_eff is ``steps`` times that at ``t_base_K`` (0 = base)."""
    base = (t_base_K**n + t_x**n) ** (1 / n)
    out = [0.0]
    for k in steps:
        target = k * base
        out.append(float((target**n - t_x**n) ** (1 / n)))
    return out


def plateaus_descending(temperatures_K: Callable[[], list[float]] | list[float]) -> list[float]:
    """Warm plateaus (above 0 = base), hottest first: the order the cool-down passes them."""
    temps = temperatures_K() if callable(temperatures_K) else temperatures_K
    return sorted((float(t) for t in temps if t > 0), reverse=True)
