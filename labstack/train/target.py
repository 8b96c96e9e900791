"""Training targets: a model ``{"cells", "h_K", "J_K"}`` or data ``{"cells", "samples"}``.

A target file is JSON. ``cells`` are chip cell numbers. A model gives the fields
``h_K`` (kelvin, one per cell, in the order of ``cells``) and the couplings ``J_K`` as
``[i, j, J]`` rows where ``i`` and ``j`` are chip cell numbers from ``cells``; the
target distribution is ``P(s) ∝ exp((Σ h_i s_i + Σ J_ij s_i s_j) / T_eff)`` at the
chip's calibrated effective temperature. Data give ``samples``, rows of ``±1`` in the
order of ``cells``; every fifth row (rows 4, 9, 14, ...) is held out to score the
trained chip, the others are trained on.

Everything that can be wrong with a file is found before an instrument is touched:
:func:`load_target` checks the file alone (shape, finite numbers, ±1 samples, cells
named once); :func:`check_on_chip` checks it against the chip (cells that exist and
are not flagged dead, couplings only where the chip has a calibrated coupler). Each
error is a :class:`TargetError` naming the file and the entry.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: every HOLDOUT_EVERY-th sample row (counting from 1) of a data target is held out
HOLDOUT_EVERY = 5
#: at most this many cells in a target: the statistics and the scores are exact enumerations
MAX_CELLS = 16


class TargetError(ValueError):
    """A target file that cannot be trained on; the message names the file and the entry."""


@dataclass
class Target:
    """A checked target: cells, and either a model (``h_K``, ``couplings``) or ``samples``."""

    path: str
    cells: list[int]
    h_K: np.ndarray | None = None
    #: (i, j, J_K) with chip cell numbers i < j
    couplings: list[tuple[int, int, float]] = field(default_factory=list)
    samples: np.ndarray | None = None  # (n, len(cells)) int8 ±1

    @property
    def kind(self) -> str:
        return "model" if self.samples is None else "data"

    @property
    def n(self) -> int:
        return len(self.cells)

    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """(training rows, held-out rows) of a data target."""
        if self.samples is None:
            raise ValueError("a model target has no samples")
        rows = np.arange(len(self.samples))
        held = (rows + 1) % HOLDOUT_EVERY == 0
        return self.samples[~held], self.samples[held]


def _fail(path: str, entry: str, message: str) -> TargetError:
    return TargetError(f"{path}: {entry}: {message}")


def _number(path: str, entry: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(path, entry, f"{value!r} is not a number")
    if not math.isfinite(float(value)):
        raise _fail(path, entry, f"{value!r} is not a finite number")
    return float(value)


def _cell(path: str, entry: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(path, entry, f"{value!r} is not a cell number")
    return int(value)


def parse_target(doc: Any, path: str = "<target>") -> Target:
    """A target from its JSON document; checks everything the file alone can show."""
    if not isinstance(doc, dict):
        raise _fail(path, "top level", "expected an object with 'cells' and 'h_K'/'J_K' or 'samples'")
    if "cells" not in doc:
        raise _fail(path, "cells", "missing")
    raw_cells = doc["cells"]
    if not isinstance(raw_cells, list) or not raw_cells:
        raise _fail(path, "cells", "expected a non-empty list of cell numbers")
    cells = [_cell(path, f"cells[{k}]", c) for k, c in enumerate(raw_cells)]
    for k, c in enumerate(cells):
        if c < 0:
            raise _fail(path, f"cells[{k}]", f"cell {c} does not exist (cell numbers start at 0)")
        if c in cells[:k]:
            raise _fail(path, f"cells[{k}]", f"cell {c} is named twice")
    if len(cells) > MAX_CELLS:
        raise _fail(path, "cells", f"{len(cells)} cells; at most {MAX_CELLS} (exact enumeration)")
    is_model = "h_K" in doc or "J_K" in doc
    is_data = "samples" in doc
    if is_model == is_data:
        raise _fail(path, "top level", "give either a model ('h_K' and 'J_K') or data ('samples'), not both or neither")
    if is_data:
        return Target(path, cells, samples=_samples(path, doc["samples"], len(cells)))
    h = doc.get("h_K", [0.0] * len(cells))
    if not isinstance(h, list) or len(h) != len(cells):
        raise _fail(path, "h_K", f"expected {len(cells)} fields (one per cell), got {h!r:.60}")
    h_K = np.array([_number(path, f"h_K[{k}]", v) for k, v in enumerate(h)])
    rows = doc.get("J_K", [])
    if not isinstance(rows, list):
        raise _fail(path, "J_K", "expected a list of [i, j, J] rows")
    couplings: list[tuple[int, int, float]] = []
    seen: set[tuple[int, int]] = set()
    for k, row in enumerate(rows):
        entry = f"J_K[{k}]"
        if not isinstance(row, list) or len(row) != 3:
            raise _fail(path, entry, f"expected [i, j, J], got {row!r}")
        i, j = _cell(path, f"{entry}[0]", row[0]), _cell(path, f"{entry}[1]", row[1])
        value = _number(path, f"{entry}[2]", row[2])
        for side, c in (("i", i), ("j", j)):
            if c not in cells:
                raise _fail(path, entry, f"{side} = {c} is not one of the target's cells {cells}")
        if i == j:
            raise _fail(path, entry, f"couples cell {i} to itself")
        key = (min(i, j), max(i, j))
        if key in seen:
            raise _fail(path, entry, f"cells {key[0]} and {key[1]} are coupled twice")
        seen.add(key)
        couplings.append((key[0], key[1], value))
    return Target(path, cells, h_K=h_K, couplings=couplings)


def _samples(path: str, rows: Any, n: int) -> np.ndarray:
    if not isinstance(rows, list) or len(rows) < 2 * HOLDOUT_EVERY:
        raise _fail(path, "samples", f"expected a list of at least {2 * HOLDOUT_EVERY} rows of ±1")
    out = np.empty((len(rows), n), dtype=np.int8)
    for k, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != n:
            raise _fail(path, f"samples[{k}]", f"expected {n} values (one per cell), got {row!r:.60}")
        for c, v in enumerate(row):
            if isinstance(v, bool) or v not in (1, -1):
                raise _fail(path, f"samples[{k}][{c}]", f"{v!r} is not +1 or -1")
        out[k] = row
    return out


def load_target(path: str | Path) -> Target:
    """Read and check a target file (the file alone; see :func:`check_on_chip`)."""
    p = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise TargetError(f"{p}: cannot read: {exc.strerror or exc}") from None
    try:
        doc = json.loads(text, parse_constant=lambda c: float(c))  # NaN/Infinity: caught as non-finite
    except json.JSONDecodeError as exc:
        raise TargetError(f"{p}: not JSON: {exc}") from None
    return parse_target(doc, p)


def check_on_chip(target: Target, n_cells: int, pairs: list[tuple[int, int]], usable: np.ndarray,
                  coupler_ok: np.ndarray) -> list[int]:
    """Check ``target`` against the chip; the coupler index of each graph edge it uses.

    ``usable``: cells that are calibrated and not flagged (per cell); ``coupler_ok``:
    couplers with a calibrated zero and slope. The graph of a target is the chip's
    calibrated couplers between its cells (a data target is trained on all of them; a
    model target's ``J_K`` may only name pairs among them, the others are 0).
    """
    path = target.path
    for k, c in enumerate(target.cells):
        if c >= n_cells:
            raise _fail(path, f"cells[{k}]", f"cell {c} does not exist (the chip has cells 0-{n_cells - 1})")
        if not usable[c]:
            raise _fail(path, f"cells[{k}]", f"cell {c} is flagged dead or uncalibrated in the calibration state")
    index = {(min(a, b), max(a, b)): k for k, (a, b) in enumerate(pairs)}
    for k, (i, j, _) in enumerate(target.couplings):
        coupler = index.get((i, j))
        if coupler is None:
            raise _fail(path, f"J_K[{k}]", f"cells {i} and {j} are not coupled on this chip")
        if not coupler_ok[coupler]:
            raise _fail(path, f"J_K[{k}]", f"coupler {coupler} between cells {i} and {j} is not calibrated")
    members = set(target.cells)
    return [k for k, (a, b) in enumerate(pairs) if a in members and b in members and coupler_ok[k]]
