"""Bias S-curves where the chip-wide sweep cannot resolve them: windows of their own.

The bias node sweeps every line together over one range. A cell whose centre sits
near or beyond an end of that range, or whose width is far from the chip's (a few
points across its transition, or a curve wider than the range), is then measured
again in a *window*: all lines still move together (so the offset keeps its
meaning, crosstalk and all), but over ``centre +- half_widths * width`` of that cell,
with the window's own points. Centre and width come from the data: the cell's own
fit if it has one, else where its measured P(+1) at the nearest end of the sweep puts
the centre for the chip's median width. A per-cell recalibration (``ctx.selection``)
uses the same windows around the stored offsets instead of the whole range.

All the windows of one acquisition are measured in a single sweep (:func:`merged_volts`):
the lines move together anyway, so a point inside two cells' windows serves both, and
the windows of a chip's narrow cells overlap. Each window keeps its own spacing (a
window of ``n`` points over ``centre +- half_widths * width``); where windows overlap
the finer spacing holds. One window per cell, each its own sweep, had cost a 16-cell
chain 7 windows of 31 points (11 of the node's 14 min of fridge time) where 4 windows'
worth of points cover them all.

Pure functions of fitted results and parameters; the acquisition is in
:mod:`labstack.calibrations.bias_scurve`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from labstack.fit import ScurveResult

#: a transition needs this many widths of margin to an end of the sweep to be pinned
MARGIN_WIDTHS = 3.0
#: widths outside this factor of the chip's median get their own window
WIDTH_FACTOR = 2.0
#: a sweep step larger than this fraction of a width leaves too few points on the curve
MAX_STEP_WIDTHS = 0.8
#: how far the last points must rise above the rest to show a transition beyond the end
#: (a binomial P from >= 1000 samples scatters by < 0.016 at P < 0.5)
RISE = 0.02


@dataclass(frozen=True)
class Window:
    cell: int
    centre_V: float
    width_V: float
    why: str

    def volts(self, half_widths: float, n_points: int, limits: tuple[float, float]) -> np.ndarray:
        lo = max(limits[0], self.centre_V - half_widths * self.width_V)
        hi = min(limits[1], self.centre_V + half_widths * self.width_V)
        return np.linspace(lo, hi, n_points)


def merged_volts(windows: Sequence[Window], half_widths: float, n_points: int, limits: tuple[float, float]) -> np.ndarray:
    """The points of one sweep that covers every window at (at least) its own spacing.

    Walks up from the lowest window's start in steps of the finest spacing among the
    windows that cover the stretch ahead, stopping on every window's start and end: no
    gap inside a window is wider than its own grid's, and where windows overlap their
    points are shared instead of doubled.
    """
    grids = [w.volts(half_widths, n_points, limits) for w in windows]
    spans = [(float(g[0]), float(g[-1]), float(g[-1] - g[0]) / max(len(g) - 1, 1)) for g in grids if len(g)]
    if not spans:
        return np.empty(0)
    edges = sorted({e for lo, hi, _ in spans for e in (lo, hi)})
    out = [edges[0]]
    # between two consecutive edges the same windows cover every point: one step each stretch
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        step = min((st for lo, hi, st in spans if lo <= low < hi), default=math.inf)
        v = low
        if math.isfinite(step) and step > 0:
            while high - v > step * (1 + 1e-9):
                # split what is left before the edge when less than half a step would remain
                v = 0.5 * (v + high) if high - (v + step) < 0.5 * step else v + step
                out.append(v)
        out.append(high)  # a window's start or end is a point; a gap between windows is jumped
    return np.array(out)


def chip_width(results: Sequence[ScurveResult]) -> float:
    """The median fitted width of the cells that fitted (NaN if none did)."""
    widths = [r.fit["width_V"] for r in results if r.ok]
    return float(np.median(widths)) if widths else math.nan


def needs_window(results: Sequence[ScurveResult], volts: np.ndarray, broken: set[int]) -> list[Window]:
    """Live cells the chip-wide sweep did not resolve, with where to look and why.

    ``broken``: cells the readout node found dead or stuck; one of them that the sweep
    nonetheless fitted (a cell parked far from its centre reads as stuck) is live.
    """
    lo, hi = float(np.min(volts)), float(np.max(volts))
    step = float(np.max(np.diff(np.sort(volts)))) if len(volts) > 1 else math.inf
    w_chip = chip_width(results)
    out = []
    for r in results:
        if r.ok:
            v0, w = r.fit["v0_V"], r.fit["width_V"]
            if min(v0 - lo, hi - v0) < MARGIN_WIDTHS * w:
                out.append(Window(r.cell, v0, w, f"centre {v0:+.3f} V within {MARGIN_WIDTHS:g} widths of the range"))
            elif math.isfinite(w_chip) and not w_chip / WIDTH_FACTOR <= w <= w_chip * WIDTH_FACTOR:
                out.append(Window(r.cell, v0, w, f"width {w * 1e3:.1f} mV far from the chip's {w_chip * 1e3:.1f} mV"))
            elif step > MAX_STEP_WIDTHS * w:
                out.append(Window(r.cell, v0, w, f"width {w * 1e3:.1f} mV spans too few points"))
            continue
        if r.cell in broken:
            continue  # the readout found no second level and neither did the sweep
        p = np.asarray(r.fit.extra.get("p", []), dtype=float)
        if p.size != len(volts) or not math.isfinite(w_chip):
            continue
        centre = beyond_the_end(volts, p, w_chip)
        if centre is not None:
            out.append(Window(r.cell, centre, w_chip, f"{r.flag}: centre estimated at {centre:+.3f} V from the sweep's end"))
    return out


def beyond_the_end(volts: np.ndarray, p: np.ndarray, width: float) -> float | None:
    """Where a curve that did not cross the sweep should be centred, or None.

    ``P(+1)`` rising toward the top end means the centre lies above it, by
    ``w logit^-1``-inverse of the last point's P: ``V0 = V_end - w ln(p / (1 - p))``.
    """
    order = np.argsort(volts)
    v, raw = volts[order], p[order]
    q = np.clip(raw, 0.02, 0.98)
    rest = float(np.median(raw[3:-3])) if raw.size > 6 else float(np.median(raw))
    top, bottom = float(np.mean(raw[-3:])), float(np.mean(raw[:3]))
    if top < 0.5 and top - rest > RISE:  # rising, still low at the top: the centre is above
        return float(v[-1] - width * math.log(q[-1] / (1 - q[-1])))
    if bottom > 0.5 and rest - bottom > RISE:  # falling toward the bottom: the centre is below
        return float(v[0] - width * math.log(q[0] / (1 - q[0])))
    if float(raw.max() - raw.min()) > 0.5:  # it did cross: where it is nearest one half
        return float(v[int(np.argmin(np.abs(raw - 0.5)))])
    return None  # flat: no sign of a transition anywhere near
