"""Fits fail visibly, with the reason, and one cell's failure never stops the others."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

from labstack.fit import (
    FitResult,
    derived,
    failures,
    fit_curve,
    fit_each,
    fit_linear,
    fit_logistic,
    fit_settling,
    fit_two_gaussians,
    logistic,
    runs_test,
    settling,
)

V = np.linspace(-0.5, 0.5, 21)


def test_logistic_names_its_failures():
    assert "no transition" in fit_logistic(V, np.zeros(V.size), 50).message
    assert "always +1" in fit_logistic(V, np.full(V.size, 50), 50).message
    step = fit_logistic(V, np.where(V > 0.02, 50, 0), 50)
    assert not step.success and "narrower than the voltage step" in step.message
    far = np.random.default_rng(0).binomial(50, logistic(V, 0.8, 0.3))
    out = fit_logistic(V, far, 50)
    assert not out.success and "outside the scanned" in out.message


def test_logistic_wrong_model_is_caught_by_chi2_and_runs():
    """A cell whose readout never exceeds 80 % (P = 0.1 + 0.7 sigma) is not a plain S-curve."""
    shots = 400
    rng = np.random.default_rng(3)
    k = rng.binomial(shots, 0.1 + 0.7 * logistic(V, 0.0, 0.08))
    fit = fit_logistic(V, k, shots)
    assert fit.success
    assert fit.chi2_reduced > 5
    assert fit.checks["chi2_p"] < 1e-6


def test_settling_not_settled_is_a_failure():
    t = np.linspace(0, 10, 30)
    T = settling(t, 0.05, 0.12, 500.0) + np.random.default_rng(0).normal(0, 1e-5, t.size)
    fit = fit_settling(t, T, sigma=1e-5)
    assert not fit.success and "not settled" in fit.message


def test_settling_residual_runs_flag_two_time_constants():
    t = np.linspace(0, 600, 80)
    T = 0.05 + 0.04 * np.exp(-t / 20) + 0.03 * np.exp(-t / 200)
    T = T + np.random.default_rng(1).normal(0, 2e-4, t.size)
    fit = fit_settling(t, T, sigma=2e-4)
    assert fit.success and fit.checks["runs_p"] < 1e-3 and fit.chi2_reduced > 3


def test_curve_fit_failures_are_results_not_exceptions():
    x = np.linspace(0, 1, 10)
    y = np.full(10, 1.0)
    y[3] = np.nan
    assert "non-finite" in fit_curve(lambda x, a: a * x, x, y, [1.0]).message
    assert "cannot determine" in fit_curve(lambda x, a, b: a * x + b, x[:2], y[:2], [1, 1]).message
    undetermined = fit_curve(lambda x, a, b: (a + b) * x, x, 2 * x, [1.0, 1.0], sigma=0.1)
    assert not undetermined.success and "not determined" in undetermined.message
    assert "slope undetermined" in fit_linear(np.ones(5), np.arange(5.0)).message


def test_two_gaussians_single_population_fails():
    fit = fit_two_gaussians(np.random.default_rng(0).normal(0, 1, 4000))
    assert not fit.success and fit.message


def test_runs_test_sees_structure():
    rng = np.random.default_rng(0)
    ps = [runs_test(rng.normal(size=60))[2] for _ in range(200)]
    assert 0.3 < np.mean(ps) < 0.7  # independent residuals: p roughly uniform
    runs, z, p = runs_test(np.r_[np.ones(20), -np.ones(20)])
    assert runs == 2 and z < -5 and p < 1e-6


def test_derived_error_matches_linear_propagation():
    x = np.linspace(0, 1, 20)
    y = 1 + 2 * x + np.random.default_rng(0).normal(0, 0.1, x.size)
    fit = fit_linear(x, y, 0.1)
    value, err = derived(fit, lambda v: v["intercept"] + 0.5 * v["slope"])  # the line at x=0.5
    g = np.array([1.0, 0.5])
    assert value == pytest.approx(fit["intercept"] + 0.5 * fit["slope"])
    assert err == pytest.approx(math.sqrt(g @ fit.covariance @ g), rel=1e-6)
    assert err < fit.error("intercept")  # correlation counted: mid-line is best known


def test_fit_each_isolates_numerical_errors_but_not_bugs():
    def fit(item):
        if item == "boom":
            raise np.linalg.LinAlgError("Singular matrix")
        if item == "bug":
            raise TypeError("wrong argument")
        n_plus = np.random.default_rng(item).binomial(100, logistic(V, 0.0, 0.1))
        return fit_logistic(V, n_plus, 100)

    out = fit_each({0: 0, 1: 1, 2: "boom", 3: 3}, fit)
    assert [out[c].success for c in range(4)] == [True, True, False, True]
    assert failures(out) == {2: "LinAlgError: Singular matrix"}
    with pytest.raises(TypeError):
        fit_each({0: "bug"}, fit)


def test_fit_result_serializes_to_plain_yaml():
    f = fit_logistic(V, np.random.default_rng(0).binomial(100, logistic(V, 0, 0.1)), 100)
    text = yaml.safe_dump(f.to_dict())
    back = yaml.safe_load(text)
    assert back["values"]["V0"] == pytest.approx(f["V0"])
    assert len(back["covariance"]) == 2 and back["names"] == ["V0", "w"]
    assert "V0=" in f.summary() and "FAILED" in FitResult.failed("m", "why").summary()
