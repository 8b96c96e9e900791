"""Fridge time of a cold-start calibration: the earlier fixed settings against today's, same chip.

On hardware the scarce resource is fridge time, and the virtual clock measures what a
calibration would cost there. This bench calibrates one chip of the family
(``tests/family.py``; by default its 64-cell grid) twice from cold, through the
``labstack calibrate --chips`` code path, in one run:

* **old**: the settings before this issue's work: plain heater steps that wait
  ``settle_taus`` time constants of fridge and chip at each plateau
  (``boost_heater=False`` for the effective-temperature and thermalization nodes), bias
  S-curves and crosstalk patterns sampled at 100 Hz and effective-temperature S-curves
  at 50 Hz, each of those two nodes with its own heat-and-cool cycle, each bias
  S-curve window a sweep of its own, and the
  cryostat's warm-up traced for 1500 s and its cool-down for at least 3000 s;
* **new**: today's defaults.

It prints the lab minutes per node for each, the fridge's own floor (the lab time the
calibrated fridge model alone needs to warm through the highest plateau the graph
uses, at the boost the nodes are allowed, and cool back to within 5 % of base), the
accuracy of both (pooled fraction within 3 sigma, pull rms and median standard error of
every parameter judged against the truth, as ``bench/bench_family.py`` does), and

    ratio: <old lab time / new lab time>

The peer here is labstack's own earlier settings: no other stack calibrates this chip.

    python bench/bench_lab_time.py [--member 19] [--fresh]

The 64-cell grid takes ~25 min of wall on two cores (its coupler node samples a
strongly coupled chip at 200 kHz); ``--member 1``, a 16-cell chain, ~2 min.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

import numpy as np  # noqa: E402

from labstack.calibrations import cryostat, effective_temperature, fridge  # noqa: E402
from labstack.distributed.chips import calibrate_chips  # noqa: E402
from tests import family  # noqa: E402

OLD = {
    "effective_temperature": {"boost_heater": False, "sample_rate_Hz": 50.0, "switching_points": False,
                              "mc_settle_taus": 5.0},
    "thermalization": {"boost_heater": False},
    "bias_scurve": {"sample_rate_Hz": 100.0, "windows_together": False},
    "crosstalk": {"sample_rate_Hz": 100.0},
    "cryostat": {"heat_s": 1500.0, "cool_min_s": 3000.0},
}


def inspect_with_costs(chip, station, report):  # noqa: ANN001, ANN201
    """The family's inspection, plus each node's lab and wall time and the cryostat model."""
    out = family.inspect(chip, station, report)
    out["lab_s"] = {name: e.lab_s for name, e in report.costs.items()}
    out["wall_s"] = {name: e.wall_s for name, e in report.costs.items()}
    out["walk_lab_s"] = report.cost.lab_s if report.cost else float("nan")
    state = report.graph.context.state
    out["fridge"] = {k: float(state.value(f"cryostat.{k}"))
                     for k in ("mc_base_K", "mc_tau_base_s", "chip_tau_s", "heating_K2_per_A2")}
    return out


def fridge_floor(model: dict[str, float], hottest_K: float) -> tuple[float, float]:
    """(warm-up s, cool-down s) of the fridge model alone: from base to ``hottest_K`` at the
    strongest boost a node may use (twice the plateau), and back to 1.05 x base, heater off.

    ``C dT/dt = P - a T^2``: warming as :func:`fridge.warming_time`, cooling as
    :func:`fridge.cooling_time` (the dives the nodes use), ``tau`` the time constant at base.
    """
    base, tau = model["mc_base_K"], model["mc_tau_base_s"]
    warm = fridge.warming_time(base, hottest_K, fridge.BOOST_MAX_FACTOR * hottest_K, base, tau)
    return warm, fridge.cooling_time(hottest_K, 1.05 * base, base, tau)


def calibrate(member: family.Member, root: Path, label: str, params: dict) -> dict:
    truths = root / label / "truths"
    truths.mkdir(parents=True)
    chip = family.chip_spec(member, family.write_truth(member, truths))
    t0 = time.perf_counter()
    report = calibrate_chips([chip], root / label / "data", scheduler="serial", params=params,
                             inspect=inspect_with_costs)
    result = report.results[0]
    if result.inspection is None:
        raise SystemExit(f"{label}: calibration raised: {(result.error or result.summary).strip()}")
    print(f"  {label}: {time.perf_counter() - t0:.0f} s wall, {result.summary[:90]}", flush=True)
    return result.inspection


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--member", type=int, default=19, help="index into the family (19: its 64-cell grid)")
    parser.add_argument("--fresh", action="store_true", help="the fresh family (new seeds, same shapes)")
    args = parser.parse_args()
    members = family.fresh_family() if args.fresh else family.FAMILY
    member = members[args.member]
    print(f"chip {member.chip_id}: {member.cells} cells, {member.topology}; cold start, old settings then new")
    with tempfile.TemporaryDirectory() as tmp:
        runs = {label: calibrate(member, Path(tmp), label, params)
                for label, params in (("old", OLD), ("new", {}))}
    old, new = runs["old"], runs["new"]
    print(f"\n{'node':<24} {'old lab min':>12} {'new lab min':>12} {'old wall s':>11} {'new wall s':>11}")
    for name in old["lab_s"]:
        print(f"{name:<24} {old['lab_s'][name] / 60:>12.1f} {new['lab_s'].get(name, math.nan) / 60:>12.1f} "
              f"{old['wall_s'][name]:>11.1f} {new['wall_s'].get(name, math.nan):>11.1f}")
    total_old, total_new = old["walk_lab_s"], new["walk_lab_s"]
    print(f"{'whole calibration':<24} {total_old / 60:>12.1f} {total_new / 60:>12.1f}")
    hottest = max(max(effective_temperature.Parameters().temperatures_K), cryostat.Parameters().setpoint_K)
    warm, cool = fridge_floor(new["fridge"], hottest)
    floor = warm + cool
    print(f"\nfridge floor: {floor / 60:.1f} min (warm to {hottest * 1e3:.0f} mK {warm / 60:.1f} min, "
          f"back to 1.05 x base {cool / 60:.1f} min; base {new['fridge']['mc_base_K'] * 1e3:.2f} mK, "
          f"tau at base {new['fridge']['mc_tau_base_s']:.0f} s)")
    print(f"new lab time / floor: {total_new / floor:.2f} (old {total_old / floor:.2f})")
    print(f"\n{'parameter':<13} {'old n':>6} {'in 3σ':>7} {'rms':>6} {'med err':>10} | "
          f"{'new n':>6} {'in 3σ':>7} {'rms':>6} {'med err':>10}")
    p_old, p_new = family.pooled([old]), family.pooled([new])
    for p in family.PARAMETERS:
        (n0, f0, r0), (n1, f1, r1) = p_old[p], p_new[p]
        e0 = np.median(old["stderr"][p]) if old["stderr"][p] else math.nan
        e1 = np.median(new["stderr"][p]) if new["stderr"][p] else math.nan
        print(f"{p:<13} {n0:>6} {f0:>7.1%} {r0:>6.2f} {e0:>10.3g} | {n1:>6} {f1:>7.1%} {r1:>6.2f} {e1:>10.3g}")
    bad = family.failures([new])
    print(f"new settings: {len(bad)} failed criteria" + (": " + "; ".join(bad) if bad else ""))
    print(f"ratio: {total_old / total_new:.2f}")


if __name__ == "__main__":
    main()
