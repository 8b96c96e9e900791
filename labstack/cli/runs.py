"""``labstack runs``: the run registry of a data directory, filtered."""

from __future__ import annotations

import argparse
import json
import sys

from labstack.cli.exit_codes import EXIT_OK, BadArguments
from labstack.cli.options import add_data_dir
from labstack.data import list_runs


def add_parser(sub: argparse._SubParsersAction) -> None:
    runs = sub.add_parser(
        "runs", help="list stored runs", description="List the runs in a data directory, oldest first."
    )
    add_data_dir(runs)
    runs.add_argument("--name", help="only runs with this name")
    runs.add_argument("--calibration", help="only acquisitions of this calibration routine")
    runs.add_argument("--kind", choices=["measurement", "calibration"], help="only this kind of run")
    runs.add_argument("--status", choices=["running", "completed", "failed"])
    runs.add_argument("--since", help="created at or after this UTC time (ISO 8601)")
    runs.add_argument("--until", help="created before this UTC time (ISO 8601)")
    runs.add_argument("--last", type=int, help="only the last N")
    runs.add_argument("--json", action="store_true", help="machine-readable output")
    runs.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        found = list_runs(
            args.data_dir, name=args.name, since=args.since, until=args.until,
            calibration=args.calibration, status=args.status,
        )
    except ValueError as exc:  # a --since / --until that is not ISO 8601
        raise BadArguments(str(exc)) from None
    if args.kind:
        found = [r for r in found if r.metadata.get("kind", "measurement") == args.kind]
    found = found[-args.last:] if args.last else found
    if args.json:
        print(json.dumps([r.info for r in found], indent=1, default=str))
        return EXIT_OK
    print(f"{'run id':<22}  {'name':<16}  {'status':<9}  {'created (UTC)':<19}  {'points':>8}  what")
    for r in found:
        info = r.info
        meta = info.get("metadata", {})
        what = meta.get("kind") or meta.get("calibration") or ""
        print(
            f"{r.id:<22}  {str(info.get('name', ''))[:16]:<16}  {info['status']:<9}  "
            f"{info['created_utc'][:19]:<19}  {info.get('points_flushed', ''):>8}  {what}"
        )
    print(f"{len(found)} run(s)", file=sys.stderr)
    return EXIT_OK
