"""Calibrate a family of realistic chips unlike the test seeds, and judge every value against the truth.

The family (``tests/family.py``: 20 chips of 16-64 cells, chain and grid, 0-8 %
DAC crosstalk, 0-10 % dead or stuck cells, up to twice the default fabrication
spreads, each with its own realistic fridge, DACs, thermometry, drift and readout)
runs as one Dask batch, the ``labstack calibrate --chips <truth files>`` code path
(:func:`labstack.distributed.chips.calibrate_chips`); in each worker, before the
chip's station closes, every calibrated value is compared with the simulator's
truth at the time of its acquisition.

Prints one line per chip and parameter (values, fraction within 3 sigma, pull rms,
largest |pull| and the family-wise threshold for that many values, median stderr),
one line per chip (its largest |pull| over every accepted value against the
family-wise threshold for the chip's number of values: the acceptance), the pooled table, T_x and exponent pulls, validation KL, flags, fixed-point
passes, every failed criterion, and ``ratio: <worst pooled fraction within 3 sigma /
0.95>`` (>= 1 when every accepted parameter reaches 95 %).

    python bench/bench_family.py [--fresh] [--only N | --pick 1,9,14] [--workers 2] [--save out.json] [--baseline base.json] [--judge out.json]

``--fresh`` draws the same shapes with new seeds (tests/family.py: fresh_family);
``--baseline`` prints each parameter's median stderr against a saved run's, by chip size.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

import numpy as np  # noqa: E402

from labstack.distributed.chips import calibrate_chips  # noqa: E402
from tests import family  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fresh", action="store_true", help="new seeds, same shapes")
    parser.add_argument("--only", type=int, default=None, help="first N chips only")
    parser.add_argument("--pick", default=None, help="comma-separated indices into the family")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scheduler", default=None, help="Dask scheduler address, or 'serial'")
    parser.add_argument("--save", default=None, help="write the inspections as JSON")
    parser.add_argument("--baseline", default=None, help="a saved run to compare median stderr with")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--judge", default=None, help="judge a saved run (--save's JSON) again, without calibrating")
    args = parser.parse_args()
    if args.judge:
        saved = json.loads(Path(args.judge).read_text())
        judge(saved["inspections"], [], args.baseline)
        return
    members = family.fresh_family() if args.fresh else family.FAMILY
    members = members[: args.only] if args.only else members
    if args.pick:
        members = tuple(members[int(k)] for k in args.pick.split(","))
    tmp = tempfile.TemporaryDirectory()
    root = Path(args.data_dir or tmp.name)
    truths = root / "truths"
    truths.mkdir(parents=True, exist_ok=True)
    chips = [family.chip_spec(m, family.write_truth(m, truths)) for m in members]
    print(f"family: {len(chips)} chips, {sum(m.cells for m in members)} cells; "
          f"labstack calibrate --chips {truths}/*.json (as a batch of {args.workers} workers)")
    t0 = time.perf_counter()
    progress = Path(args.save).with_suffix(".jsonl") if args.save else None
    if progress is not None:
        progress.write_text("")

    def done(r) -> None:
        print(f"  {r.chip_id}: {r.seconds:.0f} s {r.summary[:100]}", flush=True)
        if progress is not None and r.inspection is not None:  # kept even if the batch is stopped
            with progress.open("a") as f:
                f.write(json.dumps(r.inspection) + "\n")

    report = calibrate_chips(
        chips, root / "data", scheduler=args.scheduler, n_workers=args.workers,
        inspect=family.inspect, on_result=done,
    )
    wall = time.perf_counter() - t0
    broken = [r for r in report.results if r.inspection is None]
    for r in broken:
        print(f"{r.chip_id}: no inspection: {(r.error or r.summary).strip().splitlines()[-1]}")
    inspections = [r.inspection for r in report.results if r.inspection is not None]
    if args.save:
        Path(args.save).write_text(json.dumps({"members": [m.__dict__ for m in members], "inspections": inspections}))
    print(f"\nwall time {wall:.0f} s for {len(chips)} chips")
    judge(inspections, [f"{r.chip_id}: calibration raised" for r in broken], args.baseline)


def judge(inspections, raised: list[str], baseline_path: str | None) -> None:
    """Print the tables, every failed criterion and the ratio line."""
    print_tables(inspections, baseline_path)
    bad = family.failures(inspections) + raised
    print(f"{len(bad)} failed criteria" + (":" if bad else ""))
    for line in bad:
        print("  " + line)
    worst = family.worst_fraction(inspections) if not raised else 0.0
    print(f"ratio: {worst / 0.95:.3f}")


def print_tables(inspections, baseline_path: str | None) -> None:
    print(f"\n{'chip':<16} {'parameter':<13} {'n':>4} {'in 3σ':>7} {'rms':>6} {'max|z|':>7} {'fw thr':>6} {'med err':>10}")
    for r in family.rows(inspections):
        mark = "" if r.ok else "  (beyond this parameter's own family-wise)"
        print(f"{r.chip:<16} {r.parameter:<13} {r.n:>4} {r.within_3sigma:>7.1%} {r.pull_rms:>6.2f} "
              f"{r.max_abs_pull:>7.2f} {r.threshold:>6.2f} {r.median_stderr:>10.3g}{mark}")
    print(f"\n{'chip':<16} {'values':>6} {'max|z|':>7} {'of':<16} {'fw thr':>6}   (every accepted value of the chip)")
    for c in family.chip_rows(inspections):
        mark = "" if c.ok else "  <-- beyond family-wise"
        print(f"{c.chip:<16} {c.n:>6} {c.max_abs_pull:>7.2f} {c.worst:<16} {c.threshold:>6.2f}{mark}")
    print(f"\n{'pooled':<13} {'n':>5} {'in 3σ':>7} {'rms':>6}   (accepted: {', '.join(family.ACCEPTED)})")
    for p, (n, frac, rms) in family.pooled(inspections).items():
        print(f"{p:<13} {n:>5} {frac:>7.1%} {rms:>6.2f}")
    for key in ("t_excess", "t_eff_exponent"):
        zs = [i["scalars"][key] for i in inspections]
        shown = " ".join("—" if z is None else f"{z:+.1f}" for z in zs)
        finite = [z for z in zs if z is not None]
        rms = float(np.sqrt(np.mean(np.square(finite)))) if finite else float("nan")
        print(f"{key} pulls: {shown}  (rms {rms:.2f})")
    print("validation KL: " + " ".join("—" if i["kl"] is None else f"{i['kl']:.4f}" for i in inspections))
    for i in inspections:
        fp = i["fixed_point"]
        fp_text = (f"{fp.get('passes')} passes, last change {fp.get('last_change_sigma')} σ, "
                   f"converged {fp.get('converged')}") if fp else "no fixed point"
        print(f"{i['chip']}: broken {i['broken']} flagged {i['flagged']}; {fp_text}")
    if baseline_path:
        base = json.loads(Path(baseline_path).read_text())["inspections"]
        print("\nmedian stderr / baseline's, by parameter and chip size (acceptance: <= 1.5)")
        for p in family.PARAMETERS:
            for n in sorted({i["n_cells"] for i in inspections}):
                now = [e for i in inspections if i["n_cells"] == n for e in i["stderr"][p]]
                then = [e for i in base if i["n_cells"] == n for e in i["stderr"][p]]
                if now and then:
                    print(f"  {p:<13} {n:>3} cells: {np.median(now) / np.median(then):.2f}")


if __name__ == "__main__":
    main()
