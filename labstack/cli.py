"""The ``labstack`` command line.

Exit codes: 0 success; 1 the work ran but something failed (a cell that did
not fit, a calibration out of spec); 2 bad input (station file, arguments,
ground-truth file) before any instrument was touched; 3 an instrument error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labstack.distributed.cli import add_chips_arguments, add_cluster_arguments, cmd_replay_all

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INSTRUMENT = 0, 1, 2, 3


def _lab_description(args: argparse.Namespace) -> str | None:
    """The virtual-lab description from --seed/--cells/--truth, or None to keep the station's."""
    if getattr(args, "truth", None):
        return str(Path(args.truth).resolve())
    parts = []
    if args.seed is not None:
        parts.append(f"seed={args.seed}")
    if args.cells is not None:
        parts.append(f"cells={args.cells}")
    return ",".join(parts) if parts else None


def cmd_calibrate(args: argparse.Namespace) -> int:
    if getattr(args, "chips", None):  # many chips as Dask tasks
        from labstack.distributed.cli import cmd_calibrate_chips

        return cmd_calibrate_chips(args)
    from pyvisa.errors import VisaIOError

    from labstack.calibrate import STATE_DIRNAME, CalibrationState, StateFileError
    from labstack.calibration_run import calibrate_station
    from labstack.data import resolve_data_dir
    from labstack.safety import InstrumentFault, RunAborted, SafetyError
    from labstack.sim.truth import GroundTruthError
    from labstack.station import StationConfigError, close_station, load_station

    try:  # every input file is checked before any instrument is opened
        CalibrationState.load(resolve_data_dir(args.data_dir) / STATE_DIRNAME)
        station = load_station(args.station, lab=_lab_description(args))
    except (StationConfigError, GroundTruthError, StateFileError) as exc:
        print(f"labstack: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        report = calibrate_station(
            station, data_dir=args.data_dir, progress=not args.no_progress, force=args.force
        )
    except (VisaIOError, InstrumentFault) as exc:
        print(f"labstack: instrument error: {exc}", file=sys.stderr)
        return EXIT_INSTRUMENT
    except SafetyError as exc:
        print(f"labstack: refused: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RunAborted as exc:
        print(f"labstack: aborted: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        close_station(station)
    print(report.render())
    return EXIT_OK if report.all_ok else EXIT_FAILED


def cmd_sim_ground_truth(args: argparse.Namespace) -> int:
    from labstack.sim.truth import GroundTruth, GroundTruthError

    try:
        truth = GroundTruth.from_seed(
            args.seed, args.cells, args.topology, dead_fraction=args.dead, stuck_fraction=args.stuck,
            crosstalk=args.crosstalk,
        )
    except GroundTruthError as exc:
        print(f"labstack: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.output == "-":
        import json

        print(json.dumps(truth.to_dict(), indent=1))
    else:
        path = truth.save(args.output)
        print(f"wrote ground truth of a {truth.n_cells}-cell {truth.topology} chip (seed {args.seed}) to {path}")
    return EXIT_OK


def cmd_measure(args: argparse.Namespace) -> int:
    from pyvisa.errors import VisaIOError

    from labstack.measure import SequenceError, describe, run_sequence, validate
    from labstack.measure.resolve import UnknownParameterError
    from labstack.sequence_file import SequenceFileError, load_sequence_file
    from labstack.sim.truth import GroundTruthError
    from labstack.station import StationConfigError, close_station, load_station

    try:
        spec = load_sequence_file(args.file)
        station = load_station(args.station, lab=_lab_description(args))
    except (SequenceFileError, StationConfigError, GroundTruthError) as exc:
        print(f"labstack: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        try:
            plan = validate(spec.sequence, station)
        except (SequenceError, UnknownParameterError, ValueError) as exc:
            print(f"labstack: {args.file}: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        print(describe(plan))
        if args.dry_run:
            return EXIT_OK
        run = run_sequence(
            spec.sequence,
            station,
            name=args.name or spec.name,
            data_dir=args.data_dir,
            metadata=spec.metadata,
            progress=not args.no_progress,
        )
    except VisaIOError as exc:
        print(f"labstack: instrument error: {exc}", file=sys.stderr)
        return EXIT_INSTRUMENT
    finally:
        close_station(station)
    print(f"run {run.id} {run.status}: {run.path}")
    return EXIT_OK if run.status == "completed" else EXIT_FAILED


def cmd_status(args: argparse.Namespace) -> int:
    from labstack.station import StationConfigError
    from labstack.status import calibration_status

    try:
        report = calibration_status(args.station, args.data_dir, lab=_lab_description(args))
    except (StationConfigError, KeyError) as exc:
        print(f"labstack: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(report.render())
    return EXIT_OK if report.all_fresh else EXIT_FAILED


def cmd_runs(args: argparse.Namespace) -> int:
    import json

    from labstack.data import list_runs

    try:
        runs = list_runs(
            args.data_dir, name=args.name, since=args.since, until=args.until,
            calibration=args.calibration, status=args.status,
        )
    except ValueError as exc:
        print(f"labstack: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.kind:
        runs = [r for r in runs if r.metadata.get("kind", "measurement") == args.kind]
    runs = runs[-args.last:] if args.last else runs
    if args.json:
        print(json.dumps([r.info for r in runs], indent=1, default=str))
        return EXIT_OK
    print(f"{'run id':<22}  {'name':<16}  {'status':<9}  {'created (UTC)':<19}  {'points':>8}  what")
    for r in runs:
        info = r.info
        meta = info.get("metadata", {})
        what = meta.get("kind") or meta.get("calibration") or ""
        print(
            f"{r.id:<22}  {str(info.get('name', ''))[:16]:<16}  {info['status']:<9}  "
            f"{info['created_utc'][:19]:<19}  {info.get('points_flushed', ''):>8}  {what}"
        )
    print(f"{len(runs)} run(s)", file=sys.stderr)
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from labstack.report import write_report

    try:
        path = write_report(args.run_id, args.data_dir, args.output)
    except (KeyError, FileNotFoundError) as exc:
        print(f"labstack: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(path)
    if args.open:
        import webbrowser

        webbrowser.open(path.resolve().as_uri())
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    from pyvisa.errors import VisaIOError

    from labstack.replay import ReplayError, replay_run
    from labstack.sim.truth import GroundTruthError
    from labstack.station import StationConfigError

    if args.all or len(args.run_ids) != 1:
        return cmd_replay_all(args)  # many runs: re-fit each as a Dask task
    try:
        report = replay_run(
            args.run_ids[0], args.data_dir, out_dir=args.out, truth=args.truth, lab=args.lab,
            station=args.station, z_max=args.z_max, atol=args.atol, rtol=args.rtol,
            progress=not args.no_progress,
        )
    except (ReplayError, KeyError, StationConfigError, GroundTruthError) as exc:
        print(f"labstack: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except VisaIOError as exc:
        print(f"labstack: instrument error: {exc}", file=sys.stderr)
        return EXIT_INSTRUMENT
    print(report.text())
    print(f"report: {report.out_dir}")
    return EXIT_OK if report.passed else EXIT_FAILED


def _add_lab_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--station", default="virtual", help="station file, or a shipped station name (default: virtual)")
    p.add_argument("--seed", type=int, help="virtual lab only: draw the chip from this seed")
    p.add_argument("--cells", type=int, help="virtual lab only: number of cells")
    p.add_argument("--truth", help="virtual lab only: ground-truth JSON file of the chip")


_DATA_DIR_HELP = "runs and calibration state (default: ./labstack_data or $LABSTACK_DATA_DIR)"


def _add_day_to_day(sub: argparse._SubParsersAction) -> None:
    """measure / status / runs / report / replay."""
    measure = sub.add_parser(
        "measure",
        help="run a measurement sequence from a JSON/YAML description file",
        description="Check a sequence against the station's limits, print what it will do, "
        "run it and store the data as a run. See labstack.sequence_file for the format.",
    )
    measure.add_argument("file", help="sequence description (.json, .yaml)")
    _add_lab_options(measure)
    measure.add_argument("--name", help="run name (default: from the file, else its stem)")
    measure.add_argument("--data-dir", default=None, help=_DATA_DIR_HELP)
    measure.add_argument("--dry-run", action="store_true", help="check and describe only; touch nothing")
    measure.add_argument("--no-progress", action="store_true", help="no progress bar")
    measure.set_defaults(func=cmd_measure)

    status = sub.add_parser(
        "status",
        help="which calibrations are fresh, stale, failed or never done",
        description="Evaluate every installed routine against the calibration state, opening "
        "only the station's clock. Exit 0 if all are fresh, 1 otherwise.",
    )
    _add_lab_options(status)
    status.add_argument("--data-dir", default=None, help=_DATA_DIR_HELP)
    status.set_defaults(func=cmd_status)

    runs = sub.add_parser(
        "runs", help="list stored runs", description="List the runs in a data directory, oldest first."
    )
    runs.add_argument("--data-dir", default=None, help=_DATA_DIR_HELP)
    runs.add_argument("--name", help="only runs with this name")
    runs.add_argument("--calibration", help="only acquisitions of this calibration routine")
    runs.add_argument("--kind", choices=["measurement", "calibration"], help="only this kind of run")
    runs.add_argument("--status", choices=["running", "completed", "failed"])
    runs.add_argument("--since", help="created at or after this UTC time (ISO 8601)")
    runs.add_argument("--until", help="created before this UTC time (ISO 8601)")
    runs.add_argument("--last", type=int, help="only the last N")
    runs.add_argument("--json", action="store_true", help="machine-readable output")
    runs.set_defaults(func=cmd_runs)

    report = sub.add_parser(
        "report",
        help="write a self-contained HTML report of a run or a calibration",
        description="One HTML file with the run's provenance, variables and plots (embedded "
        "PNG); for a calibration, its nodes, fitted values and every acquisition.",
    )
    report.add_argument("run_id", help="run id (or a unique prefix)")
    report.add_argument("--data-dir", default=None, help=_DATA_DIR_HELP)
    report.add_argument("-o", "--output", help="file to write (default: <run>/report.html)")
    report.add_argument("--open", action="store_true", help="open it in a browser")
    report.set_defaults(func=cmd_report)

    replay = sub.add_parser(
        "replay",
        help="re-execute a run or calibration on the virtual lab and compare",
        description="Build the recorded station on a fresh virtual lab, run the recorded "
        "sequence or calibration again and compare data and fitted values. Same chip and "
        "seed: data must be bit-for-bit equal. Exit 0 pass, 1 differences, 2 cannot replay.",
    )
    replay.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="run id (or a unique prefix); several ids or --all re-fit each stored run as a Dask task")
    replay.add_argument("--all", action="store_true", help="re-fit every completed run in the data directory (Dask)")
    replay.add_argument("--calibration", help="with --all: only runs of this routine")
    replay.add_argument("--chip", help="with --all: only runs tagged with this chip id")
    add_cluster_arguments(replay)
    replay.add_argument("--data-dir", default=None, help=_DATA_DIR_HELP)
    replay.add_argument("--truth", help="replay on this chip instead (ground-truth JSON)")
    replay.add_argument("--lab", help="replay on this virtual lab instead (e.g. seed=8,cells=16)")
    replay.add_argument("--station", help="replay with this station file instead of the recorded one")
    replay.add_argument("--out", help="where the replay's runs and report go")
    replay.add_argument("--z-max", type=float, default=5.0, help="fitted values may differ by this many sigma (default 5)")
    replay.add_argument("--atol", type=float, default=0.0, help="... or by this much in their unit")
    replay.add_argument("--rtol", type=float, default=0.0, help="... or by this fraction of their value "
                        "(values stored without uncertainty are judged only with --atol/--rtol)")
    replay.add_argument("--no-progress", action="store_true", help="no progress bars")
    replay.set_defaults(func=cmd_replay)



def cmd_control(args: argparse.Namespace) -> int:
    from labstack.data import resolve_data_dir
    from labstack.safety.control import write_command

    path = write_command(resolve_data_dir(args.data_dir), args.action, " ".join(args.reason))
    print(f"{args.action} requested ({path}); the running run acts on it between points")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labstack",
        description="Lab control and calibration for thermodynamic computing chips.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    cal = sub.add_parser(
        "calibrate",
        help="calibrate the chip of a station (default: the virtual lab)",
        description="Sweep each cell's bias, fit its S-curve and record offsets and widths "
        "with uncertainties in the calibration state.",
    )
    cal.add_argument("--station", default="virtual", help="station file, or a shipped station name (default: virtual)")
    cal.add_argument("--seed", type=int, help="virtual lab only: draw the chip from this seed")
    cal.add_argument("--cells", type=int, help="virtual lab only: number of cells")
    cal.add_argument("--truth", help="virtual lab only: ground-truth JSON file of the chip")
    cal.add_argument("--data-dir", default=None, help="where runs and the calibration state go (default: ./labstack_data or $LABSTACK_DATA_DIR)")
    cal.add_argument("--no-progress", action="store_true", help="no progress bars")
    cal.add_argument("--force", action="store_true", help="recalibrate every node, even those still valid")
    cal.set_defaults(func=cmd_calibrate)
    add_chips_arguments(cal)  # --chips, --only, --set, --scheduler, --workers, --memory-limit

    ctl = sub.add_parser(
        "control",
        help="pause, resume or abort the run writing into a data directory",
        description="Writes the command into <data-dir>/labstack.control; the runner polls it "
        "between points. An abort ramps DACs to their safe value and switches the heater off.",
    )
    ctl.add_argument("action", choices=["pause", "resume", "abort"])
    ctl.add_argument("reason", nargs="*", help="free text recorded with the command")
    ctl.add_argument("--data-dir", default=None, help="the run's data directory (default: as for calibrate)")
    ctl.set_defaults(func=cmd_control)

    sim = sub.add_parser("sim", help="the virtual lab")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True)
    gt = sim_sub.add_parser(
        "ground-truth",
        help="write a virtual chip's ground truth (JSON, format labstack-ground-truth/1)",
    )
    gt.add_argument("--seed", type=int, required=True)
    gt.add_argument("--cells", type=int, default=16)
    gt.add_argument("--topology", choices=["none", "chain", "grid"], default="chain")
    gt.add_argument("--dead", type=float, default=0.0, help="fraction of dead cells")
    gt.add_argument("--stuck", type=float, default=0.0, help="fraction of stuck cells")
    gt.add_argument("--crosstalk", type=float, default=0.0, help="nearest-line DAC crosstalk, fraction of gain")
    gt.add_argument("-o", "--output", default="-", help="file to write (default: stdout)")
    gt.set_defaults(func=cmd_sim_ground_truth)
    _add_day_to_day(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
