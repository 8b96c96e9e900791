"""Each target cell's readout split, fitted once per run and followed, not refitted per sample.

Fitting two Gaussian levels to every cell's readings (:func:`~labstack.fit.two_level.
two_level_threshold`, an EM on a histogram) is most of an iteration's computing, yet
the levels of a cell do not move between two iterations of one run: the programmed
fields change which level a cell sits in, not where the levels are. So the split is
fitted on the run's first sample and then only *checked*: the mean reading on each
side of the threshold is compared with the same mean at the fit (a few vectorised
sums over all cells). A cell whose side means moved by more than ``tolerance``
noise sigmas (a readout that drifted), or whose fit saw one level only, is refitted
on the present sample; the others keep their threshold and misassignment.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from labstack.train.calibration import digitize


class ReadoutError(RuntimeError):
    """A cell whose readings show no two levels: its statistics would be meaningless."""


#: a side mean this many noise sigmas from the fit's: the cell's levels moved, refit it
TOLERANCE_SIGMA = 0.2


@dataclass(frozen=True)
class ReadoutSplit:
    """Per cell: threshold, misassignment, noise, and the side means the fit saw."""

    threshold: np.ndarray
    misassignment: np.ndarray
    noise: np.ndarray
    low_mean: np.ndarray  # mean reading below the threshold at the fit (NaN: too few)
    high_mean: np.ndarray
    refits: int = 0  # cells refitted after the first fit (drift followed)

    @classmethod
    def fit(cls, readings: np.ndarray, cells: list[int] | None = None) -> ReadoutSplit:
        """Fit every row of ``readings`` (cells, samples) volts; :class:`ReadoutError` if one is flat."""
        values = np.asarray(readings, dtype=np.float64)
        splits = [digitize(r) for r in values]
        bad = [k for k, d in enumerate(splits) if not d.ok]
        if bad:
            names = [cells[k] for k in bad] if cells is not None else bad
            raise ReadoutError(f"cells {names} gave no two-level readout")
        threshold = np.array([d.threshold for d in splits])
        low, high = _side_means(values, threshold)
        return cls(threshold, np.array([d.misassignment for d in splits]), np.array([d.noise for d in splits]),
                   low, high)

    def states(self, readings: np.ndarray) -> np.ndarray:
        """0/1 states (cells, samples) of ``readings`` at the fitted thresholds."""
        return np.asarray(readings) > self.threshold[:, None]

    def follow(self, readings: np.ndarray, cells: list[int] | None = None,
               tolerance: float = TOLERANCE_SIGMA) -> ReadoutSplit:
        """This split, with the cells whose levels moved in ``readings`` refitted on them."""
        values = np.asarray(readings)  # float32 as read
        low, high = _side_means(values, self.threshold)
        with np.errstate(invalid="ignore"):
            moved = (np.abs(low - self.low_mean) > tolerance * self.noise) | \
                    (np.abs(high - self.high_mean) > tolerance * self.noise)
        moved = np.flatnonzero(moved)
        if moved.size == 0:
            return self
        part = ReadoutSplit.fit(values[moved], [cells[k] for k in moved] if cells is not None else list(moved))
        out = {name: getattr(self, name).copy() for name in ("threshold", "misassignment", "noise", "low_mean", "high_mean")}
        for name, arr in out.items():
            arr[moved] = getattr(part, name)
        return replace(self, **out, refits=self.refits + int(moved.size))


def _side_means(values: np.ndarray, threshold: np.ndarray, min_count: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Mean reading below and above each row's threshold (NaN where fewer than ``min_count``)."""
    up = values > threshold[:, None]
    n_up = up.view(np.uint8).sum(axis=1, dtype=np.int64)  # twice as fast as count_nonzero per row
    n_low = values.shape[1] - n_up
    # sums in the readings' own precision (numpy sums a row pairwise: a float32 row of
    # 10^5 readings to ~1e-6 of its size, five decades below the tolerance of a drift
    # check; a float64 accumulation of a float32 block costs three times as much)
    total = values.sum(axis=1).astype(np.float64)
    sum_up = (values * up).sum(axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        high = np.where(n_up >= min_count, sum_up / n_up, np.nan)
        low = np.where(n_low >= min_count, (total - sum_up) / n_low, np.nan)
    return low, high
