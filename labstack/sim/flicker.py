"""1/f noise as a sum of Ornstein-Uhlenbeck processes, exact at any sampling.

A 1/f spectrum between ``f_low`` and ``f_high`` is built from OU processes (each
a Lorentzian) with corner frequencies ``f_k`` spaced ``per_decade`` to a decade.
An OU process of variance ``v`` and rate ``g = 2 pi f_k`` has the one-sided
spectrum ``4 v g / (g^2 + w^2)``; with every ``v = A d`` (``d`` the spacing of
``ln f_k``) the sum is ``A / f`` to within a ripple of a few per cent between the
corners (``A = S_white f_corner``: the 1/f part equals the white floor at the
corner). :meth:`Flicker.psd` is that sum, the closed form the tests compare a
measured spectrum with.

Each process is advanced exactly over any step (``x -> x e^{-g dt} + sqrt(v (1 -
e^{-2 g dt})) xi``), so a series sampled every ``period`` is exactly the AR(1) sum
whose spectrum :meth:`Flicker.sampled_psd` gives, and the state carries over from
one acquisition to the next however long the wait between them. Components that
barely move during a series (``g T < 1e-3``) are held constant over it and then
advanced exactly, which costs nothing for the slow decades. The recursions of a
series run in one compiled loop (:func:`_ar1_sum`): the same arithmetic in the same
order as one ``scipy.signal.lfilter`` per component, bit for bit, without the
temporary arrays; the normal draws, in the same order, are most of what is left.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _ar1_sum(out: np.ndarray, xi: np.ndarray, a: np.ndarray, scale: np.ndarray,
             state: np.ndarray, frozen: np.ndarray) -> None:
    """Add every component to ``out`` (n, c) in component order and leave each moving
    one's state at its last sample: a frozen component adds its state; the m-th moving
    one is ``x[i] = scale xi[m, i] + a x[i-1]`` with ``x[-1]`` its state."""
    n, c = out.shape
    m = 0
    for k in range(a.shape[0]):
        if frozen[k]:
            for i in range(n):
                for j in range(c):
                    out[i, j] += state[k, j]
            continue
        ak, sk = a[k], scale[k]
        y = np.empty(c)
        for j in range(c):
            y[j] = xi[m, 0, j] * sk + ak * state[k, j]
            out[0, j] += y[j]
        for i in range(1, n):
            for j in range(c):
                y[j] = xi[m, i, j] * sk + ak * y[j]
                out[i, j] += y[j]
        for j in range(c):
            state[k, j] = y[j]
        m += 1


class Flicker:
    """``n_channels`` independent 1/f noises of level ``amplitude`` (V^2: ``S(f) = amplitude / f``)."""

    def __init__(
        self,
        n_channels: int,
        amplitude: float,
        f_low: float,
        f_high: float,
        rng: np.random.Generator,
        per_decade: int = 2,
    ) -> None:
        if not (0 < f_low < f_high):
            raise ValueError(f"need 0 < f_low < f_high, got {f_low}, {f_high}")
        decades = np.log10(f_high / f_low)
        count = max(1, int(np.ceil(decades * per_decade)) + 1)
        self.freqs = np.logspace(np.log10(f_low), np.log10(f_high), count)
        spacing = np.log(10.0) / per_decade
        self.rates = 2 * np.pi * self.freqs
        self.variance = np.full(count, amplitude * spacing)
        self.rng = rng
        self.state = rng.standard_normal((count, n_channels)) * np.sqrt(self.variance)[:, None]

    @property
    def n_channels(self) -> int:
        return self.state.shape[1]

    def psd(self, f: np.ndarray) -> np.ndarray:
        """One-sided spectral density (V^2/Hz) of the continuous process at ``f``."""
        w = 2 * np.pi * np.asarray(f, dtype=float)[..., None]
        g, v = self.rates, self.variance
        return np.sum(4 * v * g / (g**2 + w**2), axis=-1)

    def sampled_psd(self, f: np.ndarray, period: float) -> np.ndarray:
        """One-sided spectral density of the series sampled every ``period`` (aliasing included)."""
        w = 2 * np.pi * np.asarray(f, dtype=float)[..., None]
        a = np.exp(-self.rates * period)
        v = self.variance
        return np.sum(2 * period * v * (1 - a**2) / np.abs(1 - a * np.exp(-1j * w * period)) ** 2, axis=-1)

    def value(self) -> np.ndarray:
        """The noise of every channel now."""
        return self.state.sum(axis=0)

    def advance(self, dt: float) -> None:
        """Let ``dt`` seconds pass (exact for every component)."""
        if dt <= 0:
            return
        a = np.exp(-self.rates * dt)[:, None]
        kick = np.sqrt(self.variance * (1 - a[:, 0] ** 2))[:, None]
        self.state = self.state * a + kick * self.rng.standard_normal(self.state.shape)

    def series(self, n: int, period: float) -> np.ndarray:
        """``(n, n_channels)`` samples ``period`` apart; the first is the state now + one period.

        Leaves the state at the last sample.
        """
        out = np.zeros((n, self.n_channels))
        if n == 0:
            return out
        duration = n * period
        a_all = np.exp(-self.rates * period)
        frozen = self.rates * duration < 1e-3  # held over the series, then moved exactly
        moving = int(np.count_nonzero(~frozen))
        xi = self.rng.standard_normal((moving, n, self.n_channels))
        _ar1_sum(out, xi, a_all, np.sqrt(self.variance * (1 - a_all * a_all)), self.state, frozen)
        if moving < frozen.size:
            a = np.exp(-self.rates[frozen] * duration)[:, None]
            kick = np.sqrt(self.variance[frozen] * (1 - a[:, 0] ** 2))[:, None]
            self.state[frozen] = self.state[frozen] * a + kick * self.rng.standard_normal(
                (frozen.size - moving, self.n_channels)
            )
        return out
