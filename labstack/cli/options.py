"""Options several commands share: which station and virtual chip, where data go, Dask."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from labstack.cli.exit_codes import BadArguments

DATA_DIR_HELP = "runs and calibration state (default: ./labstack_data or $LABSTACK_DATA_DIR)"


def add_station_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--station", default="virtual", help="station file, or a shipped station name (default: virtual)")
    p.add_argument("--seed", type=int, help="virtual lab only: draw the chip from this seed")
    p.add_argument("--cells", type=int, help="virtual lab only: number of cells")
    p.add_argument("--truth", help="virtual lab only: ground-truth JSON file of the chip")
    p.add_argument(
        "--realism",
        choices=["realistic", "ideal"],
        help="virtual lab only: the realistic chip (the default) or the ideal one of the same seed",
    )


def add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)


def add_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def lab_description(args: argparse.Namespace) -> str | None:
    """The virtual-lab description from --seed/--cells/--truth/--realism, or None to keep the station's."""
    realism = getattr(args, "realism", None)
    if getattr(args, "truth", None):
        path = str(Path(args.truth).resolve())
        return f"truth={path},realism={realism}" if realism else path
    parts = []
    if getattr(args, "seed", None) is not None:
        parts.append(f"seed={args.seed}")
    if getattr(args, "cells", None) is not None:
        parts.append(f"cells={args.cells}")
    if realism:
        parts.append(f"realism={realism}")
    return ",".join(parts) if parts else None


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Dask (batch work)")
    group.add_argument(
        "--scheduler",
        help="Dask scheduler address (tcp://host:8786); default: a LocalCluster sized to this "
        "machine; 'serial': no Dask, one after the other in this process",
    )
    group.add_argument("--workers", type=int, help="LocalCluster worker processes (default: cores)")
    group.add_argument("--memory-limit", help="LocalCluster memory per worker, e.g. 2GiB")


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["bias_scurve.n_samples=500"]`` -> ``{"bias_scurve": {"n_samples": 500}}``."""
    params: dict[str, dict[str, Any]] = {}
    for item in items:
        target, sep, value = item.partition("=")
        routine, dot, name = target.partition(".")
        if not sep or not dot or not routine or not name:
            raise BadArguments(f"--set {item!r}: expected ROUTINE.PARAM=VALUE")
        params.setdefault(routine, {})[name] = yaml.safe_load(value)
    return params
