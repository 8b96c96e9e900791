"""Vectorized, chunked S-curve fits (labstack.fit.logistic_many, labstack.distributed.scurves).

Validated against the simulator's ground truth (pulls) and against the scalar
``fit_logistic``, never against themselves.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from labstack.distributed.scurves import fit_scurves, fit_scurves_zarr, synthetic_scurves
from labstack.fit import fit_logistic
from labstack.fit.logistic_many import NO_TRANSITION, OK, OUTSIDE, UNDETERMINED, fit_logistic_many
from labstack.sim.scurves import scurve_counts
from labstack.sim.truth import GroundTruth

VOLTS = np.linspace(-1.0, 1.0, 41)


def _truth_counts(seed: int, cells: int, shots: int) -> tuple[GroundTruth, np.ndarray]:
    truth = GroundTruth.from_seed(seed, cells, "none")
    rng = np.random.default_rng(seed + 1)
    counts = scurve_counts(rng, VOLTS, truth.cells.v0_V, truth.scurve_width_V(), shots)
    return truth, counts


def test_chunked_fit_recovers_ground_truth_with_unit_pulls():
    truth, counts = _truth_counts(seed=21, cells=3000, shots=300)
    da = xr.DataArray(counts, dims=("cell", "bias"), coords={"bias": VOLTS}).chunk({"cell": 700})
    fits = fit_scurves(da, 300)
    assert fits["V0_V"].chunks is not None  # lazy: nothing computed yet
    fits = fits.compute()
    assert np.all(fits["flag"].values == OK)
    v0_pull = (fits["V0_V"].values - truth.cells.v0_V) / fits["V0_err_V"].values
    w_true = truth.scurve_width_V()
    w_pull = (fits["width_V"].values - w_true) / fits["width_err_V"].values
    for pull in (v0_pull, w_pull):
        assert 0.9 < pull.std() < 1.1, pull.std()
        assert abs(pull.mean()) < 0.1, pull.mean()


def test_agrees_with_the_scalar_fit_cell_by_cell():
    _, counts = _truth_counts(seed=4, cells=8, shots=200)
    shots = np.full(VOLTS.size, 200)
    shots[::3] = 150  # per-point shot counts broadcast too
    counts = np.minimum(counts, shots)
    many = fit_logistic_many(VOLTS, counts, shots)
    for i in range(counts.shape[0]):
        one = fit_logistic(VOLTS, counts[i], shots)
        assert one.success, one.message
        assert many.V0[i] == pytest.approx(one["V0"], rel=1e-7, abs=1e-9)
        assert many.w[i] == pytest.approx(one["w"], rel=1e-7)
        assert many.V0_err[i] == pytest.approx(one.error("V0"), rel=1e-6)
        assert many.w_err[i] == pytest.approx(one.error("w"), rel=1e-6)
        assert many.chi2_reduced[i] == pytest.approx(one.chi2_reduced, rel=1e-6)


def test_bad_cells_are_flagged_like_the_scalar_fit_and_do_not_disturb_the_others():
    _, good = _truth_counts(seed=8, cells=3, shots=100)
    stuck_low = np.zeros(VOLTS.size, dtype=np.int32)
    stuck_high = np.full(VOLTS.size, 100, dtype=np.int32)
    step = np.where(VOLTS > 0.1, 100, 0).astype(np.int32)  # perfectly separated: width undetermined
    rng = np.random.default_rng(0)
    outside = rng.binomial(100, 1 / (1 + np.exp(-(VOLTS + 1.3) / 0.4)))  # V0 below the scan
    counts = np.vstack([good, stuck_low, stuck_high, step, outside])
    many = fit_logistic_many(VOLTS, counts, 100)
    assert list(many.flag) == [OK, OK, OK, NO_TRANSITION, NO_TRANSITION, UNDETERMINED, OUTSIDE]
    for i in range(3, 7):
        assert not fit_logistic(VOLTS, counts[i], 100).success
        assert np.isnan(many.V0_err[i])
    for i in range(3):
        assert fit_logistic(VOLTS, counts[i], 100)["V0"] == pytest.approx(many.V0[i], abs=1e-9)


def test_zarr_to_zarr_fit_of_a_simulated_chip(tmp_path):
    ds = synthetic_scurves(12_000, VOLTS, 250, seed=5, chunk_cells=3000)
    ds.to_zarr(tmp_path / "counts.zarr", mode="w", consolidated=False)
    fits = fit_scurves_zarr(tmp_path / "counts.zarr", tmp_path / "fits.zarr")
    assert fits["V0_V"].chunks == ((3000,) * 4,)  # written and reopened chunk by chunk
    truth = xr.open_zarr(tmp_path / "counts.zarr", consolidated=False)
    ok = (fits["flag"] == OK).values
    assert ok.mean() > 0.999
    pull = ((fits["V0_V"] - truth["v0_true_V"]) / fits["V0_err_V"]).values[ok]
    assert 0.9 < pull.std() < 1.1
    # the same seed gives the same chip whatever the chunking
    again = synthetic_scurves(12_000, VOLTS, 250, seed=5, chunk_cells=3000)
    np.testing.assert_array_equal(again["v0_true_V"].values, truth["v0_true_V"].values)
