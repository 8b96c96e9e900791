"""The thermalization fit under the bounded Kramers law, on telegraph data of known cells.

Cells with a low barrier (``dU / T`` of 1.5-3) make the bounded law's correction large
(``1 / (Gamma0 tau_c)`` of 0.1-0.45): the fit must recover barrier and attempt rate
with it, and the unbounded law, given the same data, must miss.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from labstack.calibrations import switching, thermalization
from labstack.sim.dynamics import CellEnsemble

G0, BARRIER = 1.0e6, 0.06
TEMPS = (0.02, 0.03, 0.04)
CELLS, SAMPLES, PERIOD = 8, 20000, 5e-7


def telegraph_dataset(seed: int) -> xr.Dataset:
    """Base plateau at bias widths -1, 0, 1 and two warm plateaus at 0, as the node takes them."""
    cells = CellEnsemble(np.full(CELLS, G0), np.full(CELLS, BARRIER), np.zeros(CELLS, np.int8),
                         np.random.default_rng(seed), bounded=True)
    points = [(TEMPS[0], k) for k in (-1.0, 0.0, 1.0)] + [(t, 0.0) for t in TEMPS[1:]]
    blocks = []
    for t, k in points:
        h = np.full(CELLS, k * t / 2)  # k widths of T / (2 alpha) from the offset
        cells.evolve(1.0, h, t)
        blocks.append((cells.sample(SAMPLES, PERIOD, h, t) > 0).T)
    return xr.Dataset(
        {
            "states": (("point", "cell", "sample"), np.stack(blocks).astype(np.uint8)),
            "T_chip": (("point",), np.array([p[0] for p in points])),
            "bias_widths": (("point",), np.array([p[1] for p in points])),
            "measured": (("cell",), np.ones(CELLS, bool)),
        },
        attrs={"sample_period_s": PERIOD, "t_excess_K": 1e-9, "t_excess_err_K": 0.0,
               "t_eff_exponent": 2.0, "t_eff_exponent_err": 0.0},
    )


def pulls(result: thermalization.Result) -> tuple[np.ndarray, np.ndarray]:
    fits = [c.fit for c in result.cells]
    assert all(c.ok for c in result.cells), [c.flag for c in result.cells]
    barrier = np.array([(f["barrier_K"] - BARRIER) / f.error("barrier_K") for f in fits])
    ln_g = np.array([(f["ln_gamma0"] - math.log(G0)) / f.error("ln_gamma0") for f in fits])
    return barrier, ln_g


def test_bounded_law_recovers_barrier_and_attempt_rate_the_unbounded_one_misses() -> None:
    data = telegraph_dataset(3)
    bounded = thermalization.fit(data, thermalization.Parameters(calibration_rel_10mK=0.0))
    b_pull, g_pull = pulls(bounded)
    assert np.all(np.abs(b_pull) < 4) and np.all(np.abs(g_pull) < 4), (b_pull, g_pull)
    # pooled over the cells (independent, similar errors): the mean pull is N(0, 1 / CELLS)
    assert abs(b_pull.mean()) * math.sqrt(CELLS) < 4 and abs(g_pull.mean()) * math.sqrt(CELLS) < 4
    # correlation time at base and zero field: 1 / (2 r0) + 1 / G0
    true_tau = 1 / (2 * G0 * math.exp(-BARRIER / TEMPS[0])) + 1 / G0
    taus = np.array([c.fit["tau_c_s"] for c in bounded.cells])
    rel = np.array([c.fit.error("tau_c_s") for c in bounded.cells]) / taus
    assert np.all(np.abs(np.log(taus / true_tau)) < 4 * rel), (taus / true_tau, rel)
    unbounded = thermalization.fit(
        data, thermalization.Parameters(calibration_rel_10mK=0.0, bounded_kramers=False)
    )
    u_pull, ug_pull = pulls(unbounded)
    # barrier and attempt rate biased low, pooled by 5 and 8 sigma (seeds 3-7: 6.9-9.5, 11-13)
    assert u_pull.mean() * math.sqrt(CELLS) < -5, u_pull
    assert ug_pull.mean() * math.sqrt(CELLS) < -8, ug_pull


def test_a_line_without_a_positive_barrier_is_refused_not_stated() -> None:
    """Plateaus labelled in the wrong order make the cells flip faster when colder: no
    thermally activated cell does, so every cell is ``no_activation`` and states nothing;
    the same data labelled rightly are all fitted."""
    data = telegraph_dataset(3)
    params = thermalization.Parameters(calibration_rel_10mK=0.0)
    assert all(c.ok for c in thermalization.fit(data, params).cells)
    order = {TEMPS[0]: TEMPS[-1], TEMPS[-1]: TEMPS[0]}
    swapped = data.assign(T_chip=("point", [order.get(float(t), float(t)) for t in data["T_chip"].values]))
    result = thermalization.fit(swapped, params)
    assert all(c.flag == thermalization.NO_ACTIVATION and not c.fit.success for c in result.cells), [
        (c.flag, c.fit.values.get("barrier_K")) for c in result.cells
    ]
    assert "faster when colder" in result.cells[0].fit.message
    assert thermalization.update(result, params).failed  # nothing to state: the node fails whole


def test_two_temperature_line_states_the_errors_its_points_carry() -> None:
    """Two Arrhenius points give a barrier and a rate with no chi-square to test them:
    their errors come from the points' alone, so over many draws the pulls of slope and
    intercept must have zero mean and unit spread (the intercept is extrapolated to
    1/T = 0, far from both points, where a careless propagation goes wrong)."""
    rng = np.random.default_rng(3)
    x = np.array([1 / 0.030, 1 / 0.045])  # 1/T at two plateaus (1/K)
    slope, intercept = -0.9, 14.0  # barrier 0.9 K, ln Gamma0 14
    err = np.array([0.05, 0.08])
    pulls = []
    for _ in range(4000):
        y = intercept + slope * x + rng.normal(0.0, err)
        line = thermalization._two_point_line(x, y, err)
        pulls.append(((line["slope"] - slope) / line.error("slope"),
                      (line["intercept"] - intercept) / line.error("intercept")))
    pulls = np.asarray(pulls)
    assert np.allclose(pulls.std(axis=0), 1.0, atol=0.05), pulls.std(axis=0)
    assert np.allclose(pulls.mean(axis=0), 0.0, atol=0.05)
    # the intercept's error counts both points' lever arms: leaving one out (a wrong
    # propagation, err_intercept = x1 err0 / dx) understates it visibly
    wrong = abs(x[1] * err[0] / (x[1] - x[0]))
    ok = thermalization._two_point_line(x, intercept + slope * x, err).error("intercept")
    assert ok > 1.2 * wrong
    assert not thermalization._two_point_line(x[[0, 0]], x[[0, 0]], err).success


def test_warm_points_taken_otherwise_are_not_used():
    """The effective-temperature node takes thermalization's warm points with the default
    settings; parameters that ask for another acquisition refuse them (and heat the fridge)."""
    recorded = switching.Settings().comparable()
    assert switching.matches(recorded, thermalization.settings_of(thermalization.Parameters()))
    for change in ({"n_samples": 8000}, {"t_eff_steps": (1.1, 1.2)}, {"max_memory": 0.5}, {"settle_taus": 5.0}):
        assert not switching.matches(recorded, thermalization.settings_of(thermalization.Parameters(**change)))
    # how long points may be kept is not what they measure
    assert switching.matches(recorded, thermalization.settings_of(thermalization.Parameters(warm_points_max_age_s=60.0)))


def test_a_point_warmer_than_a_too_fast_one_is_too_fast_too() -> None:
    """The voltage estimate of a correlation time loses its footing at a sample or less
    (fam-918: 1.07 samples on the first warm plateau, 2.03 on the hotter one, whose true
    time was ~0.9): a cell only gets faster when warmed, so a point warmer than a point
    too fast at a bias as near zero is dropped whatever its own estimate says; a base
    point off zero bias (faster by nature) does not pass its verdict on to zero bias."""
    t_chip = np.array([0.02, 0.02, 0.02, 0.03, 0.04])
    widths = np.array([-1.0, 0.0, 1.0, 0.0, 0.0])
    lying = np.array([3.0, 3.0, 3.0, 1.07, 2.03])
    assert list(thermalization.too_fast_points(lying, t_chip, widths, 2.0)) == [0, 0, 0, 1, 1]
    assert not (lying[4] < 2.0)  # its own estimate alone would have kept it
    off_zero = np.array([1.5, 3.0, 3.0, 2.6, 2.2])  # fast off zero bias at base only
    assert list(thermalization.too_fast_points(off_zero, t_chip, widths, 2.0)) == [1, 0, 0, 0, 0]
    unmeasured = np.array([np.nan, 3.0, np.nan, 2.5, 2.2])
    assert not thermalization.too_fast_points(unmeasured, t_chip, widths, 2.0).any()
    # in the fit: the warmest point goes with the warm one before it, leaving one temperature
    data = telegraph_dataset(3)
    data["voltage_tau_samples"] = (("point", "cell"), np.tile(lying[:, None], (1, CELLS)))
    params = thermalization.Parameters(calibration_rel_10mK=0.0)
    result = thermalization.fit(data, params)
    assert all(c.flag == "too_few_points" for c in result.cells), [c.flag for c in result.cells]
    assert "2 faster than 2 samples" in result.cells[0].fit.message
    data["voltage_tau_samples"] = (("point", "cell"), np.full((5, CELLS), 3.0))
    assert all(c.ok for c in thermalization.fit(data, params).cells)
