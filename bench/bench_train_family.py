"""Closing the loop beats open loop, on a family of realistic chips (issue: train the chip in the loop).

Each chip of the family (tests/family.py; 16-cell members, including the ones whose
open-loop validation fails 0.02 nats) is calibrated from cold as far as training
reads (the couplers node and its dependencies, default routine parameters), then a random model
target on an 8-cell chain of usable cells (fields and couplings in ±0.5 T_eff, as the
validation node draws) is trained in the loop. Scored two ways at the open-loop and
the trained parameters: measured (plug-in KL on 400k samples, readout unmixed, its
finite-sample bias shown) and exact (the chip's true fields, couplings and T_eff from
the simulator, by enumeration: no sampling noise). On grid chips a bars-and-stripes
3x3 data target is trained too and its held-out log-likelihood compared with the exact
maximum-likelihood model of the same graph.

Acceptance: exact KL trained < 0.004 nats and >= 2x below open loop on every chip;
data target within 0.05 nats/sample of the ML model.

    python bench/bench_train_family.py [--members 101,102,...]

Last line ``ratio: <min over chips of open-loop KL / trained KL (exact)>``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pyvisa  # noqa: E402

from labstack.calibrate import STATE_DIRNAME, CalibrationState  # noqa: E402
from labstack.session import calibrate_station  # noqa: E402
from labstack.train import train  # noqa: E402
from labstack.train.program import ChipMap  # noqa: E402
from labstack.train.target import load_target  # noqa: E402
from labstack.visa import open_station  # noqa: E402
from tests import family  # noqa: E402
from tests import train_helpers as H  # noqa: E402

DEFAULT = (101, 102, 104, 110, 115, 118)


def program(station, cmap: ChipMap, params: np.ndarray) -> None:
    names = list(station.layout.bias) + list(station.layout.couplers)
    for name, v in zip(names, np.concatenate(cmap.voltages(params)), strict=True):
        station.parameter(name).set(float(v))
    station.clock.sleep(0.1)


def one_chip(member: family.Member, root: Path) -> dict:
    truth = family.write_truth(member, root)
    description = f"truth={truth},seed={member.seed},instance=train-{member.seed}"
    station = open_station("virtual", lab=description)
    lab = pyvisa.ResourceManager(f"{description}@labstack").visalib.lab
    data = root / member.chip_id
    t0 = time.perf_counter()
    calibrate_station(station, data_dir=data, progress=False, names=["couplers"])
    t_cal = time.perf_counter() - t0
    state = CalibrationState.load(data / STATE_DIRNAME)
    layout = station.layout
    pairs = [tuple(p) for p in layout.coupler_pairs]
    cells = H.chain_cells(state, layout, 8)
    t_eff = ChipMap.build(load_target(H.write({"cells": cells, "h_K": [0.0] * 8, "J_K": []}, root / "probe.json")),
                          state, layout.n_cells, pairs).t_eff_K
    path = H.write(H.model_target(cells, pairs, t_eff, seed=member.seed), root / f"{member.chip_id}-model.json")
    t0 = time.perf_counter()
    res = train(station, path, state=state, data_dir=data)
    t_train = time.perf_counter() - t0
    kl_trained = H.truth_kl(lab, res, res.target_params, res.edge_couplers)
    cmap = ChipMap.build(load_target(path), state, layout.n_cells, pairs)
    program(station, cmap, res.open_loop_params)
    kl_open = H.truth_kl(lab, res, res.target_params, res.edge_couplers)
    row = {"chip": member.chip_id, "cells": cells, "iterations": res.iterations, "stopped": res.stopped,
           "kl_open_meas": res.open_loop.kl_nats, "kl_meas": res.trained.kl_nats, "kl_bias": res.trained.kl_bias_nats,
           "kl_open_exact": kl_open, "kl_exact": kl_trained, "t_cal": t_cal, "t_train": t_train}
    block = H.grid_block(state, layout, 3)
    if block is not None:
        samples = H.bars_and_stripes(3, 2000, seed=member.seed)
        dpath = H.write({"cells": block, "samples": samples.tolist()}, root / f"{member.chip_id}-bas.json")
        d = train(station, dpath, state=state, data_dir=data)
        row.update(bas_ll=d.trained.loglik, bas_ll_ml=d.loglik_ml, bas_ll_open=d.open_loop.loglik,
                   bas_iterations=d.iterations, bas_stopped=d.stopped)
    station.close()
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", default=",".join(map(str, DEFAULT)))
    args = ap.parse_args()
    seeds = [int(s) for s in args.members.split(",")]
    members = [m for m in family.FAMILY if m.seed in seeds]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for m in members:
            row = one_chip(m, Path(tmp))
            rows.append(row)
            print(row, flush=True)
    print()
    print(f"{'chip':16s} {'open(meas)':>10s} {'trained(meas)':>13s} {'bias':>7s} {'open(exact)':>11s} "
          f"{'trained(exact)':>14s} {'gain':>6s} {'it':>3s}  BAS ll (chip / ML / open)")
    ok = True
    for r in rows:
        gain = r["kl_open_exact"] / r["kl_exact"]
        good = r["kl_exact"] < 0.004 and gain >= 2
        bas = ""
        if "bas_ll" in r:
            gap = r["bas_ll_ml"] - r["bas_ll"]
            good &= gap <= 0.05
            bas = f"{r['bas_ll']:.4f} / {r['bas_ll_ml']:.4f} / {r['bas_ll_open']:.4f} (gap {gap:.4f})"
        ok &= good
        print(f"{r['chip']:16s} {r['kl_open_meas']:10.5f} {r['kl_meas']:13.5f} {r['kl_bias']:7.5f} "
              f"{r['kl_open_exact']:11.5f} {r['kl_exact']:14.6f} {gain:6.1f} {r['iterations']:3d}  {bas}"
              f"{'' if good else '  FAIL'}")
    print(f"all chips pass: {ok}; training wall s: " + ", ".join(f"{r['t_train']:.1f}" for r in rows))
    print(f"ratio: {min(r['kl_open_exact'] / r['kl_exact'] for r in rows):.2f}")


if __name__ == "__main__":
    main()
