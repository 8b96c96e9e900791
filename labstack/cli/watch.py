"""``labstack watch``: keep a chip calibrated: maintain on a schedule and when asked, until stopped."""

from __future__ import annotations

import argparse

from labstack.cli.exit_codes import EXIT_OK, BadArguments
from labstack.cli.options import add_data_dir, lab_description, parse_overrides
from labstack.service.watch import WatchConfig, Watcher


def add_parser(sub: argparse._SubParsersAction) -> None:
    watch = sub.add_parser(
        "watch",
        help="keep a chip calibrated: maintain on a schedule (station clock) and when something asks",
        description="Run Optimus maintain over the calibration graph every --every seconds of the "
        "station clock (lab time on a served lab, real time on hardware), and as soon as a "
        "calibration goes stale, a suspender's signal comes back in band, or after a failure. Each "
        "pass is recorded (<data-dir>/watch/passes.jsonl, a calibration run, new state versions); "
        "<data-dir>/watch/status.json says what runs now. Ctrl-C or SIGTERM stops it cleanly (safe "
        "state, data flushed); a lab that goes away is reconnected. 'labstack control pause|resume|"
        "abort' steers it.",
    )
    watch.add_argument("--station", required=True, help="station file, e.g. the one labstack serve wrote")
    add_data_dir(watch)
    watch.add_argument("--every", type=float, default=3600.0, metavar="SECONDS", help="station-clock seconds between scheduled passes (default 3600)")
    watch.add_argument("--retry", type=float, default=600.0, metavar="SECONDS", help="station-clock seconds before retrying after a failure (default 600)")
    watch.add_argument("--poll", type=float, default=0.2, metavar="SECONDS", help="wall seconds between looks at clock, state and suspenders (default 0.2)")
    watch.add_argument("--reconnect", type=float, default=1.0, metavar="SECONDS", help="wall seconds between attempts to reopen a lost station (default 1)")
    watch.add_argument("--reconnect-timeout", type=float, metavar="SECONDS", help="give up after this long without the lab (default: never)")
    watch.add_argument("--only", nargs="+", metavar="ROUTINE", help="only these routines (and what they depend on)")
    watch.add_argument("--set", action="append", default=[], metavar="ROUTINE.PARAM=VALUE", help="override a routine parameter")
    watch.add_argument("--passes", type=int, metavar="N", help="stop after N passes")
    watch.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    watch.add_argument("--cells", type=int, help=argparse.SUPPRESS)
    watch.add_argument("--truth", help=argparse.SUPPRESS)
    watch.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.passes is not None and args.passes < 1:
        raise BadArguments(f"--passes {args.passes}: give at least 1")
    config = WatchConfig(
        station=args.station,
        data_dir=args.data_dir,
        lab=lab_description(args),
        every_s=args.every,
        retry_s=args.retry,
        poll_s=args.poll,
        reconnect_s=args.reconnect,
        reconnect_timeout_s=args.reconnect_timeout,
        names=args.only,
        params=parse_overrides(args.set),
        max_passes=args.passes,
    )
    try:
        watcher = Watcher(config, say=lambda line: print(line, flush=True))
    except ValueError as exc:
        raise BadArguments(str(exc)) from None
    print(f"labstack watch: maintaining {args.station} into {watcher.data_dir}; status: {watcher.directory}", flush=True)
    with watcher.signals():
        watcher.run()
    return EXIT_OK
