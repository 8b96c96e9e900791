"""What one sample of the chip says: means and pair correlations with honest errors.

Readings are thresholded per cell (:func:`labstack.train.calibration.digitize`, the
split the calibration nodes use), either fitted on this very sample or, in the
training loop, by the run's :class:`~labstack.train.readout.ReadoutSplit` (fitted
once, a drifted readout level followed). A reading misassigned with probability ``e_i`` scales a mean by
``1 - 2 e_i`` and a pair correlation by ``(1 - 2 e_a)(1 - 2 e_b)``; both are undone, so
the moments are the chip's, not the readout's. Errors use the effective sample size
of each cell's state series (lag-1 autocorrelation): a slow cell's samples are not
independent and must not be counted as if they were.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labstack.fit import ising
from labstack.train.calibration import n_effective
from labstack.train.exact import features
from labstack.train.readout import ReadoutError, ReadoutSplit

__all__ = ["Moments", "ReadoutError", "from_states", "measure", "unmix"]


@dataclass(frozen=True)
class Moments:
    """Means then edge correlations (``value``), their standard errors, and the pieces."""

    value: np.ndarray
    stderr: np.ndarray
    #: covariance of the (unmixed) sufficient statistics per sample: the Fisher matrix
    fisher: np.ndarray
    misassignment: np.ndarray
    n_samples: int
    n_eff: float
    spins: np.ndarray  # (samples, cells) ±1 int8 as read (not unmixed)

    def distribution(self) -> np.ndarray:
        """Empirical distribution over all states, readout unmixed, clipped and renormalised."""
        n = self.spins.shape[1]
        raw = np.bincount(ising.state_index(self.spins), minlength=2**n) / len(self.spins)
        p = np.clip(unmix(raw, self.misassignment), 0.0, None)
        return p / p.sum()


def unmix(p: np.ndarray, errors: np.ndarray) -> np.ndarray:
    """Undo per-cell symmetric misassignment on a distribution over ``2**n`` states
    (state ``k`` has cell ``i`` up iff bit ``i`` is set: tensor axis ``a`` is cell ``n-1-a``)."""
    n = len(errors)
    t = p.reshape([2] * n)
    for axis in range(n):
        e = float(errors[n - 1 - axis])
        m_inv = np.linalg.inv(np.array([[1 - e, e], [e, 1 - e]]))
        t = np.moveaxis(np.tensordot(m_inv, t, axes=([1], [axis])), 0, axis)
    return t.reshape(-1)


def measure(readings: np.ndarray, edges: np.ndarray, cells: list[int] | None = None,
            split: ReadoutSplit | None = None) -> Moments:
    """Moments of ``readings`` (cells, samples) volts on the target's ``edges``.

    ``split``: the readout split to threshold with (None: fitted on ``readings``)."""
    readings = np.asarray(readings)
    if split is None:
        split = ReadoutSplit.fit(readings, cells)
    return from_states(split.states(readings), split.misassignment, edges)


def from_states(states01: np.ndarray, errors: np.ndarray, edges: np.ndarray) -> Moments:
    """Moments of 0/1 ``states01`` (cells, samples) read with misassignment ``errors``."""
    spins = (2 * np.asarray(states01, dtype=np.int8) - 1).T  # (samples, cells)
    e = np.asarray(edges, dtype=int).reshape(-1, 2)
    f = features(spins, e)
    n_samples = f.shape[0]
    scale = np.concatenate([1 - 2 * errors, (1 - 2 * errors[e[:, 0]]) * (1 - 2 * errors[e[:, 1]])])
    raw = f.mean(axis=0)
    value = raw / scale
    ess = n_effective(np.asarray(states01, dtype=np.float64))
    ess_f = np.concatenate([ess, np.minimum(ess[e[:, 0]], ess[e[:, 1]])]) if len(e) else ess
    var = np.clip(1.0 - raw**2, 1.0 / n_samples, None) / np.maximum(ess_f, 1.0)
    stderr = np.sqrt(var) / scale
    centred = f - raw
    fisher = (centred.T @ centred) / n_samples / np.outer(scale, scale)
    return Moments(value, stderr, fisher, np.asarray(errors, dtype=float), n_samples,
                   float(np.min(ess)), spins.astype(np.int8))
