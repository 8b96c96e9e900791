"""Lock-in readout for the routines: set up the chain, sweep, return each cell's line level.

Not a routine itself (no ``NAME``). Used when the station's readout role is lock-ins
(``labstack.readout.kind: lockin``, :class:`labstack.station.roles.Readout`): each
lock-in reads the line its preamp channel's input relay selects, so a sweep is run
once per relay position and the parts merged.

What a lock-in gives is the time average of the line over its output filter's
window, ``excitation * |G H(f)| * (offset_i + amp_i <s_i>)``: the mean of the
cell's state, P(+1), never single shots. The readout chain's gain and bandwidth are
station settings, read from the preamp and lock-in at every acquisition and divided
out (:func:`chain_gain`), so the levels a routine stores are volts on the line per
volt of excitation, whatever gain the lab runs. Each point is read ``reads`` times,
waiting a whole filter window between reads, so the reads are independent and
their scatter measures the noise (:func:`labstack.fit.scurve_mean.fit_mean_scurve`).

Setup per acquisition: every lock-in starts on its least sensitive range, is
phased on its strongest line (the chain's phase, preamp filter and cable delay,
is the same for all lines of a channel) and set to the most sensitive range that
holds its lines with a margin; an overload left after that is an error naming the
lock-in, never a silently clipped reading.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import xarray as xr

from labstack.calibrate import Context
from labstack.calibrations._common import settle_time
from labstack.data import values_in
from labstack.measure import Read, Sweep, Trace
from labstack.station import ChipLayout

#: SR86x full-scale sensitivities (V), most sensitive last
SENSITIVITIES_V = [
    1.0, 500e-3, 200e-3, 100e-3, 50e-3, 20e-3, 10e-3, 5e-3, 2e-3, 1e-3,
    500e-6, 200e-6, 100e-6, 50e-6, 20e-6, 10e-6, 5e-6, 2e-6, 1e-6,
]
#: SR86x equivalent noise bandwidth x time constant by slope (dB/oct)
ENBW_TIMES_TAU = {6: 1 / 4, 12: 1 / 8, 18: 3 / 32, 24: 5 / 64}


@dataclass
class LockinSettings:
    """How the routines drive the lock-in chain (station settings, stored with every run)."""

    excitation_V: float = 0.1
    frequency_Hz: float = 1117.0
    time_constant_s: float = 0.3
    slope_dB: int = 24
    gain: float = 200.0
    lowpass_Hz: float = 100e3
    #: independent reads per point, one filter window apart
    reads: int = 3
    #: full scale over the largest line reading
    range_margin: float = 2.0

    @property
    def window_s(self) -> float:
        """The output filter's averaging window, ``1 / (2 ENBW)``."""
        return self.time_constant_s / (2 * ENBW_TIMES_TAU[self.slope_dB])


def as_settings(value: LockinSettings | Mapping[str, Any]) -> LockinSettings:
    """Settings from a routine's parameters (a mapping when overridden from a file or the CLI)."""
    return value if isinstance(value, LockinSettings) else LockinSettings(**dict(value))


def is_lockin(layout: ChipLayout) -> bool:
    return layout.readout_role.kind == "lockin"


def chain_gain(station: Any, layout: ChipLayout, k: int, frequency_Hz: float) -> float:
    """|G H(f)| of the preamp channel in front of lock-in ``k`` (1 without a preamp)."""
    role = layout.readout_role
    if role.preamp is None:
        return 1.0
    channel = getattr(station.components[role.preamp], f"ch{k + 1}")
    gain, cutoff = float(channel.gain.get()), float(channel.lowpass.get())
    return float(abs(gain / (1 + 1j * frequency_Hz / cutoff)))


def _select(station: Any, layout: ChipLayout, line: int) -> None:
    role = layout.readout_role
    if role.preamp is None:
        return
    preamp = station.components[role.preamp]
    for k in range(len(role.lockins)):
        getattr(preamp, f"ch{k + 1}").input(line)


def prepare(ctx: Context, settings: LockinSettings, high: Mapping[str, float], low: Mapping[str, float]) -> dict[str, Any]:
    """Excitation, filter, gain; phase and range each lock-in on its lines at ``high`` and ``low`` bias."""
    station, layout = ctx.station, ctx.station.layout
    role = layout.readout_role
    lockins = [station.components[name] for name in role.lockins]
    if role.preamp is not None:
        preamp = station.components[role.preamp]
        for k in range(len(lockins)):
            channel = getattr(preamp, f"ch{k + 1}")
            channel.gain(settings.gain)
            channel.lowpass(settings.lowpass_Hz)
            channel.coupling("AC")
    for li in lockins:
        li.sensitivity(SENSITIVITIES_V[0])
        li.input_range(1.0)
        li.frequency(settings.frequency_Hz)
        li.time_constant(settings.time_constant_s)
        li.filter_slope(settings.slope_dB)
        li.amplitude(settings.excitation_V)
    peak = np.zeros(len(lockins))
    best = np.zeros(len(lockins), dtype=complex)
    for bias in (high, low):
        for name, v in bias.items():
            station.parameter(name).set(float(v))
        for line in range(1, role.lines_per_lockin + 1):
            _select(station, layout, line)
            ctx.clock.sleep(2 * settings.window_s)
            for k, li in enumerate(lockins):
                x, y = li.get_values("X", "Y")
                if abs(complex(x, y)) > abs(best[k]):
                    best[k] = complex(x, y)
                peak[k] = max(peak[k], abs(complex(x, y)))
    phases, ranges = [], []
    for k, li in enumerate(lockins):
        phase = float(li.phase()) + math.degrees(math.atan2(best[k].imag, best[k].real))
        li.phase((phase + 180.0) % 360.0 - 180.0)
        full = next((s for s in reversed(SENSITIVITIES_V) if s >= settings.range_margin * peak[k]), SENSITIVITIES_V[0])
        li.sensitivity(full)
        phases.append(float(li.phase()))
        ranges.append(full)
    gains = [chain_gain(station, layout, k, settings.frequency_Hz) for k in range(len(lockins))]
    return {"phase_deg": phases, "sensitivity_V": ranges, "chain_gain": gains, **asdict(settings)}


def check_overload(station: Any, layout: ChipLayout) -> None:
    """Raise, naming the lock-in, if any reading since set-up overloaded its input or outputs."""
    for name in layout.readout_role.lockins:
        status = int(station.components[name].ask("CUROVLDSTAT?"))
        if status & 0b10011:
            raise RuntimeError(
                f"lock-in {name} overloaded (CUROVLDSTAT {status}): its range is too sensitive "
                "for its lines; raise range_margin or lower the preamp gain"
            )


def sweep(
    ctx: Context,
    settings: LockinSettings,
    setpoints: Mapping[str, np.ndarray],
    coord: np.ndarray,
    dim: str,
    run: Any,
    name: str,
    metadata: Mapping[str, Any],
    chain: Mapping[str, Any],
    park: Mapping[str, float] | None = None,
) -> xr.Dataset:
    """Run the sweep once per relay position; every cell's line level, (cell, ``dim``, read).

    ``run(ctx, name, sequence, metadata)`` stores each part (the routine's own runner),
    and the merged dataset's ``run_id`` joins the parts' ids with ``+``.

    ``park`` (bias line -> volts where its cell holds one state) adds, per relay
    position, the same sweep with the cells read held there: variable ``leak``. A
    readout line carries a few per cent of its neighbours' lines (readout crosstalk,
    0.5 - 3 %); a lock-in averages that with the cell's own level, so with every line
    swept together each neighbour's switching puts a step into the line at the
    neighbour's V0, which moves a fitted V0 by several standard errors and widens the
    curve. With the cell frozen the line reads its neighbours' leak alone (plus a
    constant), along the same sweep of the same chip, and ``level - leak``, read by
    read, is the cell's own curve; its scatter holds both runs' noise.
    """
    station, layout = ctx.station, ctx.station.layout
    role = layout.readout_role
    n = layout.n_cells
    window = settings.window_s
    reads = [Read(f"{li}.X", name=f"X{k}") for k, li in enumerate(role.lockins)]
    levels = np.full((n, len(coord), settings.reads), np.nan)
    leaks = np.full_like(levels, np.nan)
    run_ids = []
    for line in range(1, role.lines_per_lockin + 1):
        cells = [(k, c) for k in range(len(role.lockins)) for c in [k * role.lines_per_lockin + line - 1] if c < n]
        if not cells:
            continue
        _select(station, layout, line)
        body = [Trace("read", settings.reads, 2 * window, tuple(reads))]
        parts = [(levels, dict(setpoints), {})]
        if park is not None:
            read = {layout.bias[c] for _, c in cells if c < len(layout.bias)}
            frozen = {b: (np.full(len(coord), float(park[b])) if b in read and b in park else v) for b, v in setpoints.items()}
            parts.append((leaks, frozen, {"lockin_leak": True}))
        for out, points, extra in parts:
            # a whole filter window, or the lines' measured settling if that is longer
            sequence = Sweep(dim, points, body=tuple(body), settle=settle_time(ctx, window), coord=coord)
            ds = run(ctx, name, sequence, {**metadata, "lockin_line": line, "lockin": dict(chain), **extra})
            check_overload(station, layout)
            run_ids.append(ds.attrs["run_id"])
            for k, c in cells:
                scale = settings.excitation_V * chain["chain_gain"][k]
                out[c] = values_in(ds[f"X{k}"], dim, "read") / scale
    variables = {"level": (("cell", dim, "read"), levels, {"units": "V", "long_name": "line level per volt of excitation"})}
    if park is not None:
        variables["leak"] = (("cell", dim, "read"), leaks, {"units": "V", "long_name": "the line with its cell held (neighbours' leak)"})
    return xr.Dataset(
        variables,
        coords={dim: coord},
        attrs={"run_id": "+".join(run_ids), "readout_kind": "lockin", "lockin": str(dict(chain))},
    )
