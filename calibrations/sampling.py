"""How fast to sample the cells and how many samples to take, from measured correlation times.

Fridge time is what a calibration costs on hardware, and a sampler that reads every
cell at 100 Hz spends it waiting: a cell's correlation time ``tau_c`` at base
temperature is microseconds. Two samples ``dt`` apart of a two-state cell are
correlated by ``rho = exp(-dt / tau_c)``, so ``n`` samples carry
``n_eff = n (1 - rho) / (1 + rho)`` independent ones. Sampling a few ``tau_c`` of the
slowest cell that matters apart keeps ``n_eff`` within a few per cent of ``n`` at a
tiny fraction of the lab time; the sampler reads all cells at one rate, hence "the
slowest". The routines' errors come from each point's *effective* count
(:func:`labstack.fit.two_level.effective_count`), never from the raw count, so a
faster rate cannot make an error optimistic.

``tau_c`` is measured, never assumed: :func:`probe` takes a short fast burst (1 us
apart, far below any ``tau_c``) at a few bias points and :func:`correlation_times`
reads each cell's from the transition counts of its thresholded states. A cell
switching at reduced field ``g = h / T_eff`` has ``tau_c(g) = tau_c(0) / cosh g`` and
``P(+1) = sigmoid(2 g)``, so ``cosh g = 1 / (2 sqrt(P (1 - P)))`` and any point where
the cell switches at all gives its zero-field value ``tau_c(0) = tau_c(g) cosh g``,
the longest it has (where an S-curve is steepest and a crosstalk or coupler node
parks it). The amplifier's low-pass (``readout.lowpass_tau_s``, from the readout
node) also correlates successive readings: the interval is never below a few of it.

Stored by the bias S-curve node as ``cells.<i>.correlation_time_s`` (zero-field
``tau_c``, seconds); the nodes that sample later read it with :func:`stored_period`.

Also: :func:`samples_for` (raw samples that hold a target effective count) and
:func:`samples_for_stderr` (samples that bring a probability's standard error to a
target, for checks sized by the tolerance they must resolve).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from labstack.calibrations.cell_states import digitize_cells

#: the sampler's range (SAMPle:RATE 1 Hz .. 10 MHz)
MIN_RATE_HZ = 1.0
MAX_RATE_HZ = 10e6
#: a cell needs this many transitions each way in a burst for its tau_c to count
MIN_TRANSITIONS = 8
#: a cell misread more often than this (readout noise) is too noisy to read tau_c from
MAX_MISASSIGNMENT = 0.1


def correlation_times(states: np.ndarray, period_s: float, min_transitions: int = MIN_TRANSITIONS) -> np.ndarray:
    """Zero-field correlation time (s) of each row of 0/1 ``states`` ``(cell, sample)``; NaN
    where too few transitions were seen or the correlation is not resolved.

    A two-state Markov chain's autocovariance falls as ``rho^k`` with
    ``rho = exp(-period / tau_c(g))``. Readout noise misreads single samples at random,
    which lowers the lag-0 and lag-1 covariances alike relative to the chain's but not
    their ratio beyond: ``rho = C(2) / C(1)`` is free of it. Then
    ``tau_c(0) = tau_c(g) cosh g`` with ``cosh g = 1 / (2 sqrt(P (1 - P)))`` (module docstring).
    """
    s = np.asarray(states, dtype=np.float64)
    if s.ndim == 1:
        s = s[None, :]
    prev, nxt = s[:, :-1], s[:, 1:]
    n01 = np.sum((prev == 0) & (nxt == 1), axis=1)
    n10 = np.sum((prev == 1) & (nxt == 0), axis=1)
    x = s - s.mean(axis=1, keepdims=True)
    c1 = np.mean(x[:, 1:] * x[:, :-1], axis=1)
    c2 = np.mean(x[:, 2:] * x[:, :-2], axis=1)
    out = np.full(s.shape[0], np.nan)
    for i in range(s.shape[0]):
        if min(n01[i], n10[i]) < min_transitions or not c1[i] > 0:
            continue
        rho = c2[i] / c1[i]
        if not 0.0 < rho < 1.0:
            continue  # decorrelated within a step or two: tau_c unresolved at this rate
        tau_g = -period_s / math.log(rho)
        p = float(s[i].mean())
        out[i] = tau_g / (2.0 * math.sqrt(p * (1.0 - p)))
    return out


def burst_correlation_times(samples: np.ndarray, period_s: float) -> np.ndarray:
    """Per cell, the zero-field ``tau_c`` from a burst ``(cell, point, sample)`` of readings:
    thresholded (:func:`labstack.calibrations.cell_states.digitize_cells`), read at the
    point where the cell's states are most balanced. NaN for a cell never seen switching
    or read too noisily (misassignment above ``MAX_MISASSIGNMENT``; below, the misreadings
    do not bias the estimate, :func:`correlation_times`)."""
    values = np.asarray(samples, dtype=np.float64)
    digitized = digitize_cells(values)
    out = np.full(values.shape[0], np.nan)
    for i, d in digitized.items():
        if not d.ok or d.misassignment > MAX_MISASSIGNMENT:
            continue
        states = d.states.reshape(values.shape[1], -1)
        p = states.mean(axis=1)
        best = int(np.argmin(np.abs(p - 0.5)))
        out[i] = correlation_times(states[best], period_s)[0]
    return out


def slowest(tau_c: Iterable[float], cells: Iterable[int] | None = None) -> float:
    """The longest finite ``tau_c`` among ``cells`` (default all); NaN if none is known."""
    values = np.asarray(list(tau_c), dtype=float)
    if cells is not None:
        values = values[np.asarray(list(cells), dtype=int)] if values.size else values
    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size else math.nan


def choose_period(
    tau_c_s: float,
    multiple: float,
    lowpass_tau_s: float | None = None,
    lowpass_multiple: float = 5.0,
) -> float:
    """The sample interval: ``multiple`` correlation times of the slowest cell, never below
    ``lowpass_multiple`` amplifier time constants, within the sampler's rates."""
    if not (math.isfinite(tau_c_s) and tau_c_s > 0 and multiple > 0):
        raise ValueError(f"sample interval needs a measured correlation time > 0 s, got {tau_c_s!r}")
    period = multiple * tau_c_s
    if lowpass_tau_s is not None and math.isfinite(lowpass_tau_s) and lowpass_tau_s > 0:
        period = max(period, lowpass_multiple * lowpass_tau_s)
    return float(min(max(period, 1.0 / MAX_RATE_HZ), 1.0 / MIN_RATE_HZ))


def rate_Hz(period_s: float) -> float:
    """The sampler's rate for an interval, rounded to 1 Hz (as SCPI will hold it)."""
    return float(min(MAX_RATE_HZ, max(MIN_RATE_HZ, round(1.0 / period_s))))


def correlation(period_s: float, tau_c_s: float) -> float:
    """``rho = exp(-period / tau_c)``: lag-one correlation of a two-state cell."""
    return math.exp(-period_s / tau_c_s) if tau_c_s > 0 else 0.0


def samples_for(n_effective: int, period_s: float, tau_c_s: float) -> int:
    """Raw samples that hold ``n_effective`` independent ones of a cell with ``tau_c_s``."""
    rho = correlation(period_s, tau_c_s)
    return int(math.ceil(n_effective * (1.0 + rho) / (1.0 - rho)))


def samples_for_stderr(target: float, p: float = 0.5, period_s: float = 0.0, tau_c_s: float = 0.0) -> int:
    """Samples that bring the standard error of a probability ``p`` to ``target``."""
    if not target > 0:
        raise ValueError(f"target standard error must be > 0, got {target!r}")
    n_eff = int(math.ceil(p * (1.0 - p) / target**2))
    return samples_for(max(n_eff, 1), period_s, tau_c_s) if tau_c_s > 0 else max(n_eff, 1)


# ------------------------------------------------------------- with the state
def stored_tau_c(state: Any, cells: Iterable[int]) -> float:
    """The slowest stored zero-field ``tau_c`` of ``cells`` (``cells.<i>.correlation_time_s``),
    NaN if none is stored."""
    values = []
    for i in cells:
        key = f"cells.{i}.correlation_time_s"
        if key in state and state.get(key).valid and state.get(key).value is not None:
            values.append(float(state.get(key).value))
    return slowest(values)


def lowpass_tau(state: Any) -> float | None:
    """The amplifier's measured low-pass time constant, if the readout node stored one."""
    key = "readout.lowpass_tau_s"
    if key in state and state.get(key).valid and state.get(key).value is not None:
        return float(state.get(key).value)
    return None


def stored_period(state: Any, cells: Iterable[int], multiple: float) -> float | None:
    """The interval for sampling ``cells`` from the stored correlation times (None: none stored)."""
    tau = stored_tau_c(state, cells)
    if not math.isfinite(tau):
        return None
    return choose_period(tau, multiple, lowpass_tau(state))


def plan(
    state: Any,
    cells: Iterable[int],
    rate_Hz_fixed: float | None,
    n_samples: int,
    multiple: float,
    fallback_rate_Hz: float,
) -> tuple[float, int, dict[str, Any]]:
    """(sample rate, raw samples, a record for the run's metadata) of one acquisition.

    A fixed rate (``rate_Hz_fixed``) takes ``n_samples`` at it, as the old settings did.
    Otherwise the interval is ``multiple`` stored correlation times of the slowest of
    ``cells`` and ``n_samples`` is the count of independent samples to hold; with none
    stored (the S-curve node ran at a fixed rate) ``fallback_rate_Hz`` and ``n_samples``.
    """
    if rate_Hz_fixed is not None:
        return float(rate_Hz_fixed), int(n_samples), {"rate": "fixed"}
    tau = stored_tau_c(state, cells)
    if not math.isfinite(tau):
        return float(fallback_rate_Hz), int(n_samples), {"rate": "fallback: no correlation time stored"}
    period = 1.0 / rate_Hz(choose_period(tau, multiple, lowpass_tau(state)))
    record = {"rate": "measured", "tau_c_s": tau, "period_s": period, "correlation": correlation(period, tau)}
    return 1.0 / period, samples_for(n_samples, period, tau), record
