"""Command-line hooks for batch work: ``labstack calibrate --chips ...`` and
``labstack replay --all ...``.

Kept apart from :mod:`labstack.cli` so that module only wires these in. Exit codes
as everywhere: 0 every chip / run ok, 1 some failed (each is reported), 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Dask (batch work)")
    group.add_argument(
        "--scheduler",
        help="Dask scheduler address (tcp://host:8786); default: a LocalCluster sized to this "
        "machine; 'serial': no Dask, one after the other in this process",
    )
    group.add_argument("--workers", type=int, help="LocalCluster worker processes (default: cores)")
    group.add_argument("--memory-limit", help="LocalCluster memory per worker, e.g. 2GiB")


def add_chips_arguments(parser: argparse.ArgumentParser) -> None:
    """``--chips`` and friends on the ``calibrate`` parser."""
    parser.add_argument(
        "--chips",
        nargs="+",
        metavar="CHIP",
        help="calibrate many chips as Dask tasks: seed=1,seed=2 or seed=1..24 (virtual; "
        "cells=/dead=/... after a seed apply to it), chip.json ground truths, or station files",
    )
    parser.add_argument(
        "--only", nargs="+", metavar="ROUTINE", help="with --chips: only these routines"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="ROUTINE.PARAM=VALUE",
        help="with --chips: override a routine parameter, e.g. bias_scurve.n_samples=500",
    )
    add_cluster_arguments(parser)


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["bias_scurve.n_samples=500"]`` -> ``{"bias_scurve": {"n_samples": 500}}``."""
    params: dict[str, dict[str, Any]] = {}
    for item in items:
        target, sep, value = item.partition("=")
        routine, dot, name = target.partition(".")
        if not sep or not dot or not routine or not name:
            raise ValueError(f"--set {item!r}: expected ROUTINE.PARAM=VALUE")
        params.setdefault(routine, {})[name] = yaml.safe_load(value)
    return params


def cmd_calibrate_chips(args: argparse.Namespace) -> int:
    from labstack.distributed.chips import ChipSpecError, calibrate_chips, parse_chips

    if getattr(args, "seed", None) is not None or getattr(args, "truth", None):
        print("labstack: with --chips, give seeds and ground truths in --chips", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        defaults = {"cells": args.cells} if getattr(args, "cells", None) is not None else {}
        chips = parse_chips(args.chips, station=args.station, defaults=defaults)
        params = parse_overrides(args.set)
        report = calibrate_chips(
            chips,
            args.data_dir,
            scheduler=args.scheduler,
            n_workers=args.workers,
            memory_limit=args.memory_limit,
            names=args.only,
            params=params,
            force=args.force,
            on_result=None if args.no_progress else _print_progress,
        )
    except (ChipSpecError, KeyError, ValueError) as exc:
        print(f"labstack: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(report.render())
    for result in report.failed:
        if result.error:
            print(f"\n== {result.chip_id} failed:\n{result.error}", file=sys.stderr)
    return EXIT_OK if report.ok else EXIT_FAILED


def _print_progress(result: Any) -> None:
    print(f"[{result.chip_id}] {result.summary}", file=sys.stderr, flush=True)


def add_replay_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``replay`` subcommand (batch form). Another branch may own ``replay``; merge
    its single-run form with ``--all`` here."""
    parser = sub.add_parser(
        "replay",
        help="re-fit stored runs (many at once on Dask with --all)",
        description="Re-fit stored calibration runs with their routine, offline, as Dask tasks.",
    )
    parser.add_argument("run_ids", nargs="*", help="run ids (or unique prefixes)")
    parser.add_argument(
        "--all", action="store_true", help="every completed run in the data directory"
    )
    parser.add_argument("--calibration", help="with --all: only runs of this routine")
    parser.add_argument("--chip", help="with --all: only runs tagged with this chip id")
    parser.add_argument(
        "--data-dir", default=None,
        help="data directory (default: ./labstack_data or $LABSTACK_DATA_DIR)",
    )
    add_cluster_arguments(parser)
    parser.set_defaults(func=cmd_replay_all)
    return parser


def cmd_replay_all(args: argparse.Namespace) -> int:
    from labstack.data import load_run
    from labstack.distributed.replay import replay_all, select_runs

    if args.all:
        ids = select_runs(args.data_dir, calibration=args.calibration, chip=args.chip)
    elif args.run_ids:
        try:
            ids = [load_run(r, args.data_dir).id for r in args.run_ids]
        except KeyError as exc:
            print(f"labstack: {exc.args[0]}", file=sys.stderr)
            return EXIT_BAD_INPUT
    else:
        print("labstack: give run ids or --all", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not ids:
        print("labstack: no runs to replay", file=sys.stderr)
        return EXIT_BAD_INPUT
    report = replay_all(
        ids, data_dir=args.data_dir, scheduler=args.scheduler, n_workers=args.workers,
        memory_limit=args.memory_limit,
    )
    print(report.render())
    for result in report.failed:
        print(f"\n== {result.run_id} failed:\n{result.error}", file=sys.stderr)
    return EXIT_OK if report.ok else EXIT_FAILED
