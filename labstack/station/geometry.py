"""Where to draw each cell of a chip: positions from the cell count and the couplings.

A station file says how many cells a chip has and which pairs are coupled, not
where the cells sit. Pictures of the chip (the report's chip maps, the
dashboard's chip) need a layout in which coupled cells are neighbours:

* a grid (every coupling ``(i, i + 1)`` inside a row or ``(i, i + cols)``) is drawn
  as that grid, cells numbered row by row, as the virtual chips number them;
* anything else (a chain, no couplers) is laid out row by row, alternate rows
  reversed (a serpentine), so consecutive cells of a chain stay side by side.

``chip_wiring(station_text)`` reads the count and pairs a stored run's station
file names (``attrs["station_file"]``), so a picture needs the data directory only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from labstack.station.files import read_station_file


def _grid_columns(n_cells: int, pairs: list[tuple[int, int]]) -> int | None:
    """The row length of a grid that holds every coupling, or None."""
    gaps = {abs(j - i) for i, j in pairs}
    if not pairs or 1 not in gaps:
        return None
    vertical = gaps - {1}
    if len(vertical) != 1:
        return None
    cols = vertical.pop()
    rows_ok = all(abs(j - i) != 1 or min(i, j) // cols == max(i, j) // cols for i, j in pairs)
    return cols if rows_ok and cols < n_cells else None


def cell_positions(n_cells: int, pairs: Iterable[tuple[int, int]] = ()) -> list[tuple[float, float]]:
    """``(x, y)`` of each cell, unit spacing, row 0 at the top (y grows downwards)."""
    pairs = [(int(a), int(b)) for a, b in pairs]
    cols = _grid_columns(n_cells, pairs)
    if cols is not None:
        return [(float(i % cols), float(i // cols)) for i in range(n_cells)]
    cols = max(1, math.ceil(math.sqrt(n_cells))) if n_cells > 4 else max(n_cells, 1)
    out = []
    for i in range(n_cells):
        row, col = divmod(i, cols)
        out.append((float(cols - 1 - col if row % 2 else col), float(row)))
    return out


def chip_wiring(station_text: str) -> tuple[int, list[tuple[int, int]]]:
    """(cell count, coupled pairs) a station file's text names; nothing is opened."""
    layout = read_station_file("stored", text=station_text, source="stored station file").layout
    return layout.n_cells, [(int(a), int(b)) for a, b in layout.coupler_pairs]
