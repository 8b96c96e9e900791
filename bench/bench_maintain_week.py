"""A week of hourly ``maintain`` on a drifting chip: is it kept calibrated, and at what fridge cost?

A chip of the convergence family (``tests/family.py``, realistic: offsets random-walk,
gains wander, two-level defects make offsets jump) is calibrated from cold, then the
whole graph is maintained every ``--every-h`` hours of lab time for ``--days`` days,
as ``labstack watch`` does: Optimus ``maintain``, which looks at a node again only
when its timeout has passed or a dependency changed, and recalibrates only the
nodes, and of a per-cell node only the cells, that its cheap check finds out of
spec. The offsets drift fastest, so the S-curve's timeout is set below the
maintenance interval (``timeouts={"bias_scurve": 0.5 * interval}``): its check runs
on every pass, also after a pass that recalibrated something first and checked the
offsets up to half an interval late. On top of the chip's own random jumps, one jump of ``--jump`` is
scheduled (cell, size, lab hour) so that every run has one to find.

**Tolerance.** A cell is "within tolerance" at a pass when the offset the state holds
after the pass (``cells.<i>.bias_offset_V``, the all-lines S-curve centre) is within
``tolerance_V`` of the truth's at that moment (``alpha V0 / (alpha + sum_j Xt_ij)``
with the drifted V0 and alpha: what the same sweep would find). ``tolerance_V`` is
the S-curve node's own check tolerance (10 mV by default). What it means physically
is printed: an offset error ``dV`` moves the cell's P(+1) at its centre by
``dV / (4 w)`` (logistic of width ``w``), and a set of independent cells driven
together loses about ``sum_i (dV_i / 2 w_i)^2 / 2`` nats of KL.

Printed per pass (``--verbose``) and per day: recalibrated nodes and cells, the worst
offset error against the tolerance, jumps and the pass that found them, the fridge
time spent on maintenance; at the end, the check_data runs by node and their lab time,
and the dependents kept fresh (no check_data) after a per-cell recalibration that moved
the offsets within what they declare they tolerate (``CONSUMES``). Ends with ``ratio: <share of (pass, live cell) within
tolerance>`` (1.0 when every live cell was within tolerance after every pass; there is
no software peer for keeping a chip calibrated: the reference is the chip's truth).

    python bench/bench_maintain_week.py [--member 101] [--days 7] [--every-h 1] [--jump 3:25:30.5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pyvisa  # noqa: E402

from labstack.calibrate import STATE_DIRNAME, CalibrationState  # noqa: E402
from labstack.session import calibrate_station  # noqa: E402
from labstack.visa import open_station  # noqa: E402
from tests import family  # noqa: E402
from tests.acquisition_truth import recalibrated_cells, swept_offsets_now  # noqa: E402

BIAS = "bias_scurve"


@dataclass
class Pass:
    """What one maintenance pass did, and how far the state was from the truth after it."""

    hour: float
    lab_s: float
    wall_s: float
    nodes: list[str]
    cells: dict[str, list[int] | None]  # per node recalibrated: its cells alone, None the whole node
    checked: list[str]
    #: lab seconds each node's check_data took in the pass
    check_lab_s: dict[str, float]
    #: nodes whose check_state passed although a dependency was recalibrated (cells alone,
    #: within what they tolerate), with the reason the walk logged
    kept_fresh: dict[str, str]
    worst_mV: float
    worst_cell: int
    outside: list[int] = field(default_factory=list)
    #: why check_state failed for each node the pass then checked (its walk-log reason)
    why_checked: dict[str, str] = field(default_factory=dict)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--member", type=int, default=101, help="seed of a tests/family.py chip")
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--every-h", type=float, default=1.0, help="lab hours between maintenance passes")
    ap.add_argument("--jump", default="3:25:30.5", help="cell:mV:hour of a scheduled offset jump ('' for none)")
    ap.add_argument("--verbose", action="store_true", help="one line per pass")
    args = ap.parse_args()
    member = next(m for m in family.FAMILY if m.seed == args.member)
    interval = args.every_h * 3600.0
    timeouts = {BIAS: 0.5 * interval}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        truth = family.write_truth(member, root)
        description = f"truth={truth},seed={member.seed},instance=maintain-week"
        station = open_station("virtual", lab=description)
        lab = pyvisa.ResourceManager(f"{description}@labstack").visalib.lab
        data = root / "data"
        clock = station.clock
        cold = calibrate_station(station, data_dir=data, progress=False, timeouts=timeouts)
        cold_lab = clock.now()
        state = CalibrationState.load(data / STATE_DIRNAME)
        tolerance = float(cold.graph[BIAS].params.tolerance_V)
        cells = lab.truth.cells
        live = np.flatnonzero(~cells.dead & ~np.asarray(getattr(cells, "stuck", np.zeros_like(cells.dead))))
        widths = np.array([state.value(f"cells.{i}.scurve_width_V") for i in live])
        print(f"{member.chip_id}: {member.cells} cells ({len(live)} live), cold calibration "
              f"{cold_lab / 3600:.2f} lab h, {time.perf_counter() - t_start:.0f} s wall; "
              f"maintain every {args.every_h:g} lab h for {args.days:g} days")
        print(f"tolerance {tolerance * 1e3:.1f} mV on the offsets: P(+1) at a cell's centre moves by "
              f"{tolerance / (4 * widths.max()) * 100:.1f}-{tolerance / (4 * widths.min()) * 100:.1f} % "
              f"(widths {widths.min() * 1e3:.0f}-{widths.max() * 1e3:.0f} mV); 8 cells all off by it lose "
              f"~{8 * np.median((tolerance / (2 * widths)) ** 2) / 2:.3f} nats of KL")
        if args.jump:
            cell, mv, hour = args.jump.split(":")
            at = max(float(hour) * 3600.0, clock.now() + 1.0)
            lab.drift.schedule_jump(int(cell), float(mv) * 1e-3, at=at)
        passes: list[Pass] = []
        n_passes = int(round(args.days * 24 / args.every_h))
        next_pass = (np.floor(clock.now() / interval) + 1) * interval
        for _ in range(n_passes):
            clock.sleep(max(0.0, next_pass - clock.now()))
            next_pass += interval
            lab0, wall0 = clock.now(), time.perf_counter()
            report = calibrate_station(station, data_dir=data, progress=False, timeouts=timeouts)
            state = CalibrationState.load(data / STATE_DIRNAME)
            truth_now = swept_offsets_now(lab)[live]
            held = np.array([state.value(f"cells.{i}.bias_offset_V") for i in live])
            err = np.abs(held - truth_now)
            worst = int(np.argmax(err))
            checked = [e.node for e in report.graph.log if e.function == "check_data"]
            check_lab_s: dict[str, float] = {}
            for e in report.graph.log:
                if e.function == "check_data" and e.lab_s is not None:
                    check_lab_s[e.node] = check_lab_s.get(e.node, 0.0) + e.lab_s
            p = Pass(
                hour=lab0 / 3600, lab_s=clock.now() - lab0, wall_s=time.perf_counter() - wall0,
                nodes=list(report.calibrated), cells=recalibrated_cells(report.calibrated, state), checked=checked,
                check_lab_s=check_lab_s,
                kept_fresh={e.node: e.detail for e in report.graph.log
                            if e.function == "check_state" and e.detail.startswith("kept fresh")},
                why_checked={e.node: e.detail for e in report.graph.log
                             if e.function == "check_state" and e.outcome == "fail" and e.node in checked},
                worst_mV=float(err[worst] * 1e3), worst_cell=int(live[worst]),
                outside=[int(c) for c in live[err > tolerance]],
            )
            passes.append(p)
            if args.verbose or p.outside or p.nodes:
                print(f"  h {p.hour:7.2f}: lab {p.lab_s:6.0f} s, wall {p.wall_s:5.1f} s, checked {p.checked}, "
                      f"recalibrated {p.cells or '-'}, "
                      + (f"kept fresh {sorted(p.kept_fresh)}, " if p.kept_fresh else "")
                      + f"worst |dV0| {p.worst_mV:5.2f} mV (cell {p.worst_cell})"
                      + (f", OUTSIDE tolerance: {p.outside}" if p.outside else ""), flush=True)
                if args.verbose and p.cells.get(BIAS):
                    for n, why in p.why_checked.items():
                        print(f"      {n} checked: {why}")
        station.close()
    report_week(passes, lab, tolerance, live, args, member, time.perf_counter() - t_start)


def report_week(passes: list[Pass], lab, tolerance: float, live: np.ndarray, args, member, wall: float) -> None:
    """Per-day table, jumps and when they were found, and the ratio line."""
    print(f"\n{'day':>4} {'passes':>6} {'maint lab min':>13} {'nodes recal':>11} {'cells recal':>11} "
          f"{'worst |dV0| mV':>14} {'outside':>7}")
    per_day = int(round(24 / args.every_h))
    for d in range(0, len(passes), per_day):
        day = passes[d:d + per_day]
        nodes = sum(len(p.nodes) for p in day)
        cells = sum(len(c or []) for p in day for c in p.cells.values())
        outside = sum(len(p.outside) for p in day)
        print(f"{d // per_day + 1:>4} {len(day):>6} {sum(p.lab_s for p in day) / 60:>13.1f} {nodes:>11} "
              f"{cells:>11} {max(p.worst_mV for p in day):>14.2f} {outside:>7}")
    node_counts: dict[str, int] = {}
    for p in passes:
        for n in p.nodes:
            node_counts[n] = node_counts.get(n, 0) + 1
    cell_counts = np.zeros(lab.truth.n_cells, dtype=int)
    for p in passes:
        for c in p.cells.get(BIAS) or []:
            cell_counts[c] += 1
    print(f"recalibrations by node: {node_counts or 'none'}")
    print(f"per-cell S-curve recalibrations: {dict((int(c), int(n)) for c, n in enumerate(cell_counts) if n)}"
          f" in {sum(1 for p in passes if p.cells.get(BIAS))} passes")
    runs: dict[str, list[float]] = {}
    for p in passes:
        for n in p.checked:
            runs.setdefault(n, [0, 0.0])[0] += 1
        for n, lab_s in p.check_lab_s.items():
            runs.setdefault(n, [0, 0.0])[1] += lab_s
    print("check_data runs by node (lab min): "
          + ", ".join(f"{n} {int(k)} ({t / 60:.1f})" for n, (k, t) in runs.items()))
    dependents = {n: v for n, v in runs.items() if n not in (BIAS, "readout", "cryostat")}
    print(f"dependents' check_data runs: {sum(int(k) for k, _ in dependents.values())}, "
          f"{sum(t for _, t in dependents.values()) / 60:.1f} lab min")
    # in the pass that recalibrated the cells (a node stays kept fresh until it is verified again)
    kept = [(p, n, why) for p in passes if p.cells.get(BIAS) for n, why in p.kept_fresh.items()]
    print(f"dependents kept fresh (no check_data) in the passes of a per-cell recalibration: {len(kept)}"
          + (f"; e.g. at {kept[0][0].hour:.2f} h {kept[0][1]}: {kept[0][2]}" if kept else ""))
    print("jumps (lab h, cell, mV) -> first pass after it, and whether that pass re-measured the cell:")
    missed = 0
    def remeasured(p: Pass, cell: int) -> bool:
        return BIAS in p.cells and (p.cells[BIAS] is None or cell in p.cells[BIAS])

    for j in lab.drift.jumps:
        after = next((p for p in passes if p.hour * 3600 >= j.time), None)
        if after is None:
            continue
        # a jump inside a long pass may be caught by that pass's own recalibration of the cell
        # (its windows measured after the jump): then it was repaired before the next pass
        during = next((p for p in passes if p.hour * 3600 <= j.time < p.hour * 3600 + p.lab_s), None)
        if during is not None and remeasured(during, j.cell) and j.cell not in after.outside:
            after = during
        found = remeasured(after, j.cell)
        big = abs(j.volts) > tolerance
        missed += int(big and not found)
        print(f"  {j.time / 3600:7.2f} h cell {j.cell:>3} {j.volts * 1e3:+6.1f} mV"
              f"{' (scheduled)' if j.scheduled else ''}: pass at {after.hour:.2f} h "
              f"{'re-measured it' if found else 'did not re-measure it'}"
              f"{'' if big else ' (within tolerance: nothing to repair)'}")
    cells_checked = len(passes) * len(live)
    inside = cells_checked - sum(len(p.outside) for p in passes)
    lab_days = len(passes) * args.every_h / 24
    print(f"maintenance fridge time: {sum(p.lab_s for p in passes) / 60 / max(lab_days, 1e-9):.1f} min per day; "
          f"wall {wall:.0f} s")
    print(f"every live cell within tolerance after every pass: {inside}/{cells_checked}; "
          f"jumps beyond tolerance missed at their first pass: {missed}")
    print(f"ratio: {inside / cells_checked if missed == 0 else 0.0:.4f}")


if __name__ == "__main__":
    main()
