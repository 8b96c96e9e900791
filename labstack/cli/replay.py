"""``labstack replay``: re-run one recorded run on the virtual lab, or re-fit many stored runs.

Two modes, chosen explicitly:

* ``labstack replay RUN_ID``: build the recorded station on a fresh virtual lab, run the
  recorded sequence or calibration again and compare data and fitted values.
* ``labstack replay --refit RUN_ID ...`` or ``--all``: re-fit stored calibration
  runs with their routine, offline, as Dask tasks (no instrument, no virtual lab).

Several run ids without ``--refit`` are refused, never taken as a request to re-fit.
"""

from __future__ import annotations

import argparse
import sys

from labstack.cli.exit_codes import EXIT_FAILED, EXIT_OK, BadArguments
from labstack.cli.options import add_cluster_options, add_data_dir, add_progress
from labstack.data import load_run
from labstack.session import replay_run


def add_parser(sub: argparse._SubParsersAction) -> None:
    replay = sub.add_parser(
        "replay",
        help="re-execute a run or calibration on the virtual lab and compare (or --refit many)",
        description="Build the recorded station on a fresh virtual lab, run the recorded "
        "sequence or calibration again and compare data and fitted values. Same chip and "
        "seed: data must be bit-for-bit equal. With --refit, re-fit stored runs offline on Dask "
        "instead. Exit 0 pass, 1 differences, 2 cannot replay.",
    )
    replay.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="run id (or a unique prefix); several only with --refit")
    replay.add_argument("--refit", action="store_true", help="re-fit the given stored runs with their routine, as Dask tasks")
    replay.add_argument("--all", action="store_true", help="re-fit every completed run in the data directory (implies --refit)")
    replay.add_argument("--calibration", help="with --all: only runs of this routine")
    replay.add_argument("--chip", help="with --all: only runs tagged with this chip id")
    add_cluster_options(replay)
    add_data_dir(replay)
    replay.add_argument("--truth", help="replay on this chip instead (ground-truth JSON)")
    replay.add_argument("--lab", help="replay on this virtual lab instead (e.g. seed=8,cells=16)")
    replay.add_argument("--station", help="replay with this station file instead of the recorded one")
    replay.add_argument("--out", help="where the replay's runs and report go")
    replay.add_argument("--z-max", type=float, default=5.0, help="fitted values may differ by this many sigma (default 5)")
    replay.add_argument("--atol", type=float, default=0.0, help="... or by this much in their unit")
    replay.add_argument("--rtol", type=float, default=0.0, help="... or by this fraction of their value "
                        "(values stored without uncertainty are judged only with --atol/--rtol)")
    add_progress(replay)
    replay.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.refit or args.all:
        return refit(args)
    if len(args.run_ids) != 1:
        raise BadArguments(
            f"replay re-runs one run on the virtual lab; got {len(args.run_ids)} run ids "
            "(to re-fit several stored runs offline, give --refit)"
        )
    report = replay_run(
        args.run_ids[0], args.data_dir, out_dir=args.out, truth=args.truth, lab=args.lab,
        station=args.station, z_max=args.z_max, atol=args.atol, rtol=args.rtol,
        progress=not args.no_progress,
    )
    print(report.text())
    print(f"report: {report.out_dir}")
    return EXIT_OK if report.passed else EXIT_FAILED


def refit(args: argparse.Namespace) -> int:
    """Re-fit stored runs with their routine as Dask tasks; each failure is reported."""
    from labstack.distributed.replay import replay_all, select_runs

    if args.all:
        ids = select_runs(args.data_dir, calibration=args.calibration, chip=args.chip)
    elif args.run_ids:
        ids = [load_run(r, args.data_dir).id for r in args.run_ids]
    else:
        raise BadArguments("--refit needs run ids or --all")
    if not ids:
        raise BadArguments("no runs to re-fit")
    report = replay_all(
        ids, data_dir=args.data_dir, scheduler=args.scheduler, n_workers=args.workers,
        memory_limit=args.memory_limit,
    )
    print(report.render())
    for result in report.failed:
        print(f"\n== {result.run_id} failed:\n{result.error}", file=sys.stderr)
    return EXIT_OK if report.ok else EXIT_FAILED
