"""Readings of a two-state cell: where the two levels are, and how many samples are independent.

A cell's readout is a telegraph signal plus amplifier noise. Every routine that
turns readings into states (the bias S-curve, and through
``calibrations/cell_states.py`` the crosstalk, coupler and validation nodes)
splits them halfway between the two levels it finds in the very readings it
thresholds, so a drifted readout offset is followed rather than trusted from an
old calibration. The same routines count a series of states by the number of
*independent* samples in it, which a slow cell makes much smaller than its
length; counting every sample would make binomial errors too small.

Pure numerics: no station, no instrument.
"""

from __future__ import annotations

import numpy as np
from scipy import special

#: histogram bins the mixture refinement works on (bin width << noise for any real readout)
MIXTURE_BINS = 2048


def two_level_threshold(values: np.ndarray) -> tuple[float, float, float, float]:
    """Split readings into two levels; (threshold halfway between them, low, high, noise rms).

    A 1-D k-means split starts a maximum-likelihood fit of two Gaussians of one common
    width (EM on a fine histogram). k-means alone is biased once the levels overlap:
    each cluster loses its tail to the other, so it puts the levels too far apart and
    the noise too low, and a readout of fidelity 0.99 would look like one of 0.999.
    """
    threshold, lo, hi, spread = _kmeans(np.asarray(values, dtype=float))
    return _mixture(np.asarray(values, dtype=float), lo, hi, spread)


def _mixture(values: np.ndarray, lo: float, hi: float, sigma: float) -> tuple[float, float, float, float]:
    """EM for ``(1 - w) N(lo, s) + w N(hi, s)`` on a histogram of ``values``."""
    first, last = float(values.min()), float(values.max())
    if not (hi > lo and sigma > 0 and last > first):
        return 0.5 * (lo + hi), lo, hi, sigma
    counts, edges = np.histogram(values, bins=MIXTURE_BINS, range=(first, last))
    x = 0.5 * (edges[1:] + edges[:-1])
    keep = counts > 0
    k, x = counts[keep].astype(float), x[keep]
    n = k.sum()
    sheppard = (edges[1] - edges[0]) ** 2 / 12.0  # binning adds h^2 / 12 to a variance
    w = float(np.sum(k[x > 0.5 * (lo + hi)]) / n)
    for _ in range(200):
        z0, z1 = (x - lo) / sigma, (x - hi) / sigma
        # responsibilities of the upper level, computed as a logistic to avoid 0 / 0 in the tails
        with np.errstate(over="ignore", divide="ignore"):
            log_odds = 0.5 * (z0 * z0 - z1 * z1) + np.log(w) - np.log1p(-w)
            r1 = 0.5 * (1.0 + np.tanh(0.5 * log_odds))
        n1 = float(np.sum(k * r1))
        n0 = n - n1
        if n1 < 1.0 or n0 < 1.0:  # one population only: keep the k-means answer
            break
        new_lo = float(np.sum(k * (1 - r1) * x) / n0)
        new_hi = float(np.sum(k * r1 * x) / n1)
        var = float(np.sum(k * ((1 - r1) * (x - new_lo) ** 2 + r1 * (x - new_hi) ** 2)) / n) - sheppard
        new_sigma = float(np.sqrt(max(var, 1e-300)))
        done = abs(new_lo - lo) + abs(new_hi - hi) + abs(new_sigma - sigma) < 1e-9 * (abs(hi - lo) + sigma)
        lo, hi, sigma, w = new_lo, new_hi, new_sigma, n1 / n
        if done:
            break
    return 0.5 * (lo + hi), lo, hi, sigma


def _kmeans(values: np.ndarray) -> tuple[float, float, float, float]:
    """Split readings into two levels (1-D k-means); (threshold, low, high, noise rms)."""
    lo, hi = np.percentile(values, [2, 98])
    for _ in range(50):
        threshold = 0.5 * (lo + hi)
        below, above = values[values <= threshold], values[values > threshold]
        if below.size == 0 or above.size == 0:
            break
        new_lo, new_hi = float(below.mean()), float(above.mean())
        if np.isclose(new_lo, lo) and np.isclose(new_hi, hi):
            lo, hi = new_lo, new_hi
            break
        lo, hi = new_lo, new_hi
    threshold = 0.5 * (lo + hi)
    below, above = values[values <= threshold], values[values > threshold]
    spread = np.sqrt(
        (np.sum((below - lo) ** 2) + np.sum((above - hi) ** 2)) / max(values.size - 2, 1)
    )
    return threshold, lo, hi, float(spread)


def effective_count(states: np.ndarray) -> np.ndarray:
    """Independent samples per row of a (points, samples) 0/1 array from lag-1 autocorrelation.

    ``n (1 - rho) / (1 + rho)`` is the large-``n`` count of a two-state Markov chain,
    whose autocorrelation is ``rho^k``. ``rho`` is clipped to ``0 .. 0.99``: an
    anticorrelated row never counts as more than ``n`` samples, a nearly frozen one
    as no fewer than ``n / 199``. A row with no variance has no correlation to
    measure and counts all ``n``.
    """
    n = states.shape[-1]
    x = states - states.mean(axis=-1, keepdims=True)
    var = (x**2).mean(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (x[..., 1:] * x[..., :-1]).mean(axis=-1) / var
    rho = np.clip(np.nan_to_num(rho, nan=0.0), 0.0, 0.99)
    return n * (1 - rho) / (1 + rho)


#: EM steps at most (each accelerated cycle below takes three), and the change in P below
#: which every row has converged
POINT_EM_ITERATIONS = 300
POINT_EM_TOLERANCE = 1e-9
#: levels this many noise sigmas apart do not overlap (each tail past the midpoint < 1e-9):
#: the share is as good as a count
NO_OVERLAP_SIGMA = 12.0


class _PointEM:
    """One EM step of :func:`point_shares` on readings centred per row.

    Each step needs per row only the sums of r and of r x (sufficient statistics): with
    x centred per row, the lower level is mean - gap <r>, the gap sum(r (x - low)) / sum(r),
    and the noise E[(x - low)^2] - 2 gap E[r (x - low)] + gap^2 E[r] (the r^2 terms of
    E[(x - low - r gap)^2] + gap^2 E[r (1 - r)] cancel). Three passes over the readings a
    step instead of a dozen.
    """

    def __init__(self, x: np.ndarray) -> None:
        self.centre = x.mean(axis=1)
        self.xc = x - self.centre[:, None]
        self.var = np.mean(self.xc * self.xc, axis=1)
        self.m = x.shape[1]
        self.log_odds = np.empty_like(self.xc)

    def __call__(self, p: np.ndarray, low: np.ndarray, gap: float, noise: float) -> tuple[np.ndarray, np.ndarray, float, float]:
        """``(p, low, gap, noise)`` after one step; ``low`` is each row's centred lower level."""
        m = self.m
        step = gap / noise
        slope = step / noise
        log_odds = np.multiply(self.xc, slope, out=self.log_odds)
        log_odds += (np.log(p / (1 - p)) - slope * low - 0.5 * step * step)[:, None]
        r = special.expit(log_odds, out=log_odds)
        sum_r = r.sum(axis=1)
        sum_rx = np.einsum("ij,ij->i", r, self.xc)
        new_p = np.clip(sum_r / m, 1e-9, 1 - 1e-9)
        new_low = -gap * sum_r / m
        new_gap = float((sum_rx - new_low * sum_r).sum() / max(float(sum_r.sum()), 1e-300))
        spread = self.var + new_low * new_low  # E[(x - low)^2] per row (x centred)
        mean_rx = (sum_rx - new_low * sum_r) / m  # E[r (x - low)] per row
        variance = float(np.mean(spread - 2 * new_gap * mean_rx + new_gap * new_gap * sum_r / m))
        return new_p, new_low, new_gap, float(np.sqrt(max(variance, 1e-300)))


def point_shares(readings: np.ndarray, lo: float, hi: float, sigma: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Each row's share of the upper level, the offset both levels sit at in that row,
    and the levels' separation in noise sigmas within a row.

    The run's two levels (``lo``, ``hi``) and noise ``sigma``, fitted on all rows
    together, start it. A row (one sweep point, read over a second or more) has the
    levels shifted by the amplifier's slow offset wander, which a fixed threshold turns
    into a misassignment that differs between the levels and moves from row to row.
    Here each row's shift is fitted with its share, and the separation and the noise
    within a row with all rows (EM of the two-Gaussian mixture; the pooled noise holds
    the wander too, and would overstate how much the levels overlap). Returns
    ``(share, shift, separation / noise)``.

    The EM converges linearly and slowly here (the shared gap and noise couple every
    row): plain steps left P ~3e-5 short of its fixed point after 60 steps on a 61-point
    S-curve. SQUAREM (Varadhan & Roland 2008: two steps, an extrapolation along them,
    one more step to stabilise) reaches the same fixed point to 1e-9 in fewer steps; an
    extrapolation that leaves the parameter space falls back to the plain step.
    """
    x = np.asarray(readings, dtype=float)
    step = (hi - lo) / sigma
    p = np.clip(((x - lo) / sigma > 0.5 * step).mean(axis=1), 1e-6, 1 - 1e-6)
    e = special.ndtr(-0.5 * step)
    p = np.clip((p - e) / (1 - 2 * e), 1e-6, 1 - 1e-6)
    em = _PointEM(x)
    low = np.full(x.shape[0], float(lo)) - em.centre  # each row's lower level, centred
    gap, noise = float(hi - lo), float(sigma)
    scale = float(sigma)  # gap and noise enter the extrapolation in units of the start noise

    def pack(p: np.ndarray, gap: float, noise: float) -> np.ndarray:
        return np.concatenate([p, [gap / scale, noise / scale]])

    def converged(a: tuple, b: tuple) -> bool:
        return bool(np.max(np.abs(b[0] - a[0])) < POINT_EM_TOLERANCE and abs(b[2] - a[2]) < 1e-9 * abs(a[2]))

    state = (p, low, gap, noise)
    n = x.shape[0]
    steps = 0
    while steps < POINT_EM_ITERATIONS:
        one = em(*state)
        two = em(*one)
        steps += 2
        if converged(state, one) or converged(one, two):
            state = two
            break
        t0, t1, t2 = pack(state[0], state[2], state[3]), pack(one[0], one[2], one[3]), pack(two[0], two[2], two[3])
        r, v = t1 - t0, t2 - 2 * t1 + t0
        norm_v = float(np.sqrt(v @ v))
        alpha = -float(np.sqrt(r @ r)) / norm_v if norm_v > 0 else -1.0
        alpha = min(alpha, -1.0)  # -1 is the plain second step
        t = t0 - 2 * alpha * r + alpha * alpha * v
        jump_p, jump_gap, jump_noise = t[:n], t[n] * scale, t[n + 1] * scale
        if np.all((jump_p > 0) & (jump_p < 1)) and jump_gap > 0 and jump_noise > 0:
            # each row's lower level follows its share and the gap (the EM's own relation)
            jump = (jump_p, -jump_gap * jump_p, jump_gap, jump_noise)
            state = em(*jump)
        else:
            state = em(*two)
        steps += 1
    p, low, gap, noise = state
    low = low + em.centre
    return p, low - lo, gap / noise


def share_variance_factor(q: np.ndarray, step: float) -> np.ndarray:
    """Variance of the mixture's share estimate over the binomial ``q (1 - q) / n``, at share ``q``,
    for levels ``step`` noise sigmas apart with the row's offset fitted too (expected
    Fisher information of one reading, by quadrature). 1 for levels far apart; larger as
    they overlap, where a reading no longer says which level it came from."""
    q = np.clip(np.asarray(q, dtype=float), 1e-9, 1 - 1e-9)
    if step >= NO_OVERLAP_SIGMA:  # (and the quadrature's densities would underflow between them)
        return np.ones_like(q)
    z = np.linspace(-9.0, step + 9.0, 1201)
    dz = z[1] - z[0]
    phi0 = np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
    phi1 = np.exp(-0.5 * (z - step) ** 2) / np.sqrt(2 * np.pi)
    f = q[:, None] * phi1 + (1 - q[:, None]) * phi0
    sp = (phi1 - phi0) / f
    sd = (q[:, None] * phi1 * (z - step) + (1 - q[:, None]) * phi0 * z) / f
    ipp = (sp * sp * f).sum(axis=1) * dz
    ipd = (sp * sd * f).sum(axis=1) * dz
    idd = (sd * sd * f).sum(axis=1) * dz
    var = idd / (ipp * idd - ipd * ipd)
    return var / (q * (1 - q))
