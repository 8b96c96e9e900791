"""Live plotting of a running sequence: a subscriber of :func:`labstack.measure.run_sequence`.

``run_sequence(seq, station, name="iv", subscribers=[LivePlot("samples")])`` redraws
one variable after every flush, from what is already on disk, so the plot shows
exactly what a crash would keep. In Jupyter the figure updates in place (an IPython
display handle); elsewhere (tests, scripts, CI) it is drawn on an off-screen
canvas and ``frames`` counts the redraws. Points not yet measured are NaN and
leave gaps. The hook costs nothing when no one subscribes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from labstack.data.runs import Run
from labstack.measure.runner import RunProgress


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


class LivePlot:
    """Redraw ``variable`` of the running run after every flush (more dims are averaged)."""

    def __init__(self, variable: str, *, figsize: tuple[float, float] = (6.0, 3.5)) -> None:
        self.variable = variable
        self.figure = Figure(figsize=figsize)
        self.ax = self.figure.add_subplot()
        self.frames = 0
        self.last: xr.DataArray | None = None
        self._handle: Any = None

    def __call__(self, event: RunProgress) -> None:
        ds = Run(event.path).dataset()
        if self.variable not in ds:
            return  # not created yet: its first point has not been flushed
        da = ds[self.variable].load()
        if da.ndim > 2:
            da = da.mean(dim=list(da.dims[2:]))
        self.last = da
        self._draw(da, event)
        self.frames += 1
        self._show()

    def _draw(self, da: xr.DataArray, event: RunProgress) -> None:
        ax = self.ax
        ax.clear()
        x = da[da.dims[0]].values if da.ndim else np.array([0])
        if da.ndim <= 1:
            ax.plot(x, np.atleast_1d(da.values), ".-", ms=4)
        else:
            for j in range(min(da.sizes[da.dims[1]], 16)):
                ax.plot(x, da.isel({da.dims[1]: j}).values, ".-", ms=3, lw=1)
        if da.ndim:
            ax.set_xlabel(str(da.dims[0]))
        unit = da.attrs.get("units", "")
        ax.set_ylabel(f"{self.variable} ({unit})" if unit else self.variable)
        state = "done" if event.final else "running"
        ax.set_title(
            f"{event.run_id}: {event.points_done}/{event.points_total} points ({state})", fontsize=9
        )
        self.figure.tight_layout()
        self.figure.canvas.draw()

    def _show(self) -> None:
        if not _in_notebook():
            return
        import io

        from IPython.display import Image, display

        # a PNG of our own: works whatever matplotlib backend the kernel selected
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=80)
        image = Image(data=buffer.getvalue(), format="png")
        if self._handle is None:
            self._handle = display(image, display_id=True)
        else:
            self._handle.update(image)
