"""``labstack dashboard``: a live web page of a data directory (graph, chip, histories, runs)."""

from __future__ import annotations

import argparse

from labstack.cli.exit_codes import EXIT_OK, BadArguments
from labstack.cli.options import add_data_dir
from labstack.data import resolve_data_dir

#: labstack.presentation.dashboard.server's defaults, repeated so that every other command
#: starts without loading the web stack and matplotlib (tests/test_cli.py checks they agree)
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8050


def add_parser(sub: argparse._SubParsersAction) -> None:
    dash = sub.add_parser(
        "dashboard",
        help="serve a live web page of a data directory: graph, chip, histories, runs",
        description="Serves the calibration graph with each node's status, the chip, per-cell "
        "parameter histories, the latest runs with their figures and reports, and the node now "
        "running, updated live. Read-only without the token it prints; with it, the page can "
        "pause, resume and abort the running run. Binds to 127.0.0.1 unless --allow-remote.",
    )
    add_data_dir(dash)
    dash.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})")
    dash.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free)")
    dash.add_argument("--allow-remote", action="store_true",
                      help="allow a non-loopback --host (prints a warning: others can see the page)")
    dash.add_argument("--read-only", action="store_true", help="no pause/resume/abort from the page, even with the token")
    dash.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from labstack.presentation.dashboard import DashboardServer, RemoteBindRefused

    if not 0 <= args.port <= 65535:
        raise BadArguments(f"--port {args.port}: use 0..65535")
    try:
        server = DashboardServer(resolve_data_dir(args.data_dir), host=args.host, port=args.port,
                                 allow_remote=args.allow_remote, control=not args.read_only)
    except RemoteBindRefused as exc:
        raise BadArguments(str(exc)) from None
    server.run()
    return EXIT_OK
