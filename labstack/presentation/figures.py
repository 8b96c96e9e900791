"""The figures reports, notebooks and the dashboard share, and how they are encoded.

* :func:`node_figures`: a calibration node's own ``figures(results, dataset)``
  (each node module draws its result: data, fit, residuals), found through the
  routines' entry points, never imported by name;
* :func:`chip_figure`: the chip as a picture, cells coloured by health or by one
  parameter, couplers drawn between them;
* :func:`history_figure`: a parameter of every cell over time, recalibrations marked
  (past :data:`MAX_LINES` cells: the chip's median and 5-95 % band instead of a line each);
* :func:`histogram_figure`: one quantity over a big chip's cells, where a table would
  have a row per cell;
* :func:`variable_figure`: a quick, labelled look at a variable of a plain run.

Everything is drawn on :class:`matplotlib.figure.Figure` objects, never pyplot,
so the dashboard can draw in its worker threads. Every axes has a title and both
axis labels; nothing empty is drawn (``tests/test_figures.py`` checks all of it).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from labstack.fit.precision import PREFIXABLE, PREFIXES, format_value
from labstack.session import routines

#: past this many cells a chip is drawn without per-cell labels, at marker sizes that fit
LABELLED_CELLS = 64
#: past this many cells a history shows the chip's spread, not one line per cell
MAX_LINES = 32

HEALTH_COLOURS = {
    "ok": "#5cb85c",
    "flagged": "#d9534f",
    "dead": "#333333",
    "stuck_plus": "#f0ad4e",
    "stuck_minus": "#f0ad4e",
    "unknown": "#cccccc",
}


# ----------------------------------------------------------------- encoding
def figure_png(fig: Figure, dpi: int = 72) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def figure_svg(fig: Figure) -> str:
    """SVG text without the XML prolog, ready to inline in a page."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def png_tag(fig: Figure, alt: str, dpi: int = 72) -> str:
    data = base64.b64encode(figure_png(fig, dpi)).decode("ascii")
    return f'<img class="plot" alt="{_attr(alt)}" src="data:image/png;base64,{data}">'


def figure_title(fig: Figure) -> str:
    """The figure's title (suptitle, else its first axes' title), for alt text and lists."""
    sup = getattr(fig, "_suptitle", None)
    if sup is not None and sup.get_text():
        return sup.get_text()
    return next((ax.get_title() for ax in fig.axes if ax.get_title()), "figure")


def _attr(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


# ----------------------------------------------------------------- nodes
def node_figures(name: str, results: Any, dataset: xr.Dataset | None) -> list[Figure]:
    """Node ``name``'s own figures of ``results`` (and the data they came from)."""
    module = routines().get(name)
    if module is None:
        return []
    if hasattr(module, "figures"):
        return list(module.figures(results, dataset))
    if hasattr(module, "plot") and dataset is not None:  # a lab's older routine
        fig = module.plot(results, dataset)
        return [fig] if fig is not None else []
    return []


# ----------------------------------------------------------------- the chip
def unit_scale(values: Sequence[float], unit: str) -> tuple[float, str]:
    """(factor to multiply by, unit to print) so typical values read between 1 and 1000."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v) and v != 0]
    if unit not in PREFIXABLE or not finite:
        return 1.0, unit
    power = max(-9, min(9, 3 * math.floor(math.log10(float(np.median(finite))) / 3)))
    return 10.0**-power, PREFIXES[power] + unit


def chip_figure(
    positions: Sequence[tuple[float, float]],
    pairs: Sequence[tuple[int, int]],
    *,
    title: str,
    health: Sequence[str] | None = None,
    values: Sequence[float | None] | None = None,
    errors: Sequence[float | None] | None = None,
    label: str = "",
    unit: str = "",
) -> Figure:
    """The chip: cells at ``positions``, couplers as lines, coloured by health or by ``values``.

    Cells without a (valid) value are grey with a cross; small chips get each cell's
    value written under it, to the digits its error supports.
    """
    import matplotlib
    from matplotlib.collections import LineCollection

    pos = np.asarray(positions, float).reshape(-1, 2)
    n = len(pos)
    cols = pos[:, 0].max() + 1 if n else 1
    rows = pos[:, 1].max() + 1 if n else 1
    fig = Figure(figsize=(min(2.2 + 1.1 * cols, 11), min(1.6 + 1.0 * rows, 9)), layout="constrained")
    ax = fig.add_subplot()
    # a marker of area `big` fills a cell's place up to ~8 cells across; beyond, it shrinks with the grid
    across = max(cols, rows)
    big = 500.0 * min(1.0, (8.0 / across) ** 2)
    segments = [pos[[a, b]] for a, b in pairs if a < n and b < n]
    if segments:
        ax.add_collection(LineCollection(segments, colors="0.6", linewidths=2 if n <= LABELLED_CELLS else 0.5,
                                         zorder=1))
    if values is not None:
        v = np.array([np.nan if x is None else float(x) for x in values])
        scale, shown_unit = unit_scale(list(v), unit)
        ok = np.isfinite(v)
        lo, hi = (np.nanmin(v), np.nanmax(v)) if ok.any() else (0.0, 1.0)
        norm = matplotlib.colors.Normalize(vmin=lo * scale, vmax=(hi if hi > lo else lo + 1e-12) * scale)
        cmap = matplotlib.colormaps["viridis"]
        edge = "k" if n <= LABELLED_CELLS else "none"
        scatter = ax.scatter(pos[ok, 0], pos[ok, 1], c=v[ok] * scale, cmap=cmap, norm=norm, s=big,
                             edgecolors=edge, zorder=2)
        ax.scatter(pos[~ok, 0], pos[~ok, 1], c="#cccccc", marker="X", s=0.6 * big, edgecolors=edge, zorder=2,
                   label="no valid value")
        fig.colorbar(scatter, ax=ax, shrink=0.8).set_label(f"{label} ({shown_unit})" if shown_unit else label)
        if n <= 32:
            for i in range(n):
                if ok[i]:
                    err = None if errors is None or errors[i] is None else float(errors[i])
                    ax.annotate(format_value(v[i], err, unit), pos[i], textcoords="offset points",
                                xytext=(0, -20), ha="center", fontsize=6)
        if (~ok).any():
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), markerscale=0.5)
    else:
        kinds = list(health or ["unknown"] * n)
        for kind in dict.fromkeys(kinds):
            idx = [i for i in range(n) if kinds[i] == kind]
            ax.scatter(pos[idx, 0], pos[idx, 1], c=HEALTH_COLOURS.get(kind, "#cccccc"), s=big,
                       edgecolors="k" if n <= LABELLED_CELLS else "none", zorder=2, label=f"{kind} ({len(idx)})")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), title="health", title_fontsize=7,
                  markerscale=0.4)
    if n <= LABELLED_CELLS:
        for i in range(n):
            ax.annotate(str(i), pos[i], ha="center", va="center", fontsize=7, color="w", zorder=3,
                        fontweight="bold")
    ax.set_xlim(-0.7, cols - 0.3)
    ax.set_ylim(rows - 0.4, -0.7)
    ax.set_aspect("equal")
    ax.set_xlabel("column on the chip")
    ax.set_ylabel("row on the chip")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    return fig


# ----------------------------------------------------------------- history
def history_figure(series: Mapping[str, Any]) -> Figure:
    """One parameter of every cell against time; dotted lines mark the recalibrations.

    ``series`` is :meth:`labstack.presentation.history.StateHistory.series`'s answer.
    Each cell's markers are grouped under the SVG id ``history-cell-<i>``, so a page
    (or a test) can count the points.
    """
    import matplotlib.dates as mdates

    fig = Figure(figsize=(8, 3.6), layout="constrained")
    ax = fig.add_subplot()
    every = [p["value"] for pts in series["cells"].values() for p in pts if p["valid"]]
    scale, unit = unit_scale(every, series["unit"])
    lines = sorted(series["cells"].items(), key=lambda kv: _cell_order(kv[0]))
    if len(lines) > MAX_LINES:
        _history_spread(ax, series["cells"], scale)
        lines = []
    for k, (cell, points) in enumerate(lines):
        pts = [p for p in points if p["valid"]]
        if not pts:
            continue
        t = [_time(p["utc"]) for p in pts]
        y = np.array([p["value"] for p in pts]) * scale
        e = np.array([np.nan if p["stderr"] is None else p["stderr"] for p in pts]) * scale
        container = ax.errorbar(t, y, e, fmt="o-", ms=4, lw=0.8, color=f"C{k % 10}",
                                label=f"cell {cell}" if cell != "chip" else "chip")
        container.lines[0].set_gid(f"history-cell-{cell}")
    for i, event in enumerate(series["events"]):
        ax.axvline(_time(event["utc"]), color="#b00" if event["failed"] else "0.5", ls=":", lw=0.8,
                   label="recalibration" if i == 0 else None)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))
    ax.tick_params(axis="x", labelsize=7, rotation=20)
    ax.set_xlabel("time (UTC, station clock)")
    ax.set_ylabel(f"{series['label']} ({unit})" if unit else series["label"])
    ax.set_title(f"{series['label']}: {series['description']}")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, ncol=4, loc="best")
    if not every:
        ax.text(0.5, 0.5, "no calibrated value yet", ha="center", va="center", transform=ax.transAxes)
    return fig


def _history_spread(ax: Any, cells: Mapping[str, Any], scale: float) -> None:
    """A big chip's history: at each calibration, the cells' median and their 5-95 % band.

    Values are grouped by the time they were calibrated (a per-cell recalibration adds
    a few cells' points at its own time: the band then shows those cells' spread).
    """
    by_time: dict[str, list[float]] = {}
    for points in cells.values():
        for p in points:
            if p["valid"] and p["value"] is not None and math.isfinite(p["value"]):
                by_time.setdefault(p["utc"], []).append(float(p["value"]) * scale)
    if not by_time:
        return
    times = sorted(by_time, key=_time)
    t = [_time(u) for u in times]
    q = np.array([np.percentile(by_time[u], [5, 50, 95]) for u in times])
    ax.fill_between(t, q[:, 0], q[:, 2], color="C0", alpha=0.25, label=f"5-95 % of {len(cells)} cells")
    line, = ax.plot(t, q[:, 1], "o-", ms=4, lw=0.8, color="C0", label="median")
    line.set_gid("history-median")


def histogram_figure(values: Sequence[float], *, label: str, unit: str, title: str) -> Figure:
    """One quantity over many cells: how many sit where (a big chip's table, drawn)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    scale, shown = unit_scale(list(v), unit)
    fig = Figure(figsize=(5, 3), layout="constrained")
    ax = fig.add_subplot()
    ax.hist(v * scale, bins=min(60, max(10, int(np.sqrt(v.size)))), color="C0")
    ax.set_xlabel(f"{label} ({shown})" if shown else label)
    ax.set_ylabel("cells")
    ax.set_title(f"{title}: {v.size} values")
    return fig


def group_histograms(entries: Mapping[str, Mapping[str, Any]], *, node: str = "") -> list[Figure]:
    """A histogram of every numeric per-cell (per-coupler) quantity of a group too big to list."""
    from labstack.presentation.tables import MAX_ROWS, numbers, split

    items, _, _ = split(entries)
    out = []
    for group, rows in sorted(items.items()):
        if len(rows) <= MAX_ROWS:
            continue
        for q in sorted({q for row in rows.values() for q in row}):
            es = [row[q] for row in rows.values() if q in row]
            vals = numbers(es)
            if vals.size:
                unit = next((e.get("unit", "") for e in es if e.get("unit")), "")
                out.append(histogram_figure(vals, label=q, unit=unit, title=f"{node} {group}: {q}".strip()))
    return out


def _cell_order(cell: str) -> tuple[int, str]:
    return (int(cell), "") if cell.isdigit() else (10**9, cell)


def _time(utc: str) -> datetime:
    return datetime.fromisoformat(utc)


# ----------------------------------------------------------------- plain runs
def variable_figure(da: xr.DataArray) -> Figure | None:
    """A labelled quick look at one variable: line for 1-D, lines or image for 2-D.

    Further dimensions are averaged and the title says so; a variable with nothing
    measured (all NaN) gives None rather than an empty plot.
    """
    extra = list(da.dims[2:])
    if extra:
        da = da.mean(dim=extra)
    values = np.asarray(da.values, float) if da.dtype.kind in "fiub" else None
    if values is None or not np.isfinite(values).any():
        return None
    unit = da.attrs.get("units", "")
    label = f"{da.name} ({unit})" if unit else str(da.name)
    fig = Figure(figsize=(6, 3.2), layout="constrained")
    ax = fig.add_subplot()
    title = f"{da.name}" + (f", mean over {', '.join(map(str, extra))}" if extra else "")
    if da.ndim == 0:
        ax.bar([0], [float(values)])
        ax.set_xlabel("value")
        ax.set_ylabel(label)
    elif da.ndim == 1:
        x = da[da.dims[0]].values
        ax.plot(x, values, ".-", ms=3)
        ax.set_xlabel(_dim_label(da, da.dims[0]))
        ax.set_ylabel(label)
    else:
        x, y = da.dims
        if da.sizes[y] <= 16:
            for j in range(da.sizes[y]):
                ax.plot(da[x].values, values[:, j], lw=1, label=f"{y} {j}")
            ax.set_xlabel(_dim_label(da, x))
            ax.set_ylabel(label)
            if da.sizes[y] <= 8:
                ax.legend(fontsize=7)
        else:
            mesh = ax.pcolormesh(da[x].values, da[y].values, values.T, shading="auto")
            fig.colorbar(mesh, ax=ax).set_label(label)
            ax.set_xlabel(_dim_label(da, x))
            ax.set_ylabel(_dim_label(da, y))
    ax.set_title(title, fontsize=9)
    return fig


def _dim_label(da: xr.DataArray, dim: Any) -> str:
    unit = da[dim].attrs.get("units", "") if dim in da.coords else ""
    return f"{dim} ({unit})" if unit else str(dim)
