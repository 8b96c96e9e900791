"""The ``labstack`` command line: one module per command, one table of exit codes.

Exit codes (:mod:`labstack.cli.exit_codes`): 0 ok; 1 the work ran but something
failed (a cell that did not fit, a calibration out of spec); 2 bad input (station
file, arguments, ground-truth file) before any instrument was touched; 3 an
instrument error.

Imports: everything below it. Nothing imports it but the ``labstack`` script.
"""

from __future__ import annotations

import argparse

from labstack.cli import (
    calibrate,
    control,
    dashboard,
    measure,
    replay,
    report,
    runs,
    serve,
    sim,
    state,
    status,
    train,
    watch,
)
from labstack.cli.exit_codes import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INSTRUMENT,
    EXIT_OK,
    run_command,
)

COMMANDS = (calibrate, control, sim, measure, status, runs, report, replay, state, serve, watch, dashboard, train)

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_INSTRUMENT", "EXIT_OK", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labstack",
        description="Lab control and calibration for thermodynamic computing chips.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args.func, args)
