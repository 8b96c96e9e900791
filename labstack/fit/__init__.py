"""Fits with honest uncertainties. Each fit is a pure function of data: it never touches an instrument.

Every fit returns a :class:`FitResult` with values, standard errors, a reduced
chi-square and residual checks (:mod:`labstack.fit.checks`); a fit that cannot
be trusted returns ``FitResult.failed`` with the reason (:func:`fit_scurve` wraps
its one with the cell's flag and readout split). The test suite checks
each fit's standard errors against synthetic data of known truth (pull widths).

Imports: nothing else of labstack. Imported by the calibrations, distributed and
the simulator's tests (:mod:`labstack.fit.ising` is the exact reference for small chips).
"""

from labstack.fit.arrhenius import fit_arrhenius
from labstack.fit.checks import residual_checks, runs_test
from labstack.fit.histogram import binned_two_gaussians, fit_two_gaussians
from labstack.fit.linear import fit_linear
from labstack.fit.logistic import fit_logistic, logistic
from labstack.fit.lsq import derived, fit_curve
from labstack.fit.percell import failures, fit_each
from labstack.fit.result import FitResult
from labstack.fit.scurve import ScurveResult, fit_scurve
from labstack.fit.scurve_mean import fit_mean_scurve
from labstack.fit.settling import fit_settling, settling
from labstack.fit.two_level import effective_count, two_level_threshold

__all__ = [
    "FitResult",
    "ScurveResult",
    "binned_two_gaussians",
    "derived",
    "effective_count",
    "failures",
    "fit_arrhenius",
    "fit_curve",
    "fit_each",
    "fit_linear",
    "fit_logistic",
    "fit_mean_scurve",
    "fit_scurve",
    "fit_settling",
    "fit_two_gaussians",
    "logistic",
    "residual_checks",
    "runs_test",
    "settling",
    "two_level_threshold",
]
