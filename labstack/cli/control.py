"""``labstack control pause|resume|abort``: steer the run writing into a data directory."""

from __future__ import annotations

import argparse

from labstack.cli.exit_codes import EXIT_OK
from labstack.data import resolve_data_dir
from labstack.safety.control import write_command


def add_parser(sub: argparse._SubParsersAction) -> None:
    ctl = sub.add_parser(
        "control",
        help="pause, resume or abort the run writing into a data directory",
        description="Writes the command into <data-dir>/labstack.control; the runner polls it "
        "between points. An abort ramps DACs to their safe value and switches the heater off.",
    )
    ctl.add_argument("action", choices=["pause", "resume", "abort"])
    ctl.add_argument("reason", nargs="*", help="free text recorded with the command")
    ctl.add_argument("--data-dir", default=None, help="the run's data directory (default: as for calibrate)")
    ctl.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = write_command(resolve_data_dir(args.data_dir), args.action, " ".join(args.reason))
    print(f"{args.action} requested ({path}); the running run acts on it between points")
    return EXIT_OK
