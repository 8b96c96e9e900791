"""Train the chip in the loop: program a target, sample the chip, match moments, repeat.

The chip's fields and couplings are the parameters of an Ising energy-based model;
training moves the *programmed* dimensionless fields ``theta_i = h_i / T_eff`` and
couplings ``beta_ij = J_ij / T_eff`` until the chip's own means and pair correlations
equal the target's (the gradient of the cross-entropy), so every residual error of the
calibration the open-loop programming inherits is learned away.

* :mod:`~labstack.train.calibration`: what training reads of the calibration state.
* :mod:`~labstack.train.target`: target files (model or data), checked against the
  chip before anything is sent (:class:`TargetError` names the file and the entry).
* :mod:`~labstack.train.exact`: exact enumeration (model moments, maximum-likelihood
  fit of a data set on the chip's graph, KL, log-likelihood).
* :mod:`~labstack.train.stats`: a sample's means and pair correlations with their
  errors from the effective sample size, readout misassignment undone.
* :mod:`~labstack.train.update`: the moment-matching step, its step-size schedule,
  the stop rule in units of the statistics' errors, the divergence rule.
* :mod:`~labstack.train.program`: parameters -> bias and coupler voltages through the
  calibration, written in one guarded SCPI message per DAC, scaled back to the ramp
  limits or refused.
* :mod:`~labstack.train.record`: one zarr run per training, one point per iteration;
  resuming from the last iteration a crashed run stored.
* :mod:`~labstack.train.loop`: :func:`train`, the loop with its per-iteration timing.

Imports: calibrate, station, measure, data, fit, safety (never the calibration nodes:
what it shares with them is restated in :mod:`~labstack.train.calibration`). Imported by
cli only. It never imports the simulator nor reads a chip's
ground truth: the chip is reached through its instruments only.
"""

from labstack.train.loop import TrainResult, train
from labstack.train.target import Target, TargetError, load_target

__all__ = ["Target", "TargetError", "TrainResult", "load_target", "train"]
