"""``labstack state history|show|diff|rollback``: the versioned calibration state, from a shell."""

from __future__ import annotations

import argparse

from labstack.calibrate import STATE_DIRNAME, CalibrationState
from labstack.cli.exit_codes import EXIT_OK, BadArguments
from labstack.cli.options import add_data_dir
from labstack.clock import WallClock
from labstack.data import resolve_data_dir


def add_parser(sub: argparse._SubParsersAction) -> None:
    state = sub.add_parser(
        "state",
        help="the calibration state: history, show, diff, rollback",
        description="Inspect the versioned calibration state in a data directory. A rollback "
        "never deletes anything: it writes a new version with the old content.",
    )
    state_sub = state.add_subparsers(dest="state_command", required=True)
    history = state_sub.add_parser("history", help="every version, oldest first")
    add_data_dir(history)
    history.set_defaults(func=run_history)
    show = state_sub.add_parser("show", help="every entry of a version (default: current)")
    show.add_argument("version", nargs="?", type=int, help="version number (default: current)")
    add_data_dir(show)
    show.set_defaults(func=run_show)
    diff = state_sub.add_parser("diff", help="what changed from version A to version B")
    diff.add_argument("a", type=int, help="older version")
    diff.add_argument("b", type=int, nargs="?", help="newer version (default: current)")
    add_data_dir(diff)
    diff.set_defaults(func=run_diff)
    rollback = state_sub.add_parser("rollback", help="make version V current again (as a new version)")
    rollback.add_argument("version", type=int)
    rollback.add_argument("--message", default="", help="recorded with the new version")
    add_data_dir(rollback)
    rollback.set_defaults(func=run_rollback)


def _state(args: argparse.Namespace) -> CalibrationState:
    return CalibrationState.load(resolve_data_dir(args.data_dir) / STATE_DIRNAME)


def _known(state: CalibrationState, *versions: int | None) -> None:
    for v in versions:
        if v is not None and not 0 <= v <= state.version:
            raise BadArguments(f"no calibration state version {v} (current is v{state.version})")


def run_history(args: argparse.Namespace) -> int:
    state = _state(args)
    for info in state.history():
        mark = "*" if info.version == state.version else " "
        print(f"{mark} v{info.version:<5} {(info.utc or '')[:19]:<19}  {info.node or '-':<22}  {info.message}")
    if state.version == 0:
        print("no calibration state yet")
    return EXIT_OK


def run_show(args: argparse.Namespace) -> int:
    state = _state(args)
    _known(state, args.version)
    view = state if args.version is None else state.at(args.version)
    print(view.to_table())
    return EXIT_OK


def run_diff(args: argparse.Namespace) -> int:
    state = _state(args)
    _known(state, args.a, args.b)
    print(state.diff(args.a, args.b).to_table())
    return EXIT_OK


def run_rollback(args: argparse.Namespace) -> int:
    # recover: a damaged current version is skipped (its file is kept), so the rollback
    # its error message offers can be made
    state = CalibrationState.load(resolve_data_dir(args.data_dir) / STATE_DIRNAME, recover=True)
    with state.writer(wait=0, who="labstack state rollback"):
        newest = max(state.version, CalibrationState.current_version(state.path or "."))
        if not 1 <= args.version <= newest:
            raise BadArguments(f"no calibration state version {args.version} to roll back to (current is v{newest})")
        new = state.rollback(args.version, clock=WallClock(), message=args.message)
    print(f"calibration state v{new}: content of v{args.version} ({state.path})")
    return EXIT_OK
