"""Fridge time of a cold-start calibration: yesterday's fixed settings vs today's, on one chip.

The same realistic chip (by default the 64-cell member of the convergence family,
``tests/family.py``: a grid at 8 % crosstalk, 5 % dead and 5 % stuck cells, twice
the fabrication spreads) is calibrated from cold twice in one run, each time on a
fresh virtual lab of the same seed starting at lab time 0:

* **fixed**: the settings the graph had before lab time was minimised
  (:data:`FIXED_SETTINGS`: S-curves at 100 Hz on a fixed grid, one heat-cool cycle
  per node that needs temperatures);
* **new**: the shipped defaults.

Prints lab minutes (fridge time) and wall seconds per node for each, the fridge's
own floor (the lab time the fridge alone needs to visit the plateaus the graph uses
and come back to within 5 % of base, from the calibrated fridge), each arm's total
against that floor, and the accuracy of both against the simulator's truth
(fraction within 3 sigma, pull rms and median standard error per parameter), so
that time bought with precision shows. Last line ``ratio: <fixed lab time / new lab
time>`` (higher is better; the issue's target is >= 4 on the default fridge).

    python bench/bench_lab_time.py [--pick 19] [--fresh]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labstack.session import calibrate_station  # noqa: E402
from labstack.visa import open_station  # noqa: E402
from tests import family  # noqa: E402

#: the settings before lab time was minimised, as node parameter overrides: S-curves and
#: crosstalk at a fixed 100 Hz (no correlation-time burst), the readout trace 5 s apart,
#: and one heat-cool cycle per node that needs temperatures (no shared ladder). The lines
#: of a sweep move together in both arms (the old one-at-a-time moves have no switch), so
#: the fixed arm is somewhat faster than the code before the change was.
FIXED_SETTINGS: dict[str, dict[str, Any]] = {
    "bias_scurve": {"sample_rate_Hz": 100.0},
    "crosstalk": {"sample_rate_Hz": 100.0},
    "readout": {"trace_spacing_s": 5.0},
    "cryostat": {"ladder": False},
    "effective_temperature": {"ladder": False},
    "thermalization": {"ladder": False},
}


def calibrate_arm(member: family.Member, root: Path, arm: str, params: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Calibrate the member from cold on a fresh lab; per-node costs, floor and the inspection."""
    truth = family.write_truth(member, root)
    chip = family.chip_spec(member, truth)
    description = f"{chip.lab},instance=labtime-{arm}"
    station = open_station("virtual", lab=description)
    t0 = time.perf_counter()
    try:
        report = calibrate_station(station, data_dir=root / arm, progress=False, params=params or None)
        wall = time.perf_counter() - t0
        inspection = family.inspect(chip, station, report)
    finally:
        station.close()
    return {"report": report, "wall": wall, "inspection": inspection, "floor_s": floor_of(report)}


def floor_of(report: Any) -> float:
    """The fridge floor the calibration printed (NaN when this version prints none)."""
    return float(getattr(report, "floor_s", float("nan")) or float("nan"))


def accuracy(inspection: dict[str, Any]) -> dict[str, tuple[int, float, float, float]]:
    """Parameter -> (values, fraction within 3 sigma, pull rms, median stderr)."""
    out = {}
    for row in family.rows([inspection]):
        if row.parameter in family.ACCEPTED:
            out[row.parameter] = (row.n, row.within_3sigma, row.pull_rms, row.median_stderr)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pick", type=int, default=len(family.FAMILY) - 1,
                        help="index into the family (default: its 64-cell chip)")
    parser.add_argument("--fresh", action="store_true", help="the fresh family (new seeds, same shapes)")
    args = parser.parse_args()
    members = family.fresh_family() if args.fresh else family.FAMILY
    member = members[args.pick]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        arms = {"fixed": calibrate_arm(member, root, "fixed", FIXED_SETTINGS),
                "new": calibrate_arm(member, root, "new", {})}
    print(f"chip {member.chip_id}: {member.cells} cells, {member.topology}, crosstalk {member.crosstalk:.0%}, "
          f"dead {member.dead:.0%}, stuck {member.stuck:.0%}, spreads x{member.spread}")
    nodes = list(arms["new"]["report"].costs)
    nodes += [n for n in arms["fixed"]["report"].costs if n not in nodes]
    print(f"{'node':24s} {'fixed lab min':>14s} {'new lab min':>12s} {'fixed wall s':>13s} {'new wall s':>11s}")
    for node in nodes:
        cells = []
        for arm in ("fixed", "new"):
            cost = arms[arm]["report"].costs.get(node)
            cells.append(cost)
        lab = [f"{c.lab_s / 60:14.1f}" if c is not None else f"{'-':>14s}" for c in cells]
        wall = [f"{c.wall_s:13.1f}" if c is not None else f"{'-':>13s}" for c in cells]
        print(f"{node:24s} {lab[0]} {lab[1][2:]} {wall[0]} {wall[1][2:]}")
    totals = {arm: arms[arm]["report"].cost.lab_s for arm in arms}
    floor = arms["new"]["floor_s"]
    print(f"{'total':24s} {totals['fixed'] / 60:14.1f} {totals['new'] / 60:12.1f} "
          f"{arms['fixed']['wall']:13.1f} {arms['new']['wall']:11.1f}")
    print(f"fridge floor: {floor / 60:.1f} min; new / floor = {totals['new'] / floor:.2f} (target <= 1.3); "
          f"fixed / floor = {totals['fixed'] / floor:.2f}")
    warm = ("cryostat", "effective_temperature", "thermalization")
    for arm in ("fixed", "new"):
        base = sum(c.lab_s for n, c in arms[arm]["report"].costs.items() if n not in warm)
        print(f"{arm}: work at base temperature (every node but {', '.join(warm)}) {base / 60:.1f} min (target <= 10)")
    print(f"{'parameter':14s} {'arm':6s} {'n':>4s} {'within 3s':>10s} {'pull rms':>9s} {'median stderr':>14s}")
    acc = {arm: accuracy(arms[arm]["inspection"]) for arm in arms}
    for parameter in family.ACCEPTED:
        for arm in ("fixed", "new"):
            if parameter in acc[arm]:
                n, within, rms, med = acc[arm][parameter]
                print(f"{parameter:14s} {arm:6s} {n:4d} {within:10.1%} {rms:9.2f} {med:14.4g}")
    for arm in arms:
        kl = arms[arm]["inspection"].get("kl")
        print(f"{arm}: validation KL {kl}")
    print(f"ratio: {totals['fixed'] / totals['new']:.2f}")


if __name__ == "__main__":
    main()
