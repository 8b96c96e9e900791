"""``labstack status``: which calibrations are fresh, stale, failed or never done."""

from __future__ import annotations

import argparse

from labstack.cli.exit_codes import EXIT_FAILED, EXIT_OK
from labstack.cli.options import add_data_dir, add_station_options, lab_description
from labstack.session import calibration_status


def add_parser(sub: argparse._SubParsersAction) -> None:
    status = sub.add_parser(
        "status",
        help="which calibrations are fresh, stale, failed or never done",
        description="Evaluate every installed routine against the calibration state, opening "
        "only the station's clock. Exit 0 if all are fresh, 1 otherwise.",
    )
    add_station_options(status)
    add_data_dir(status)
    status.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report = calibration_status(args.station, args.data_dir, lab=lab_description(args))
    print(report.render())
    return EXIT_OK if report.all_fresh else EXIT_FAILED
