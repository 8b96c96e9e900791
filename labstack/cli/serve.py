"""``labstack serve``: run the virtual lab as a long-lived service, each instrument on a socket."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from labstack.cli.exit_codes import EXIT_OK, BadArguments
from labstack.cli.options import lab_description
from labstack.service import LabService
from labstack.service.process import DEFAULT_SERVICE_DIR
from labstack.service.server import DEFAULT_HOST, is_loopback, remote_warning
from labstack.service.timebase import warm_up


def add_parser(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser(
        "serve",
        help="serve the virtual lab's instruments on loopback sockets (a long-lived lab)",
        description="Run the virtual lab as a service: each instrument speaks SCPI on its own TCP "
        "port (TCPIP0::127.0.0.1::<port>::SOCKET), reached by the unmodified drivers through "
        "pyvisa-py. Writes a station file pointing at them. With --speed S the lab clock also runs "
        "at S x wall time while idle, so calibrations go stale while you watch.",
    )
    chip = serve.add_argument_group("the virtual chip")
    chip.add_argument("--seed", type=int, help="draw the chip from this seed")
    chip.add_argument("--cells", type=int, help="number of cells")
    chip.add_argument("--truth", help="ground-truth JSON file of the chip")
    chip.add_argument(
        "--lab",
        help="a full lab description instead, e.g. 'seed=7,cells=16,faults=0.01,fault_seed=3'",
    )
    serve.add_argument(
        "--station",
        help="serve this virtual station's instruments (e.g. the shipped oxford_lockin: lock-ins, "
        "sources, preamp, Triton) instead of the default station's",
    )
    serve.add_argument(
        "--speed",
        type=float,
        default=0.0,
        help="lab seconds per wall second while idle (3600: an hour per second); 0 (default): "
        "the clock moves only when asked, and runs replay bit for bit",
    )
    serve.add_argument("--dir", default=DEFAULT_SERVICE_DIR, help=f"station and service files (default ./{DEFAULT_SERVICE_DIR})")
    serve.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default 127.0.0.1, loopback only)")
    serve.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow --host to be a non-loopback address (the sockets have no authentication)",
    )
    serve.add_argument("--port", type=int, help="first port; instruments get consecutive ports (default: free ports, or the last ones used in --dir)")
    serve.add_argument("--fresh", action="store_true", help="start the lab calendar anew instead of continuing the last one in --dir")
    serve.set_defaults(func=run)


def description_of(args: argparse.Namespace) -> str:
    chip = lab_description(args)
    if args.lab and chip:
        raise BadArguments("give --lab, or --seed/--cells/--truth, not both")
    return args.lab or chip or ""


def run(args: argparse.Namespace) -> int:
    description = description_of(args)
    if not is_loopback(args.host):
        if not args.allow_remote:
            raise BadArguments(
                f"--host {args.host} is not a loopback address: the lab's sockets have no "
                "authentication; add --allow-remote to serve it there anyway"
            )
        print(f"labstack: {remote_warning(args.host)}", file=sys.stderr, flush=True)
    warm_up()  # before the sockets listen: no first client waits on the kernels' loading
    service = LabService(
        description,
        args.dir,
        speed=args.speed,
        host=args.host,
        allow_remote=args.allow_remote,
        base_port=args.port,
        fresh=args.fresh,
        station=args.station,
    ).start()
    service.describe(lambda line: print(line, flush=True))

    def stop(signum: int, _frame: Any) -> None:
        service.stop()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        service.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("labstack lab service stopped", flush=True)
    return EXIT_OK
