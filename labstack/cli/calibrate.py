"""``labstack calibrate``: bring a station's chip to a calibrated state (or many chips on Dask)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from labstack.calibrate import STATE_DIRNAME, CalibrationState
from labstack.cli.exit_codes import EXIT_FAILED, EXIT_OK, BadArguments
from labstack.cli.options import (
    add_cluster_options,
    add_data_dir,
    add_progress,
    add_station_options,
    lab_description,
    parse_overrides,
)
from labstack.data import resolve_data_dir
from labstack.session import calibrate_station
from labstack.visa import open_station
from labstack.visa.stations import check_lab_description


def add_parser(sub: argparse._SubParsersAction) -> None:
    cal = sub.add_parser(
        "calibrate",
        help="calibrate the chip of a station (default: the virtual lab)",
        description="Run every installed calibration routine that is not still valid: S-curves, "
        "readout, cryostat, crosstalk, couplers, ... and record each value with its uncertainty "
        "in the calibration state. With --chips, many chips as Dask tasks.",
    )
    add_station_options(cal)
    add_data_dir(cal)
    add_progress(cal)
    cal.add_argument("--force", action="store_true", help="recalibrate every node, even those still valid")
    cal.add_argument(
        "--wait",
        nargs="?",
        type=float,
        const=-1.0,
        default=0.0,
        metavar="SECONDS",
        help="if another process is writing the calibration state, wait for it (as long as it "
        "takes, or SECONDS) and continue from its result; default: stop at once with exit code 1",
    )
    cal.add_argument(
        "--chips",
        nargs="+",
        metavar="CHIP",
        help="calibrate many chips as Dask tasks: seed=1,seed=2 or seed=1..24 (virtual; "
        "cells=/dead=/... after a seed apply to it), chip.json ground truths, or station files",
    )
    cal.add_argument("--only", nargs="+", metavar="ROUTINE", help="only these routines (and what they depend on)")
    cal.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="ROUTINE.PARAM=VALUE",
        help="with --chips: override a routine parameter, e.g. bias_scurve.n_samples=500",
    )
    add_cluster_options(cal)
    cal.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.chips:
        return run_chips(args)
    # every input file is checked, and the state's writer lock taken, before any instrument is
    # opened; a bad chip description is refused before the lock (which would leave a lock file)
    lab = lab_description(args)
    if lab is not None:
        check_lab_description(lab)
    state = CalibrationState.load(resolve_data_dir(args.data_dir) / STATE_DIRNAME)
    wait = None if args.wait is not None and args.wait < 0 else args.wait
    with state.writer(wait=wait, who="labstack calibrate", on_wait=_print_waiting):
        station = open_station(args.station, lab=lab)
        try:
            report = calibrate_station(
                station,
                data_dir=args.data_dir,
                progress=not args.no_progress,
                force=args.force,
                names=args.only,
            )
        finally:
            station.close()
    print(report.render())
    return EXIT_OK if report.all_ok else EXIT_FAILED


def _print_waiting(message: str) -> None:
    print(f"labstack: {message} ...", file=sys.stderr, flush=True)


def run_chips(args: argparse.Namespace) -> int:
    """``--chips``: each chip's station built and calibrated in a Dask worker."""
    from labstack.distributed.chips import calibrate_chips, parse_chips

    if args.seed is not None or args.truth:
        raise BadArguments("with --chips, give seeds and ground truths in --chips")
    defaults = {"cells": args.cells} if args.cells is not None else {}
    chips = parse_chips(args.chips, station=args.station, defaults=defaults)
    report = calibrate_chips(
        chips,
        args.data_dir,
        scheduler=args.scheduler,
        n_workers=args.workers,
        memory_limit=args.memory_limit,
        names=args.only,
        params=parse_overrides(args.set),
        force=args.force,
        on_result=None if args.no_progress else _print_progress,
    )
    print(report.render())
    for result in report.failed:
        if result.error:
            print(f"\n== {result.chip_id} failed:\n{result.error}", file=sys.stderr)
    return EXIT_OK if report.ok else EXIT_FAILED


def _print_progress(result: Any) -> None:
    print(f"[{result.chip_id}] {result.summary}", file=sys.stderr, flush=True)
