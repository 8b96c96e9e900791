"""``labstack measure FILE``: check a sequence description, show it, run it into a stored run."""

from __future__ import annotations

import argparse
from pathlib import Path

from labstack.calibrate import STATE_DIRNAME, CalibrationState
from labstack.cli.exit_codes import EXIT_FAILED, EXIT_OK
from labstack.cli.options import add_data_dir, add_progress, add_station_options, lab_description
from labstack.clock import format_duration
from labstack.data import resolve_data_dir
from labstack.measure import Plan, SequenceError, Step, describe, run_sequence, validate
from labstack.measure.files import find_sequence_file, load_sequence_file
from labstack.station import LabStation
from labstack.visa import open_station


def add_parser(sub: argparse._SubParsersAction) -> None:
    measure = sub.add_parser(
        "measure",
        help="run a measurement sequence from a JSON/YAML description file",
        description="Check a sequence against the station's limits, print what it will do, "
        "run it and store the data as a run. The file format is in the README "
        "('Sequence files'); shipped examples: iv.yaml, map2d.yaml, trace.yaml.",
    )
    measure.add_argument("file", help="sequence description (.json, .yaml), or a shipped example's name")
    add_station_options(measure)
    measure.add_argument("--name", help="run name (default: from the file, else its stem)")
    add_data_dir(measure)
    measure.add_argument("--dry-run", action="store_true", help="check and describe only; touch nothing")
    add_progress(measure)
    measure.set_defaults(func=run)


def _validate(sequence: Step, station: LabStation, path: Path) -> Plan:
    """The dry run; its errors name the file, as the file's own checks do."""
    try:
        return validate(sequence, station)
    except SequenceError as err:
        raise SequenceError(f"{path}: {err}") from err


def run(args: argparse.Namespace) -> int:
    path, shipped = find_sequence_file(args.file)
    if shipped:
        print(f"{args.file}: no such file here; using the shipped example {path}")
    spec = load_sequence_file(path)
    station = open_station(args.station, lab=lab_description(args))
    try:
        plan = _validate(spec.sequence, station, path)
        print(describe(plan))
        if args.dry_run:
            return EXIT_OK
        root = resolve_data_dir(args.data_dir)
        result = run_sequence(
            spec.sequence,
            station,
            name=args.name or spec.name,
            data_dir=root,
            metadata=spec.metadata,
            progress=not args.no_progress,
            state_version=CalibrationState.current_version(root / STATE_DIRNAME),
        )
    finally:
        station.close()
    took = ""
    if result.info.get("lab_s") is not None:
        took = f" (lab {format_duration(result.info['lab_s'])}, wall {format_duration(result.info.get('wall_s'))})"
    print(f"run {result.id} {result.status}: {result.path}{took}")
    return EXIT_OK if result.status == "completed" else EXIT_FAILED
