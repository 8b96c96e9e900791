"""``labstack report RUN_ID``: one self-contained HTML file of a run or a calibration."""

from __future__ import annotations

import argparse
import webbrowser

from labstack.cli.exit_codes import EXIT_OK
from labstack.cli.options import add_data_dir


def add_parser(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser(
        "report",
        help="write a self-contained HTML report of a run or a calibration",
        description="One HTML file with the run's provenance, variables and plots (embedded "
        "PNG); for a calibration, its nodes, fitted values and every acquisition.",
    )
    report.add_argument("run_id", help="run id (or a unique prefix)")
    add_data_dir(report)
    report.add_argument("-o", "--output", help="file to write (default: <run>/report.html)")
    report.add_argument("--open", action="store_true", help="open it in a browser")
    report.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from labstack.presentation import write_report  # matplotlib: loaded by this command alone

    path = write_report(args.run_id, args.data_dir, args.output)
    print(path)
    if args.open:
        webbrowser.open(path.resolve().as_uri())
    return EXIT_OK
