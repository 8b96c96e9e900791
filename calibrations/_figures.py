"""What every node's figures share: panels with residuals, titles, units, heat maps.

Not a node (no ``NAME``). Each node's ``figures(results, dataset)`` draws its own
result the way a physicist checks it (data with the fit and its residuals, in
physical units, titled by node and cell), as qibocal protocols do, and returns
matplotlib :class:`~matplotlib.figure.Figure` objects. The report embeds them,
the dashboard serves them and a notebook shows them: one drawing for all three.

Figures are built on :class:`matplotlib.figure.Figure` directly, never through
pyplot: no global state, so the dashboard can draw in worker threads and nothing
needs closing. Every axes gets a title and both axis labels (checked by the
tests); a panel with nothing to draw is not made.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from labstack.fit.precision import format_value

MAX_PANELS = 16
COLUMNS = 4


def panels_with_residuals(
    n: int, title: str, *, cols: int = COLUMNS, size: tuple[float, float] = (3.0, 2.6)
) -> tuple[Figure, list[Axes], list[Axes]]:
    """A figure of ``n`` data panels, each with a residual panel under it sharing x."""
    n = max(1, min(n, MAX_PANELS))
    cols = min(cols, n)
    rows = -(-n // cols)
    fig = Figure(figsize=(size[0] * cols, size[1] * rows + 0.5), layout="constrained")
    grid = fig.add_gridspec(2 * rows, cols, height_ratios=[3, 1] * rows)
    data, resid = [], []
    for k in range(n):
        r, c = divmod(k, cols)
        ax = fig.add_subplot(grid[2 * r, c])
        data.append(ax)
        resid.append(fig.add_subplot(grid[2 * r + 1, c], sharex=ax))
        ax.tick_params(labelbottom=False)
    fig.suptitle(title)
    return fig, data, resid


def residuals(ax: Axes, x: np.ndarray, pulls: np.ndarray, xlabel: str) -> None:
    """Normalized residuals ``(data - fit) / sigma`` with the ±1 band."""
    x, pulls = np.asarray(x, float), np.asarray(pulls, float)
    ok = np.isfinite(x) & np.isfinite(pulls)
    ax.axhspan(-1, 1, color="0.9", zorder=0)
    ax.axhline(0, color="0.4", lw=0.6)
    ax.plot(x[ok], pulls[ok], ".", ms=4, color="C0")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("pull (σ)")
    ax.set_title("residuals", fontsize=7, loc="right", pad=1)


def failed_panel(ax: Axes, resid: Axes | None, title: str, why: str, xlabel: str, ylabel: str) -> None:
    """A panel for an item whose fit failed: the reason, labelled, not an empty plot."""
    ax.text(0.5, 0.5, _wrap(why), ha="center", va="center", fontsize=7, color="#b00",
            transform=ax.transAxes)
    ax.set_title(title, fontsize=8, color="#b00")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.tick_params(labelbottom=True)
    if resid is not None:
        resid.set_visible(False)


def _wrap(text: str, width: int = 38) -> str:
    words, lines, line = text.split(), [], ""
    for w in words:
        if len(line) + len(w) + 1 > width and line:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    lines.append(line)
    return "\n".join(lines[:6])


def value_text(name: str, value: float, stderr: float | None, unit: str) -> str:
    """``V0 = 12.35 ± 0.23 mV`` for panel titles (digits as the error supports)."""
    return f"{name} = {format_value(value, stderr, unit)}"


def heat_map(
    matrix: np.ndarray,
    errors: np.ndarray | None,
    title: str,
    label: str,
    *,
    xlabel: str,
    ylabel: str,
) -> Figure:
    """A signed matrix as a heat map (symmetric colour scale), unmeasured entries grey.

    Small matrices are annotated with each value to the digits its error supports.
    """
    m = np.asarray(matrix, float)
    n_rows, n_cols = m.shape
    side = min(9.0, 1.6 + 0.45 * max(n_rows, n_cols))
    fig = Figure(figsize=(side + 1.2, side), layout="constrained")
    ax = fig.add_subplot()
    unmeasured = ~np.isfinite(m) if errors is None else ~np.isfinite(np.asarray(errors, float))
    shown = np.ma.masked_where(unmeasured, m)
    limit = float(np.nanmax(np.abs(m[~unmeasured]))) if (~unmeasured).any() else 1.0
    cmap = _cmap("RdBu_r").with_extremes(bad="0.85")
    image = ax.imshow(shown, cmap=cmap, vmin=-limit or -1, vmax=limit or 1, interpolation="nearest")
    colorbar = fig.colorbar(image, ax=ax, shrink=0.8)
    colorbar.set_label(label)
    if max(n_rows, n_cols) <= 8 and errors is not None:
        err = np.asarray(errors, float)
        for i in range(n_rows):
            for j in range(n_cols):
                if unmeasured[i, j] or i == j:
                    continue
                ax.text(j, i, format_value(m[i, j], err[i, j]), ha="center", va="center", fontsize=6)
    ax.set_xticks(range(n_cols))
    ax.set_yticks(range(n_rows))
    ax.tick_params(labelsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return fig


def _cmap(name: str) -> Any:
    import matplotlib

    return matplotlib.colormaps[name].copy()


def finite(values: Sequence[float]) -> np.ndarray:
    a = np.asarray(values, float)
    return a[np.isfinite(a)]


def nan_to(value: Any, default: float = math.nan) -> float:
    return default if value is None else float(value)


def integer_ticks(ax: Axes) -> None:
    """Cells and couplers are counted: whole-number ticks only."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
