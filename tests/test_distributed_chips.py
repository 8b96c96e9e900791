"""Many chips on a real Dask LocalCluster of worker processes (labstack.distributed).

One small cluster (3 single-threaded worker processes) serves the module: three
virtual chips are calibrated in parallel (bias_scurve only, few samples), each in
its own worker-built station, and checked against each chip's ground truth; a
fourth, broken chip fails without stopping them; a worker that dies mid-task is
reported and the others carry on.
"""

from __future__ import annotations

import json
import os
import sys

import cloudpickle
import dask
import numpy as np
import pytest

from labstack.calibrate import CalibrationState
from labstack.cli import main
from labstack.data import list_runs
from labstack.distributed.chips import ChipSpecError, calibrate_chips, chip_dir, parse_chips
from labstack.distributed.cluster import SERIAL, dask_client, run_tasks
from labstack.distributed.replay import replay_all, select_runs
from labstack.sim.truth import GroundTruth

#: two chips in parallel (a third cost ~25 s of CPU in a suite near its limit; the
#: parallelism and the per-chip bookkeeping are the same with two)
SEEDS = (11, 12)
CELLS = 16
FAST = {"bias_scurve": {"n_points": 25, "n_samples": 500}}

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers need _square_or_die


@pytest.fixture(scope="module")
def scheduler():
    """A LocalCluster built by labstack's own helper; a crashing task is not retried.

    Each single-threaded worker holds only the task it runs (worker-saturation 1.0):
    with the default 1.1 the scheduler may queue a second task on a worker, and a
    worker that dies takes that bystander with it, which is not what the lost-worker
    test is about."""
    import distributed  # noqa: F401  (its config defaults are loaded now: leaving the ``set``
    # below would otherwise delete the whole "distributed" section it did not see, and later
    # Dask calls in this process fail with KeyError: 'distributed')

    with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                          "distributed.scheduler.worker-saturation": 1.0}):
        with dask_client(None, n_workers=3, memory_limit="1.5GiB") as client:
            yield client.scheduler.address


@pytest.fixture(scope="module")
def batch(scheduler, tmp_path_factory):
    root = tmp_path_factory.mktemp("wafer")
    chips = parse_chips([f"seed={SEEDS[0]}..{SEEDS[-1]}", "seed=99,topology=bogus"])
    report = calibrate_chips(chips, root, scheduler=scheduler, names=["bias_scurve"], params=FAST)
    return root, report


def test_parse_chips():
    chips = parse_chips(["seed=1..3,cells=8", "seed=1", "lab_a.yaml"], defaults={"dead": 0.1})
    assert [c.chip_id for c in chips] == ["seed-1", "seed-2", "seed-3", "seed-1-2", "lab_a"]
    assert chips[0].lab == "seed=1,dead=0.1,cells=8" and chips[3].lab == "seed=1,dead=0.1"
    assert chips[4].station == "lab_a.yaml" and chips[4].lab is None
    assert chips[0].lab_description() != chips[0].lab_description()  # a fresh lab each time
    for bad in (["cells=8"], ["seed=x"], ["colour=red"], ["missing.json"]):
        with pytest.raises(ChipSpecError):
            parse_chips(bad)


def test_chips_calibrated_in_parallel_match_their_ground_truth(batch):
    root, report = batch
    good = [r for r in report.results if r.chip_id != "seed-99"]
    assert [r.chip_id for r in good] == [f"seed-{s}" for s in SEEDS]
    assert all(r.ok for r in good), [r.summary for r in good]
    workers = {r.worker for r in good}
    assert len(workers) >= 2, workers  # really in parallel, in other processes
    assert all(not w.endswith(f":{os.getpid()}") for w in workers)
    for seed, result in zip(SEEDS, good, strict=True):
        truth = GroundTruth.from_seed(seed, CELLS, "chain")
        state = CalibrationState.load(chip_dir(root, result.chip_id) / "calibration_state")
        v0 = np.array([state.value(f"cells.{i}.bias_offset_V") for i in range(CELLS)])
        width = np.array([state.value(f"cells.{i}.scurve_width_V") for i in range(CELLS)])
        # few samples per point: looser than test_bias_scurve, still far below the
        # 0.15 V spread of offsets between cells and chips
        assert np.all(np.abs(v0 - truth.cells.v0_V) < 0.025), (seed, v0 - truth.cells.v0_V)
        assert np.all(np.abs(width / truth.scurve_width_V() - 1) < 0.2), seed
    # other chips' truths are different: the check above could fail
    other = GroundTruth.from_seed(SEEDS[0], CELLS, "chain").cells.v0_V
    second = GroundTruth.from_seed(SEEDS[1], CELLS, "chain").cells.v0_V
    assert np.max(np.abs(other - second)) > 0.1


def test_a_broken_chip_is_reported_and_does_not_stop_the_others(batch):
    _, report = batch
    assert not report.ok
    (failed,) = report.failed
    assert failed.chip_id == "seed-99" and "topology" in failed.error
    assert "seed-99" in report.render() and f"{len(SEEDS)}/{len(SEEDS) + 1} chips ok" in report.render()


def test_one_data_directory_one_registry_runs_tagged_with_their_chip(batch):
    root, report = batch
    runs = list_runs(root, calibration="bias_scurve")
    # bias_scurve measures in parts: the chip-wide sweep plus a window for each cell it did
    # not resolve (with FAST's 25 points, every cell), merged into one derived run that holds
    # the node's values. Every one of them, parts and merged run alike, carries its chip.
    assert sorted({r.metadata["chip"] for r in runs}) == [f"seed-{s}" for s in SEEDS]
    for result in report.results[: len(SEEDS)]:
        mine = [r for r in runs if r.metadata["chip"] == result.chip_id]
        (merged,) = [r for r in mine if r.metadata.get("derived_from")]
        # the chip's bias_scurve runs are exactly the merged run and its parts
        assert sorted(r.id for r in mine) == sorted([merged.id, *merged.metadata["derived_from"]])
        assert {r.id for r in mine} <= set(result.run_ids)  # plus its dependencies' runs
        saved = json.loads((chip_dir(root, result.chip_id) / "chip.json").read_text())
        assert saved["ok"] and saved["run_ids"] == result.run_ids
    assert not (root / "calibration_state").exists()  # states live per chip
    summary = json.loads(open(report.summary_path).read())
    assert [r["chip_id"] for r in summary["results"]] == [r.chip_id for r in report.results]


def test_replay_all_refits_every_run_on_the_cluster(batch, scheduler):
    root, report = batch
    ids = select_runs(root, chip="seed-12", calibration="bias_scurve")
    # one chip's bias_scurve is several runs: the sweep, its windows and the merged run
    (merged,) = [r for r in list_runs(root, calibration="bias_scurve")
                 if r.metadata.get("chip") == "seed-12" and r.metadata.get("derived_from")]
    assert sorted(ids) == sorted([merged.id, *merged.metadata["derived_from"]])
    every = select_runs(root, calibration="bias_scurve")
    replayed = replay_all(every + ["no-such-run"], data_dir=root, scheduler=scheduler)
    assert [r.run_id for r in replayed.failed] == ["no-such-run"]
    assert len(replayed.results) == len(every) + 1  # every part is re-fitted too
    # the merged run of each chip is the one that holds every cell's calibration
    derived = {r.id for r in list_runs(root, calibration="bias_scurve") if r.metadata.get("derived_from")}
    by_chip = {r.value["chip"]: r.value for r in replayed.results if r.ok and r.run_id in derived}
    assert set(by_chip) == {f"seed-{s}" for s in SEEDS}
    assert all(v["items"] == CELLS and v["ok_items"] == CELLS for v in by_chip.values())


def test_cli_replay_all_serial(batch, capsys):
    root, _ = batch
    argv = ["replay", "--all", "--chip", "seed-11", "--calibration", "bias_scurve",
            "--scheduler", SERIAL, "--data-dir", str(root)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    # the chip's bias_scurve is its sweep, its windows and their merged run: all replayed
    n = len(select_runs(root, chip="seed-11", calibration="bias_scurve"))
    assert n > 2 and f"{n}/{n} runs replayed" in out and "'ok_items': 16" in out
    assert main(["replay", "--all", "--chip", "seed-404", "--data-dir", str(root)]) == 2
    # several ids are re-fitted only when asked to: never a silent switch to Dask
    two = select_runs(root, calibration="bias_scurve")[:2]
    assert main(["replay", *two, "--data-dir", str(root)]) == 2
    assert "give --refit" in capsys.readouterr().err
    assert main(["replay", "--refit", *two, "--scheduler", SERIAL, "--data-dir", str(root)]) == 0
    assert "2/2 runs replayed" in capsys.readouterr().out


def _square_or_die(x: int) -> int:
    if x == 2:
        os._exit(3)  # the worker process dies mid-task
    return x * x


def test_a_lost_worker_is_reported_and_the_rest_finish(scheduler):
    outcomes = {item: (value, err) for item, value, err in run_tasks(
        _square_or_die, [1, 2, 3, 4], scheduler=scheduler
    )}
    assert {k: v for k, (v, _) in outcomes.items() if v is not None} == {1: 1, 3: 9, 4: 16}
    assert "KilledWorker" in type(outcomes[2][1]).__name__
