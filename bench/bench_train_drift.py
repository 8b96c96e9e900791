"""Drift absorbed: periodic re-training keeps a trained target's KL low on a drifting chip.

Two copies of one realistic family chip (tests/family.py; its drift is the
simulator's realistic one: per-cell offset diffusion, gain wander, offset jumps of
two-level defects), one after the other, are calibrated from cold as far as training
reads, and a random model target on an 8-cell chain is set. Then 24 lab hours pass
in steps of ``--every`` lab seconds, and at each step:

* **without training** the bias node is maintained as ``labstack watch`` would
  (``check_state``: its 8 h timeout; else ``check_data``: a cheap sweep, out of spec
  when an offset moved by more than its tolerance; then a recalibration of the
  cells out of spec), and the target is programmed open loop through the refreshed
  calibration;
* **with training** the target is re-trained from the parameters the last training
  ended at (a warm start: a few iterations absorb the drift since); the bias node is
  recalibrated only when a training did not converge or its measured KL exceeds the
  bound (``--kl-max``), then trained again.

Both arms are scored on the simulator's truth (the chip's true fields, couplings and
T_eff at the programmed voltages, by exact enumeration) twice per step: just before
acting (after a whole step of drift) and just after. Printed: the count of bias-node
recalibrations of each arm, the worst KL of each, and per step the KLs.

    python bench/bench_train_drift.py [--member 101] [--hours 24] [--every 3600]

Last line ``ratio: <bias recalibrations without training / with training (+1 each)>``
(higher is better); the arm with training must keep KL < ``--kl-max`` at every score.
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
from labstack.train.loop import TrainConfig  # noqa: E402
from labstack.train.program import ChipMap  # noqa: E402
from labstack.train.target import load_target  # noqa: E402
from labstack.visa import open_station  # noqa: E402
from tests import family  # noqa: E402
from tests import train_helpers as H  # noqa: E402

BIAS = "bias_scurve"


class Arm:
    """One copy of the chip, its calibration and the target on it."""

    def __init__(self, member: family.Member, root: Path, name: str, target_doc: dict | None) -> None:
        truth = family.write_truth(member, root)
        description = f"truth={truth},seed={member.seed},instance=drift-{name}"
        self.station = open_station("virtual", lab=description)
        self.lab = pyvisa.ResourceManager(f"{description}@labstack").visalib.lab
        self.data = root / name
        self.root = root
        calibrate_station(self.station, data_dir=self.data, progress=False, names=["couplers"])
        self.layout = self.station.layout
        self.pairs = [tuple(p) for p in self.layout.coupler_pairs]
        self.recalibrations = 0
        if target_doc is None:
            state = self.state()
            cells = H.chain_cells(state, self.layout, 8)
            probe = H.write({"cells": cells, "h_K": [0.0] * 8, "J_K": []}, root / "probe.json")
            t_eff = ChipMap.build(load_target(probe), state, self.layout.n_cells, self.pairs).t_eff_K
            target_doc = H.model_target(cells, self.pairs, t_eff, seed=member.seed)
        self.target_doc = target_doc
        self.target = H.write(target_doc, root / f"target-{name}.json")

    def state(self) -> CalibrationState:
        return CalibrationState.load(self.data / STATE_DIRNAME)

    def cmap(self) -> ChipMap:
        return ChipMap.build(load_target(self.target), self.state(), self.layout.n_cells, self.pairs)

    def program(self, params: np.ndarray) -> None:
        names = list(self.layout.bias) + list(self.layout.couplers)
        for name, v in zip(names, np.concatenate(self.cmap().voltages(params)), strict=True):
            self.station.parameter(name).set(float(v))
        self.station.clock.sleep(0.1)

    def kl(self, result) -> float:
        return H.truth_kl(self.lab, result, result.target_params, result.edge_couplers)

    def maintain_bias(self) -> bool:
        """The bias node as a watch maintains it; True if it recalibrated."""
        report = calibrate_station(self.station, data_dir=self.data, progress=False, names=[BIAS])
        redone = BIAS in report.calibrated
        self.recalibrations += int(redone)
        return redone

    def recalibrate_bias(self) -> None:
        calibrate_station(self.station, data_dir=self.data, progress=False, names=[BIAS], force=True)
        self.recalibrations += 1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--member", type=int, default=101)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--every", type=float, default=3600.0, help="lab seconds between re-trainings")
    ap.add_argument("--kl-max", type=float, default=0.01)
    ap.add_argument("--samples", type=int, default=20_000)
    ap.add_argument("--eval-samples", type=int, default=100_000)
    args = ap.parse_args()
    member = next(m for m in family.FAMILY if m.seed == args.member)
    config = TrainConfig(n_samples=args.samples, n_eval=args.eval_samples, evaluate_open_loop=False)
    steps = int(round(args.hours * 3600 / args.every))
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # the arms run one after the other (QCoDeS names instruments per process), each
        # on its own copy of the chip from lab time 0: the same truth, the same drift law
        trained = Arm(member, root, "trained", None)
        first = train(trained.station, trained.target, state=trained.state(), data_dir=trained.data, config=config)
        params, ref = first.params, first  # ref: cells and edges of the exact scores
        worst_trained = trained.kl(first)
        print(f"{member.chip_id}: target on cells {first.cells}; first training {first.iterations} iterations "
              f"({first.stopped}), exact KL {worst_trained:.5f}", flush=True)
        print(f"with training, every {args.every:g} lab s:\n{'lab h':>6s} {'before':>9s} {'after':>9s} {'it':>3s} "
              f"{'recal':>5s}", flush=True)
        for k in range(1, steps + 1):
            trained.station.clock.sleep(args.every)
            trained.program(params)
            before = trained.kl(ref)
            res = train(trained.station, trained.target, state=trained.state(), data_dir=trained.data,
                        config=config, start_params=params)
            recal = ""
            if not res.converged or res.trained.kl_nats - res.trained.kl_bias_nats > args.kl_max:
                trained.recalibrate_bias()
                res = train(trained.station, trained.target, state=trained.state(), data_dir=trained.data,
                            config=config, start_params=res.params)
                recal = "yes"
            params = res.params
            after = trained.kl(res)
            worst_trained = max(worst_trained, before, after)
            print(f"{k * args.every / 3600:6.1f} {before:9.5f} {after:9.5f} {res.iterations:3d} {recal:>5s}", flush=True)
        trained.station.close()

        plain = Arm(member, root, "open", trained.target_doc)
        plain.program(plain.cmap().model_params())
        worst_open = plain.kl(ref)
        print(f"without training (open loop through the maintained calibration), KL at start {worst_open:.5f}:\n"
              f"{'lab h':>6s} {'before':>9s} {'after':>9s} {'recal':>5s}", flush=True)
        for k in range(1, steps + 1):
            plain.station.clock.sleep(args.every)
            before = plain.kl(ref)
            redone = plain.maintain_bias()
            plain.program(plain.cmap().model_params())
            after = plain.kl(ref)
            worst_open = max(worst_open, before, after)
            print(f"{k * args.every / 3600:6.1f} {before:9.5f} {after:9.5f} {'yes' if redone else '':>5s}", flush=True)
        plain.station.close()
    ok = worst_trained < args.kl_max and trained.recalibrations < plain.recalibrations
    print(f"bias-node recalibrations over {args.hours:g} lab h: without training {plain.recalibrations}, "
          f"with training {trained.recalibrations}")
    print(f"worst exact KL: without training {worst_open:.5f}, with training {worst_trained:.5f} nats "
          f"(bound {args.kl_max}); {'PASS' if ok else 'FAIL'}; wall {time.perf_counter() - t_start:.0f} s")
    print(f"ratio: {(plain.recalibrations + 1) / (trained.recalibrations + 1):.2f}")


if __name__ == "__main__":
    main()
