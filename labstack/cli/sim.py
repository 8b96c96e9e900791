"""``labstack sim ...``: the virtual lab (a virtual chip's hidden ground truth)."""

from __future__ import annotations

import argparse
import json

from labstack.cli.exit_codes import EXIT_OK
from labstack.sim.truth import GroundTruth


def add_parser(sub: argparse._SubParsersAction) -> None:
    sim = sub.add_parser("sim", help="the virtual lab")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True)
    gt = sim_sub.add_parser(
        "ground-truth",
        help="write a virtual chip's ground truth (JSON, format labstack-ground-truth/2)",
    )
    gt.add_argument("--seed", type=int, required=True)
    gt.add_argument("--cells", type=int, default=16)
    gt.add_argument("--topology", choices=["none", "chain", "grid"], default="chain")
    gt.add_argument("--dead", type=float, default=0.0, help="fraction of dead cells")
    gt.add_argument("--stuck", type=float, default=0.0, help="fraction of stuck cells")
    gt.add_argument("--crosstalk", type=float, default=0.0, help="nearest-line DAC crosstalk, fraction of gain")
    gt.add_argument(
        "--realism",
        choices=["realistic", "ideal"],
        default="realistic",
        help="realistic (default): per-seed fridge, readout, DACs, thermometry and drift; ideal: none of them",
    )
    gt.add_argument("-o", "--output", default="-", help="file to write (default: stdout)")
    gt.set_defaults(func=ground_truth)


def ground_truth(args: argparse.Namespace) -> int:
    truth = GroundTruth.from_seed(
        args.seed, args.cells, args.topology, dead_fraction=args.dead, stuck_fraction=args.stuck,
        crosstalk=args.crosstalk, realism=args.realism,
    )
    if args.output == "-":
        print(json.dumps(truth.to_dict(), indent=1))
    else:
        path = truth.save(args.output)
        print(
            f"wrote ground truth of a {truth.realism} {truth.n_cells}-cell {truth.topology} chip "
            f"(seed {args.seed}) to {path}"
        )
    return EXIT_OK
