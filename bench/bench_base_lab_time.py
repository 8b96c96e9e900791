"""Lab time of the work done at base temperature: a cold start, then a maintain pass.

The scarce resource on hardware is fridge time, which the virtual clock measures.
This calibrates a chip from cold (the graph of ``labstack calibrate``), prints lab
minutes and wall seconds per node, the sum over the nodes that work at base
temperature (readout, bias_scurve with both fixed-point passes and its windows,
bias_settling, crosstalk, couplers, validation), then expires every node's timeout
without letting the chip drift (each node's timeout set to one second, the clock
moved two) and runs a maintain pass, in which every node's ``check_data`` runs:
its lab time is the cost of "nothing to do".

Targets (issue 17, base-temperature half): base work <= 10 min of lab time, the
maintain pass <= 2 min, on 64-cell chips. ``ratio`` is 10 min / base lab time.

    python bench/bench_base_lab_time.py [--seed 3] [--cells 64] [--family 19] [--fresh] [--set bias_scurve.sample_rate_Hz=100 ...]

``--family N``: the chip ``tests/family.py`` FAMILY[N] (``--fresh``: of fresh_family), e.g. 19, fam-120's 64-cell grid.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labstack.calibrate import Context  # noqa: E402
from labstack.session import build_graph  # noqa: E402
from labstack.visa import open_station  # noqa: E402
from tests.conftest import lab_description  # noqa: E402

BASE_NODES = ("readout", "bias_scurve", "bias_settling", "crosstalk", "couplers", "validation")
TARGET_BASE_S = 600.0
TARGET_MAINTAIN_S = 120.0


def per_node(graph, since: int) -> tuple[dict[str, float], dict[str, float]]:
    """Lab and wall seconds per node of the log entries from ``since`` on."""
    lab: dict[str, float] = defaultdict(float)
    wall: dict[str, float] = defaultdict(float)
    for entry in graph.log[since:]:
        if entry.function in ("calibrate", "check_data") and entry.lab_s is not None:
            lab[entry.node] += entry.lab_s
            wall[entry.node] += entry.wall_s or 0.0
    return lab, wall


def overrides(items: list[str]) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = defaultdict(dict)
    for item in items:
        key, value = item.split("=", 1)
        node, name = key.split(".", 1)
        out[node][name] = json.loads(value)
    return dict(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--cells", type=int, default=64)
    ap.add_argument("--set", action="append", default=[], help="ROUTINE.PARAM=JSON value")
    ap.add_argument("--no-maintain", action="store_true")
    ap.add_argument("--family", type=int, default=None, help="index into tests/family.py FAMILY")
    ap.add_argument("--fresh", action="store_true", help="with --family: the fresh family's chip")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        if args.family is not None:
            from tests import family

            member = (family.fresh_family() if args.fresh else family.FAMILY)[args.family]
            description = lab_description(truth=str(family.write_truth(member, tmp)))
            print(f"chip {member.chip_id}")
        else:
            description = lab_description(seed=args.seed, cells=args.cells)
        run_bench(args, description, tmp)


def run_bench(args: argparse.Namespace, description: str, tmp: str) -> None:
    """Cold start, then (unless --no-maintain) a maintain pass after every timeout; prints both."""
    station = open_station("virtual", lab=description)
    ctx = Context.create(tmp, station)
    graph = build_graph(ctx, params=overrides(args.set))
    t0 = time.perf_counter()
    graph.calibrate_all()
    wall = time.perf_counter() - t0
    lab, node_wall = per_node(graph, 0)
    print(f"{'node':<22} {'lab min':>9} {'wall s':>8}")
    for name in graph.order():
        print(f"{name:<22} {lab.get(name, 0.0) / 60:>9.2f} {node_wall.get(name, 0.0):>8.1f}")
    base = sum(lab.get(n, 0.0) for n in BASE_NODES)
    print(f"cold start: lab {sum(lab.values()) / 60:.1f} min, at base {base / 60:.2f} min, wall {wall:.1f} s")
    status = {n: str(s) for n, s in graph.status().items()}
    print(f"status: {status}")
    if not args.no_maintain:
        for name in graph.names:
            graph[name].timeout_s = 1.0
        ctx.clock.sleep(2.0)
        start = len(graph.log)
        lab0 = ctx.clock.now()
        t0 = time.perf_counter()
        graph.calibrate_all()
        m_wall = time.perf_counter() - t0
        m_lab = ctx.clock.now() - lab0
        lab_m, _ = per_node(graph, start)
        calls = [(e.function, e.node, e.outcome) for e in graph.log[start:] if e.function in ("check_data", "calibrate")]
        print("maintain per node (lab s): " + ", ".join(f"{n} {v:.1f}" for n, v in lab_m.items()))
        print(f"maintain calls: {calls}")
        print(f"maintain: lab {m_lab / 60:.2f} min, wall {m_wall:.1f} s")
    print(f"ratio: {TARGET_BASE_S / max(base, 1e-9):.3f}")
    station.close()


if __name__ == "__main__":
    main()
