"""``labstack train --target FILE``: train the chip in the loop toward a model or a data set."""

from __future__ import annotations

import argparse
import sys

from labstack.calibrate import STATE_DIRNAME, CalibrationState
from labstack.cli.exit_codes import EXIT_FAILED, EXIT_OK
from labstack.cli.options import add_data_dir, add_progress, add_station_options, lab_description
from labstack.data import resolve_data_dir
from labstack.train import load_target, train
from labstack.train.loop import TrainConfig
from labstack.train.update import StopRule
from labstack.visa import open_station


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train the chip in the loop toward a target model or data set",
        description="Program the target through the calibrated virtual biases and couplers, "
        "sample the chip, and update its fields and couplings by moment matching until the "
        "chip's statistics agree with the target's within their errors. TARGET is JSON: "
        '{"cells": [...], "h_K": [...], "J_K": [[i, j, J], ...]} or {"cells": [...], '
        '"samples": [[1, -1, ...], ...]}. The last line is "KL = <value> nats" (model) or the '
        "held-out log-likelihood per sample (data).",
    )
    p.add_argument("--target", required=True, metavar="FILE", help="target JSON file")
    add_station_options(p)
    add_data_dir(p)
    add_progress(p)
    p.add_argument("--samples", type=int, default=40_000, help="samples per iteration (default 40000)")
    p.add_argument("--eval-samples", type=int, default=400_000, help="samples of each score (default 400000)")
    p.add_argument("--max-iterations", type=int, default=30, help="most iterations (default 30)")
    p.add_argument("--no-open-loop", action="store_true", help="do not score the open-loop point first")
    p.add_argument("--resume", metavar="RUN_ID", help="continue an earlier (e.g. crashed) training run")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    target = load_target(args.target)  # the file alone is checked before any instrument is opened
    state = CalibrationState.load(resolve_data_dir(args.data_dir) / STATE_DIRNAME)
    config = TrainConfig(
        n_samples=args.samples,
        n_eval=args.eval_samples,
        evaluate_open_loop=not args.no_open_loop,
        stop=StopRule(max_iterations=args.max_iterations),
    )

    def progress(iteration: int, info: dict[str, float]) -> None:
        scaled = "" if info["scale"] >= 1 else f", scaled back to {info['scale']:.2f} (ramp steps)"
        print(f"iteration {iteration}: chi2/dof {info['chi2']:.2f}, step {info['eta']:.2f}{scaled}",
              file=sys.stderr, flush=True)

    station = open_station(args.station, lab=lab_description(args))
    try:
        result = train(station, target, state=state, data_dir=args.data_dir, config=config,
                       resume=args.resume, on_iteration=None if args.no_progress else progress)
    finally:
        station.close()
    print(result.render())
    return EXIT_OK if result.converged else EXIT_FAILED
