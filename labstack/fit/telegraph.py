"""A two-state cell's switching rates from a series of its read-out states, misreadings and all.

A cell sampled every ``Delta`` is a two-state Markov chain: with ``p`` its share of
time up and ``lambda = exp(-Delta / tau_c)``, the states' autocovariance at lag
``k`` is ``p (1 - p) lambda^k``. A readout that misreads each sample with
probability ``e`` adds misreadings that are independent from one sample to the
next (nearly: the amplifier's low-pass correlates its noise over a sample or two),
so the *observed* autocovariance is ``(1 - 2e)^2 p (1 - p) lambda^k`` at lags
``k >= 3`` and more at lags 0 to 2. Counting transitions instead, as a perfect
readout allows, mistakes every misreading for two switches and makes a cell read
with fidelity 0.99 look several per cent faster than it is.

So :func:`switching_rates` fits ``C(k) = A lambda^k`` to the observed autocovariance
at lags from 3 to about three correlation times (a weighted line through
``ln C(k)``, the autocovariances first corrected for the variance of the mean they
subtract, which would otherwise steepen the decay of a slow cell), and recovers ``p`` and ``e`` from ``A`` and the observed mean
``m = e + (1 - 2e) p``: ``(1 - 2e)^2 = 4 (A + (m - 1/2)^2)``. Then
``tau_c = -Delta / ln lambda`` and ``r0 = sqrt(r_up r_down) = sqrt(p (1 - p)) / tau_c``.
The error of ``ln r0`` is a jackknife over blocks of the series (each much longer
than ``tau_c``), so it carries every correlation the model leaves out.

Pure numerics: no station, no instrument.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: lags (in samples) are taken on a geometric grid from FIRST_LAG to the longest used
MAX_LAGS = 24
#: jackknife blocks: as many as keep each at least BLOCK_TIMES correlation times long, up to
#: MAX_BLOCKS (the variance of a jackknife variance falls as 2 / blocks)
MAX_BLOCKS = 40
MIN_BLOCKS = 10
BLOCK_TIMES = 10.0


@dataclass(frozen=True)
class Rates:
    ln_r0: float
    ln_r0_err: float
    tau_c_s: float
    p_up: float
    misread: float

    @property
    def ok(self) -> bool:
        return math.isfinite(self.ln_r0) and math.isfinite(self.ln_r0_err)


NONE = Rates(math.nan, math.nan, math.nan, math.nan, math.nan)


#: the first lag used: a sample or two apart, misreadings are still correlated through the
#: amplifier's low-pass (a^2 = 0.06 of a reading left two samples on at a = 0.25; a^3 = 0.016)
FIRST_LAG = 3


def _lags(longest: int) -> np.ndarray:
    return np.unique(np.round(np.geomspace(FIRST_LAG, max(longest, FIRST_LAG + 2), MAX_LAGS)).astype(int))


def _estimate(mean: float, cov: np.ndarray, lags: np.ndarray, period: float) -> tuple[float, float, float, float]:
    """(ln r0, tau_c, p, e) from a mean and the autocovariances at ``lags``."""
    use = cov > 0
    if use.sum() < 3:
        return (math.nan,) * 4
    k, y, w = lags[use].astype(float), np.log(cov[use]), cov[use] ** 2
    kw = np.sum(w * k) / w.sum()
    yw = np.sum(w * y) / w.sum()
    slope = np.sum(w * (k - kw) * (y - yw)) / np.sum(w * (k - kw) ** 2)
    amplitude = math.exp(yw - slope * kw)
    if not slope < 0:
        return (math.nan,) * 4
    tau = -period / slope
    contrast2 = 4 * (amplitude + (mean - 0.5) ** 2)  # (1 - 2e)^2
    if not 0 < contrast2 <= 1.0 + 1e-9:
        contrast2 = min(max(contrast2, 1e-6), 1.0)
    contrast = math.sqrt(contrast2)
    e = 0.5 * (1 - contrast)
    p = 0.5 + (mean - 0.5) / contrast
    if not 0 < p < 1:
        return (math.nan,) * 4
    return 0.5 * math.log(p * (1 - p)) - math.log(tau), tau, p, e


def switching_rates(states: np.ndarray, period: float, min_transitions: int = 20) -> Rates:
    """Rates of one cell from its 0/1 series sampled every ``period``; :data:`NONE` if unusable.

    Unusable: fewer than ``min_transitions`` switches or stays of either kind (too
    slow or too fast for the sample rate), or a series whose autocovariance does not decay.
    """
    s = np.asarray(states, dtype=bool)
    prev, nxt = s[:-1], s[1:]
    n0, n1 = int((~prev).sum()), int(prev.sum())
    n01, n10 = int((~prev & nxt).sum()), int((prev & ~nxt).sum())
    if min(n01, n10) < min_transitions or min(n0 - n01, n1 - n10) < min_transitions:
        return NONE
    flips = n01 / n0 + n10 / n1  # 1 - lambda, inflated by misreadings: a lower bound on lambda
    if flips >= 1:
        return NONE
    correlation = -1.0 / math.log(1 - flips)
    x = s.astype(np.float64)
    n = x.size
    blocks = int(np.clip(n // (BLOCK_TIMES * 3 * correlation), MIN_BLOCKS, MAX_BLOCKS))
    lags = _lags(int(min(3 * correlation + 4, n // (4 * blocks))))
    size = n // blocks
    edges = np.arange(0, blocks * size + 1, size)
    # per block: sum of x and, for each lag, sum of x_t x_(t+k) over t in the block
    sums = np.add.reduceat(x[: blocks * size], edges[:-1])
    prods = np.empty((blocks, lags.size))
    for j, k in enumerate(lags):
        pk = np.zeros(blocks * size)
        pk[: min(n - k, blocks * size)] = (x[:-k] * x[k:])[: blocks * size]
        prods[:, j] = np.add.reduceat(pk, edges[:-1])

    def moments(drop: int | None) -> tuple[float, np.ndarray]:
        keep = np.ones(blocks, dtype=bool)
        if drop is not None:
            keep[drop] = False
        count = size * keep.sum()  # pairs per lag, to within k of them: k << a block
        mean = sums[keep].sum() / count
        cov = prods[keep].sum(axis=0) / count - mean * mean
        return float(mean), cov

    def estimate(mean: float, cov: np.ndarray, count: int) -> tuple[float, float, float, float]:
        """As :func:`_estimate`, once more with the autocovariances corrected for the error of
        the mean they subtract (it lowers every lag by var(mean), steepening the decay)."""
        first = _estimate(mean, cov, lags, period)
        if not math.isfinite(first[0]):
            return first
        lam = math.exp(-period / first[1])
        if not lam < 1.0:  # a decay too slow to tell from none at this sample period: no rate
            return math.nan, math.nan, math.nan, math.nan
        amplitude = first[2] * (1 - first[2]) * (1 - 2 * first[3]) ** 2
        var_mean = amplitude * (1 + lam) / ((1 - lam) * count)
        return _estimate(mean, cov + var_mean, lags, period)

    mean, cov = moments(None)
    ln_r0, tau, p, e = estimate(mean, cov, blocks * size)
    if not math.isfinite(ln_r0):
        return NONE
    jack = np.array([estimate(*moments(b), (blocks - 1) * size)[0] for b in range(blocks)])
    if not np.all(np.isfinite(jack)):
        return NONE
    err = math.sqrt((blocks - 1) / blocks * np.sum((jack - jack.mean()) ** 2))
    return Rates(ln_r0, err, tau, p, e)


def counted_rates(states: np.ndarray, period: float, min_transitions: int = 20) -> Rates:
    """Rates from counting transitions: right only for a perfect readout, since each misreading
    counts as two switches. The model a realistic readout must reject (its tests show it)."""
    s = np.asarray(states, dtype=bool)
    prev, nxt = s[:-1], s[1:]
    n0, n1 = int((~prev).sum()), int(prev.sum())
    n01, n10 = int((~prev & nxt).sum()), int((prev & ~nxt).sum())
    if min(n01, n10) < min_transitions or min(n0 - n01, n1 - n10) < min_transitions:
        return NONE
    a, b = n01 / n0, n10 / n1
    total = a + b
    if total >= 1:
        return NONE
    lam = 1 - total
    tau = -period / math.log(lam)
    ln_r0 = 0.5 * math.log(a) + 0.5 * math.log(b) - math.log(total) - math.log(tau)
    g = 1 / (lam * -math.log(lam))  # d ln(-ln(1-s)) / ds
    da = 0.5 / a - 1 / total + g
    db = 0.5 / b - 1 / total + g
    var = da**2 * a * (1 - a) / n0 + db**2 * b * (1 - b) / n1
    return Rates(ln_r0, math.sqrt(var), tau, a / total, 0.0)


# ------------------------------------------------ correlation time through the amplifier
#: lags (samples) of the voltage autocovariance fitted by :func:`filtered_correlation_time`
FILTERED_LAGS = np.arange(1, 17)
#: samples per block whose mean is removed first: drift and 1/f noise, slow next to the
#: lags used, would otherwise add a near-constant term
FILTERED_BLOCK = 1000
#: candidate correlation times (samples) searched
_TAU_GRID = np.geomspace(0.05, 400.0, 600)


#: series whose autocovariances are computed together (memory: 256 x 20 000 float64, 40 MB)
SERIES_AT_ONCE = 256


def _block_autocovariance(series: np.ndarray, block: int, lags: np.ndarray) -> np.ndarray:
    """(series, lag) autocovariance, each block of ``block`` samples about its own mean."""
    n = series.shape[-1]
    usable = n // block * block
    x = series[:, :usable].astype(np.float64).reshape(series.shape[0], usable // block, block)
    x = x - x.mean(axis=-1, keepdims=True)
    return np.stack([np.mean(x[..., :-k] * x[..., k:], axis=(-2, -1)) for k in lags], axis=-1)


def filtered_correlation_time(voltages: np.ndarray, memory: float) -> np.ndarray:
    """A telegraph signal's correlation time (in samples) from the voltages the amplifier passed,
    without thresholding them; nan where the series shows no switching.

    Why: thresholded states lose a dwell shorter than the amplifier's memory (its low-pass
    leaves ``a = memory`` of the previous reading in each sample), so a cell switching within
    a sample or two looks *slower* than it is, and the more so the faster it is: the states'
    correlation time is not even monotonic in the true one there, and no cut on it can say
    which points to trust. The voltages keep the information. A Markov chain with
    ``lambda = exp(-1 / tau)`` per sample, passed through the first-order low-pass
    ``y_k = a y_(k-1) + (1 - a) x_k``, is an AR(2) process with roots ``lambda`` and ``a``,
    and the amplifier's own noise band-limited by the same filter decays as ``a^k``, so the
    autocovariance at lags ``k >= 1`` is exactly ``c1 lambda^k + c2 a^k`` (a continuous
    telegraph through an RC filter gives the same form), plus a constant ``c0``: removing
    each block's mean (against drift and 1/f noise) lowers every lag by the variance of that
    mean, and at the lags where a fast cell's decay is spent that is most of what is left.
    With ``a`` from the readout node, each candidate ``lambda`` is a linear least-squares
    problem in ``(c1, c2, c0)``; the best one wins. (Fitting ``a`` as well is too loose on 20 000 samples: the two decays
    trade off; the readout node measures it once, on its own data.)

    ``voltages``: (..., n_samples); returns (...) correlation times in samples.
    """
    v = np.asarray(voltages)
    lead, n = v.shape[:-1], v.shape[-1]
    block = min(FILTERED_BLOCK, n)
    lags = FILTERED_LAGS[FILTERED_LAGS < block // 4]
    series = v.reshape(-1, n)
    # a few series at a time: a whole chip's readings in float64, twice over, would be the
    # largest thing a big chip's calibration holds
    cov = np.concatenate(
        [_block_autocovariance(series[i : i + SERIES_AT_ONCE], block, lags)
         for i in range(0, series.shape[0], SERIES_AT_ONCE)]
    ) if series.shape[0] else np.zeros((0, lags.size))
    lam = np.exp(-1.0 / _TAU_GRID)
    best_err = np.full(cov.shape[0], np.inf)
    best_tau = np.full(cov.shape[0], np.nan)
    kk = lags.astype(float)
    basis_a = float(memory) ** kk
    for g, tau in enumerate(_TAU_GRID):
        m = np.stack([lam[g] ** kk, basis_a, np.ones_like(kk)], axis=1)  # (lags, 3)
        gram = m.T @ m
        if abs(np.linalg.det(gram)) < 1e-12 * np.trace(gram) ** 3:
            continue  # lambda = a: the two decays are one
        coef = cov @ m @ np.linalg.inv(gram).T  # (series, 3)
        resid = np.sum((coef @ m.T - cov) ** 2, axis=1)
        better = (resid < best_err) & (coef[:, 0] > 0)
        best_err[better] = resid[better]
        best_tau[better] = tau
    return best_tau.reshape(lead)
