"""A fast training loop at 64 cells through the drivers, and against thrml training the same model.

**labstack.** A 64-cell virtual chip (a chain) is calibrated from cold as far as
training reads (the couplers node and its dependencies, lighter sweeps). A random
model target on a 12-cell chain of usable cells (fields and couplings in ±0.5 T_eff)
is trained with ``labstack.train``: every iteration writes all 64 bias and 63
coupler lines through the QDAC-II drivers (guarded, one message per DAC), waits,
takes one single-shot sample of all 64 cells through the sampler driver, and updates.
Printed per iteration: wall and lab time of instrument I/O, waiting, sampling and
computing, and the part of the sampling wall spent simulating the physics
(``VirtualLab.acquire``): what a real chip replaces by its lab time. The overhead the
acceptance bounds (5 ms) is every wall second of an iteration outside the simulator's
physics: I/O + computing + the sampling wall outside the physics (the transfer and
parsing of the readings) + the waiting wall outside the wait's physics
(``VirtualLab.sleep``; what is left is the clock's commands); the I/O excludes the DAC
twins' own response to the commands (``VirtualLab.set_dac``: slew, filters,
quantisation, what a real DAC's hardware does), which is printed beside it, and the
overhead with it too. The twins' SCPI parsing and block formatting stay in the
overhead. Figures are medians over the iterations that wrote (a busy machine's
stalls move a mean, not a median).
The sampler transfers the target cells only (``SAMPle:CHANnels``). The trained KL is exact: the simulator's
true fields, couplings and T_eff at the programmed voltages, enumerated.

**thrml** (0.1.4, Extropic's JAX block-Gibbs sampler) trains the same 12-cell model by
the same moment matching in software: the same target moments, samples per
iteration, Fisher-preconditioned step, step-size schedule and stop rule
(:mod:`labstack.train.update`), its samples from its own sampler. Its best: it starts
from the target's own parameters (software has no calibration error to learn away),
runs persistent chains (each iteration continues the last one's states, a short
warm-up), its sampler is ``jax.jit``-compiled with the parameters as arguments (one
compilation, before timing), and the number of parallel chains (``jax.vmap``) is the
fastest of those tried for one iteration's samples. It is done when the stop rule
has fired and the exact KL of its model is no larger than the chip's trained KL.

    python bench/bench_train_loop.py [--cells 64] [--target-cells 12] [--samples 20000]

Last line ``ratio: <thrml wall to the same KL / labstack wall>``, both the sum of
their iterations' wall times (higher is better for labstack).
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

from labstack.calibrate import STATE_DIRNAME, CalibrationState  # noqa: E402
from labstack.session import calibrate_station  # noqa: E402
from labstack.train import exact, train  # noqa: E402
from labstack.train.loop import TrainConfig  # noqa: E402
from labstack.train.program import ChipMap  # noqa: E402
from labstack.train.record import PARTS  # noqa: E402
from labstack.train.stats import from_states  # noqa: E402
from labstack.train.target import load_target  # noqa: E402
from labstack.train.update import Schedule, StopRule, residual, step  # noqa: E402
from labstack.visa import open_station  # noqa: E402
from tests import train_helpers as H  # noqa: E402
from tests.conftest import lab_description, lab_of  # noqa: E402

#: what training reads, lighter sweeps (the loop is timed, not the calibration)
CALIBRATE = H.CALIBRATE


class PhysicsTimer:
    """Wall seconds the simulator spends in one of its methods: ``VirtualLab.acquire`` (the
    physics of a sample) or ``VirtualLab.set_dac`` (a DAC line answering a command: slew,
    filters, quantisation; what the instrument's own hardware does)."""

    def __init__(self, lab, method: str = "acquire") -> None:
        self.seconds, self.calls = 0.0, 0
        inner = getattr(lab, method)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0
                self.calls += 1

        setattr(lab, method, timed)


def labstack_side(args, root: Path) -> dict:
    description = lab_description(seed=args.seed, cells=args.cells, instance="train-loop")
    station = open_station("virtual", lab=description)
    lab = lab_of(description)
    data = root / "data"
    t0 = time.perf_counter()
    calibrate_station(station, data_dir=data, progress=False, **CALIBRATE)
    t_cal = time.perf_counter() - t0
    state = CalibrationState.load(data / STATE_DIRNAME)
    layout = station.layout
    pairs = [tuple(p) for p in layout.coupler_pairs]
    cells = H.chain_cells(state, layout, args.target_cells)
    probe = H.write({"cells": cells, "h_K": [0.0] * len(cells), "J_K": []}, root / "probe.json")
    t_eff = ChipMap.build(load_target(probe), state, layout.n_cells, pairs).t_eff_K
    path = H.write(H.model_target(cells, pairs, t_eff, seed=args.seed), root / "model.json")
    physics = PhysicsTimer(lab)
    dac = PhysicsTimer(lab, "set_dac")
    waiting = PhysicsTimer(lab, "sleep")
    marks: list[tuple[float, int, float, float]] = []

    def mark(iteration, info):  # physics seconds so far, after each iteration
        marks.append((physics.seconds, physics.calls, dac.seconds, waiting.seconds))

    mark(-1, {})
    config = TrainConfig(n_samples=args.samples, n_eval=args.eval_samples)
    t0 = time.perf_counter()
    res = train(station, path, state=state, data_dir=data, config=config, on_iteration=mark)
    t_train = time.perf_counter() - t0
    # physics inside each iteration's sampling: the difference of the marks (the open-loop
    # score and the first programming happen before the first mark of the loop)
    physics_per_it = np.diff([m[0] for m in marks[1:]], prepend=np.nan)
    dac_per_it = np.diff([m[2] for m in marks[1:]], prepend=np.nan)
    sleep_per_it = np.diff([m[3] for m in marks[1:]], prepend=np.nan)
    kl = H.truth_kl(lab, res, res.target_params, res.edge_couplers)
    station.close()
    return {"res": res, "kl": kl, "t_cal": t_cal, "t_train": t_train, "physics": physics_per_it, "dac": dac_per_it,
            "sleep": sleep_per_it,
            "n_lines": len(layout.bias) + len(layout.couplers), "n_cells": layout.n_cells, "cells": cells}


def print_split(side: dict) -> float:
    """The per-iteration split (medians over the iterations that wrote: robust to a busy
    machine) and the overhead: every wall second outside the simulator's physics."""
    res = side["res"]
    later = res.timings[1:]  # the first iteration samples the starting point: nothing written
    med = {k: float(np.median([t[k] for t in later])) for k in later[0]}
    physics = side["physics"][1:]
    dac = side["dac"][1:]
    sleep = side["sleep"][1:]
    wall = {p: np.array([t[f"wall_{p}_s"] for t in later]) for p in PARTS}
    transfer = wall["sample"] - physics
    io = wall["io"] - dac
    clock = wall["wait"] - sleep
    overhead = io + wall["compute"] + transfer + clock
    m = {k: 1e3 * float(np.median(v)) for k, v in
         {"physics": physics, "dac": dac, "sleep": sleep, "transfer": transfer, "io": io, "clock": clock,
          "overhead": overhead, "with_dac": overhead + dac}.items()}
    print(f"{side['n_cells']}-cell chip, {side['n_lines']} lines written per iteration; target {len(res.cells)} cells "
          f"{res.cells}; {res.iterations} iterations, stopped: {res.stopped}; {res.messages_per_iteration:.1f} "
          f"SCPI writes per iteration")
    print(f"{'per iteration (median)':22s} " + " ".join(f"{p:>9s}" for p in PARTS))
    print(f"{'wall ms':22s} " + " ".join(f"{1e3 * med[f'wall_{p}_s']:9.2f}" for p in PARTS))
    print(f"{'lab ms':22s} " + " ".join(f"{1e3 * med[f'lab_{p}_s']:9.2f}" for p in PARTS))
    print(f"sampling wall {1e3 * med['wall_sample_s']:.1f} ms = physics simulated {m['physics']:.1f} ms "
          f"(VirtualLab.acquire) + transfer and parsing {m['transfer']:.2f} ms")
    print(f"waiting wall {1e3 * med['wall_wait_s']:.2f} ms = physics of the wait {m['sleep']:.2f} ms "
          f"(VirtualLab.sleep) + the clock's commands {m['clock']:.2f} ms")
    print(f"I/O wall {1e3 * med['wall_io_s']:.2f} ms = the DAC twins answering the commands {m['dac']:.2f} ms "
          f"(VirtualLab.set_dac) + drivers, guard and messages {m['io']:.2f} ms")
    print(f"overhead outside physical sampling and waiting: {m['overhead']:.2f} ms per iteration "
          f"(I/O {m['io']:.2f} + computing {1e3 * med['wall_compute_s']:.2f} + transfer {m['transfer']:.2f} "
          f"+ clock {m['clock']:.2f}; medians); budget 5 ms: {'met' if m['overhead'] <= 5 else 'NOT met'}; "
          f"counting the DAC twins too: {m['with_dac']:.2f} ms")
    total = float(sum(sum(t[f"wall_{p}_s"] for p in PARTS) for t in res.timings))
    print(f"labstack: exact KL trained {side['kl']:.6f} nats (measured {res.trained.kl_nats:.5f}, "
          f"open loop {res.open_loop.kl_nats:.5f}); iterations' wall {total:.2f} s "
          f"(train() {side['t_train']:.1f} s with two {res.trained.n_eff:.0f}-n_eff scores; calibration {side['t_cal']:.0f} s)")
    return total


# ----------------------------------------------------------------------- thrml
def colour_classes(n: int, edges: np.ndarray) -> list[np.ndarray]:
    """Greedy colouring: cells of one class share no edge (one block-Gibbs block each)."""
    colour = -np.ones(n, dtype=int)
    nbr: dict[int, set[int]] = {i: set() for i in range(n)}
    for a, b in edges:
        nbr[int(a)].add(int(b))
        nbr[int(b)].add(int(a))
    for i in range(n):
        used = {colour[j] for j in nbr[i]}
        colour[i] = min(c for c in range(n) if c not in used)
    return [np.flatnonzero(colour == c) for c in range(colour.max() + 1)]


class ThrmlSampler:
    """thrml block Gibbs with the parameters as arguments of one compiled program; persistent chains."""

    def __init__(self, n: int, edges: np.ndarray, chains: int, per_chain: int, warmup: int, sweeps: int) -> None:
        import jax
        import jax.numpy as jnp
        from thrml import Block, SamplingSchedule, SpinNode, sample_states
        from thrml.models import IsingEBM, IsingSamplingProgram

        self.jax, self.chains = jax, chains
        nodes = [SpinNode() for _ in range(n)]
        pairs = [(nodes[int(a)], nodes[int(b)]) for a, b in edges]
        self.colours = colour_classes(n, edges)
        blocks = [Block([nodes[i] for i in c]) for c in self.colours]
        schedule = SamplingSchedule(n_warmup=warmup, n_samples=per_chain, steps_per_sample=sweeps)

        def one(key, init, theta, beta):
            model = IsingEBM(nodes, pairs, theta, beta, jnp.array(1.0, dtype=jnp.float32))
            program = IsingSamplingProgram(model, blocks, clamped_blocks=[])
            return sample_states(key, program, schedule, init, [], [Block(nodes)])[0]

        self.run = jax.jit(jax.vmap(one, in_axes=(0, 0, None, None)))
        key = jax.random.key(7)
        self.state = [jax.random.bernoulli(jax.random.fold_in(key, k), 0.5, (chains, len(c))) for k, c in
                      enumerate(self.colours)]
        self.key = key

    def sample(self, theta: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """0/1 states (cells, samples): every chain's samples, chains continue from their last state."""
        jnp = self.jax.numpy
        self.key, sub = self.jax.random.split(self.key)
        out = self.run(self.jax.random.split(sub, self.chains), self.state,
                       jnp.asarray(theta, dtype=jnp.float32), jnp.asarray(beta, dtype=jnp.float32))
        out = np.asarray(self.jax.block_until_ready(out))  # (chains, per_chain, n) bool
        self.state = [self.jax.numpy.asarray(out[:, -1, c]) for c in self.colours]
        return out.reshape(-1, out.shape[-1]).T


def thrml_side(params0: np.ndarray, target_params: np.ndarray, n: int, edges: np.ndarray, samples: int,
               kl_goal: float, chains_tried: tuple[int, ...], sweeps: int, warmup: int) -> dict:
    """Moment matching on thrml's sampler, from ``params0`` until the stop rule and ``kl_goal``."""
    p_target = exact.distribution(target_params, n, edges)
    mu_target = exact.moments(p_target, n, edges)
    best = None
    for chains in chains_tried:  # its fastest way to draw one iteration's samples
        sampler = ThrmlSampler(n, edges, chains, max(1, samples // chains), warmup, sweeps)
        sampler.sample(params0[:n], params0[n:])  # compile
        t0 = time.perf_counter()
        for _ in range(2):
            sampler.sample(params0[:n], params0[n:])
        per = (time.perf_counter() - t0) / 2
        print(f"  thrml: {chains:5d} chains x {max(1, samples // chains)} samples, {sweeps} sweeps apart, "
              f"warm-up {warmup}: {per * 1e3:.1f} ms per iteration's sample")
        if best is None or per < best[0]:
            best = (per, chains, sampler)
    _, chains, sampler = best
    rule, schedule = StopRule(), Schedule()
    params, calm, walls, kls = params0.copy(), 0, [], []
    zeros = np.zeros(len(mu_target))
    for it in range(rule.max_iterations):
        t0 = time.perf_counter()
        states = sampler.sample(params[:n], params[n:])
        chip = from_states(states, np.zeros(n), edges)
        r, chi2 = residual(mu_target, zeros, chip)
        params = params + step(r, chip, schedule.eta(it))
        walls.append(time.perf_counter() - t0)
        kls.append(exact.kl(exact.distribution(params, n, edges), p_target))
        calm = calm + 1 if chi2 <= rule.threshold(len(r)) else 0
        if calm >= rule.patience and it + 1 >= rule.min_iterations and kls[-1] <= kl_goal:
            break
    return {"wall": float(sum(walls)), "iterations": len(walls), "kl": kls[-1], "chains": chains,
            "per_iteration": float(np.mean(walls)), "reached": kls[-1] <= kl_goal}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", type=int, default=64)
    ap.add_argument("--target-cells", type=int, default=12)
    ap.add_argument("--samples", type=int, default=20_000)
    ap.add_argument("--eval-samples", type=int, default=400_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--chains", default="1,16,128,1000")
    ap.add_argument("--sweeps", type=int, default=2, help="thrml sweeps between recorded samples")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        side = labstack_side(args, Path(tmp))
    wall_lab = print_split(side)
    res = side["res"]
    n, edges = len(res.cells), np.asarray(res.edges, dtype=int).reshape(-1, 2)
    goal = max(side["kl"], 0.0)
    print(f"thrml {__import__('thrml').__version__} trains the same {n}-cell model to exact KL <= {goal:.6f} nats:")
    chains = tuple(int(c) for c in args.chains.split(","))
    peer = thrml_side(np.asarray(res.target_params, float), np.asarray(res.target_params, float), n, edges,
                      args.samples, goal, chains, args.sweeps, warmup=10)
    print(f"thrml: {peer['chains']} chains, {peer['iterations']} iterations ({peer['per_iteration'] * 1e3:.1f} ms each), "
          f"exact KL {peer['kl']:.6f} nats{'' if peer['reached'] else ' (goal NOT reached)'}; wall {peer['wall']:.2f} s")
    print(f"labstack: {res.iterations} iterations, wall {wall_lab:.2f} s")
    print(f"ratio: {peer['wall'] / wall_lab:.3f}")


if __name__ == "__main__":
    main()
