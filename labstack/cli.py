"""The ``labstack`` command line.

Exit codes: 0 success; 1 the work ran but something failed (a cell that did
not fit, a calibration out of spec); 2 bad input (station file, arguments,
ground-truth file) before any instrument was touched; 3 an instrument error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
