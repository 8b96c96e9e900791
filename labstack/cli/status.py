"""``labstack status``: which calibrations are fresh, stale, failed or never done."""

from __future__ import annotations

import argparse

from labstack.cli.exit_codes import EXIT_FAILED, EXIT_OK
from labstack.cli.options import add_data_dir, add_station_options, lab_description
from labstack.service.status import served_lab, status_clock
from labstack.session import calibration_status


def add_parser(sub: argparse._SubParsersAction) -> None:
    status = sub.add_parser(
        "status",
        help="which calibrations are fresh, stale, failed or never done",
        description="Evaluate every installed routine against the calibration state, opening "
        "only the station's clock (with no --station, a data directory calibrated on a served "
        "lab is judged by that lab's clock now, read from its service file). Exit 0 if all are "
        "fresh, 1 otherwise.",
    )
    add_station_options(status)
    add_data_dir(status)
    status.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    lab = lab_description(args)
    # no station of its own: a data directory calibrated on a served lab is judged by that
    # lab's clock now (read from its service file), not frozen at the last state update
    service = served_lab(args.data_dir) if args.station == "virtual" and lab is None else None
    at = status_clock(args.data_dir, lab_service=service) if service else None
    if at is not None and at.kind == "served":
        report = calibration_status(args.station, args.data_dir, clock=at.frozen(), note=f"({at.note})")
    else:
        report = calibration_status(args.station, args.data_dir, lab=lab)
    print(report.render())
    return EXIT_OK if report.all_fresh else EXIT_FAILED
